import DiscoCore

/// `disco bench train`: the DiscoGAN training iteration timed on random data, with the reference
/// schedule (one D step in `updateInterval`).
public enum TrainBench {
    /// Runs `warmup` untimed iterations, then `iterations` (rounded up to whole D/G cycles) timed
    /// ones, of a fixed-seed model on fixed random batches. `onStep(iteration, kind, losses)` sees
    /// every step (fixed seeds: the losses are a numerical regression check). Returns the figures
    /// `disco bench train --json` prints (seconds per iteration: the mean over whole cycles, and the
    /// best cycle, the figure least touched by other work on a shared machine).
    public static func run(batch: Int, size: Int, channels: Int, iterations: Int, warmup: Int,
                           onStep: (Int, String, StepLosses) -> Void = { _, _, _ in }) -> [String: Any] {
        let blas = BLAS.shared
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
            let t = Benchmark.now()
            let (kind, l) = model.step(iteration: it, xA: xA, xB: xB)
            if it >= warmup { times.append(Benchmark.now() - t) }
            onStep(it, kind, l)
        }
        // Average over whole cycles, starting at a D step.
        let start = (cycle - warmup % cycle) % cycle
        let usable = Array(times[start...].prefix(((times.count - start) / cycle) * cycle))
        let perIter = usable.reduce(0, +) / Double(max(usable.count, 1))
        let cycles = stride(from: 0, to: usable.count, by: cycle).map { usable[$0..<($0 + cycle)].reduce(0, +) / Double(cycle) }
        let bestCycle = cycles.min() ?? perIter
        let gflop = Double(macsPerIteration(config: config)) * 2 / 1e9
        return [
            "batch": batch, "size": size, "channels": channels, "sec_per_iter": perIter, "best_cycle_sec_per_iter": bestCycle,
            "gflop_per_iter": gflop, "gflops": gflop / perIter, "peak_rss_mb": Benchmark.peakRSSMegabytes(),
            "peak_tensor_mb": Double(TensorMemory.peakLiveBytes) / 1e6,
            "blas_core": blas.coreName, "blas_threads": blas.threads, "iterations_timed": usable.count,
            "conv": Conv.algorithm.rawValue,
        ]
    }

    /// The least multiply-adds of one iteration averaged over a D/G cycle (../shared/reference/discogan.md).
    public static func macsPerIteration(config: TrainConfig) -> Int {
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
}
