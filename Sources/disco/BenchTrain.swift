import ArgumentParser
import DiscoCore
import DiscoGAN

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time the DiscoGAN training iteration (random data, the reference schedule: one D step in three).")

    @Option(help: "Batch size.") var batch = 64
    @OptionGroup var shape: ModelShapeOptions
    var size: Int { shape.size }
    var channels: Int { shape.channels }
    @Option(help: "Timed iterations (rounded up to whole D/G cycles).") var iterations = 9
    @Option(help: "Warm-up iterations, not timed.") var warmup = 3
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Print every iteration's losses (fixed seeds: a numerical regression check).") var losses = false

    func validate() throws {
        guard batch >= 2 else { throw ValidationError("--batch must be at least 2 (batch norm), got \(batch)") }
    }

    func run() throws {
        let blas = try loadBLASOrExplain()
        var config = TrainConfig()
        config.size = size; config.channels = channels; config.batch = batch
        let model = DiscoGAN(config: config)
        model.initialize(seed: 0)
        var rng = Xoshiro256(seed: 7)
        let shape = [batch, size, size, channels]
        let xA = Tensor.uniform(shape, low: 0, high: 1, rng: &rng), xB = Tensor.uniform(shape, low: 0, high: 1, rng: &rng)
        let cycle = config.updateInterval
        let timed = ((iterations + cycle - 1) / cycle) * cycle
        var times: [Double] = []
        for it in 0..<(warmup + timed) {
            let t = now()
            let (kind, l) = model.step(iteration: it, xA: xA, xB: xB)
            if it >= warmup { times.append(now() - t) }
            if losses {
                print("iter \(it) \(kind) " + l.entries.sorted { $0.key < $1.key }.map { "\($0.key)=\(String(format: "%.7g", $0.value))" }.joined(separator: " "))
            }
        }
        // Average over whole cycles, starting at a D step.
        let start = (cycle - warmup % cycle) % cycle
        let usable = Array(times[start...].prefix(((times.count - start) / cycle) * cycle))
        let perIter = usable.reduce(0, +) / Double(max(usable.count, 1))
        // The best whole cycle: on a shared machine, the figure least touched by other tenants.
        let cycles = stride(from: 0, to: usable.count, by: cycle).map { usable[$0..<($0 + cycle)].reduce(0, +) / Double(cycle) }
        let bestCycle = cycles.min() ?? perIter
        let gflop = Double(trainingMACsPerIteration(config: config)) * 2 / 1e9
        let result: [String: Any] = [
            "batch": batch, "size": size, "channels": channels, "sec_per_iter": perIter, "best_cycle_sec_per_iter": bestCycle,
            "gflop_per_iter": gflop, "gflops": gflop / perIter, "peak_rss_mb": peakRSSMegabytes(),
            "peak_tensor_mb": Double(TensorMemory.peakLiveBytes) / 1e6,
            "blas_core": blas.coreName, "blas_threads": blas.threads, "iterations_timed": usable.count,
        ]
        if json { print(jsonString(result)); return }
        print(String(format: "train batch=%d size=%d channels=%d sec_per_iter=%.3f best_cycle=%.3f (%.1f GFLOP/iter, %.0f GFLOP/s) peak_rss_mb=%.0f peak_tensor_mb=%.0f blas=%@ threads=%d",
                     batch, size, channels, perIter, bestCycle, gflop, gflop / perIter, peakRSSMegabytes(), Double(TensorMemory.peakLiveBytes) / 1e6, blas.coreName, blas.threads))
    }
}

/// The least multiply-adds of one iteration averaged over a D/G cycle (../shared/reference/discogan.md).
func trainingMACsPerIteration(config: TrainConfig) -> Int {
    func macs(_ blocks: [BlockSpec]) -> Int {
        var h = config.size, total = 0
        for b in blocks {
            total += b.geometry(batch: config.batch, height: h, width: h).macs
            h = b.outputSize(h)
        }
        return total
    }
    let g = macs(DiscoGANModels.generatorBlocks(size: config.size, channels: config.channels))
    let d = macs(DiscoGANModels.discriminatorBlocks(size: config.size, channels: config.channels).blocks)
    // D step: 2 G fwd, 4 D fwd, 4 D bwd (weight grads; input grads not needed except inside D: ~2x fwd).
    let dStep = 2 * g + 4 * d + 4 * 2 * d
    // G step: 4 G fwd + 4 G bwd (2x), 4 D fwd, 2 D input-grad backward (1x).
    let gStep = 4 * g + 4 * 2 * g + 4 * d + 2 * d
    let n = config.updateInterval
    return (dStep + (n - 1) * gStep) / n
}
