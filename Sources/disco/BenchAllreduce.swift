import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

/// Data-parallel costs, at 1 rank (plain) or N (under mpirun): bytes all-reduced per iteration,
/// the time in all-reduces, and the iteration time. The figures docs/scale-out.md models from.
struct BenchAllreduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Bytes all-reduced per training iteration, all-reduce time and iteration time (run it plain and under mpirun -np N).",
        discussion: """
        Random data, the reference schedule (one D step in three). --batch is the global batch: \
        each of N ranks trains on --batch / N images. Also times bare all-reduces of the gradient \
        buckets (the four networks' flat gradient buffers) apart from training.
        """)

    @Option(help: "Global batch (divisible by the ranks).") var batch = 64
    @OptionGroup var shape: ModelShapeOptions
    @Option(help: "Timed iterations (rounded up to whole D/G cycles).") var iterations = 6
    @Option(help: "Warm-up iterations, not timed.") var warmup = 3
    @Option(help: "Bare all-reduces of each bucket, timed.") var repeats = 10
    @Flag(help: "Synchronised batch norm (as train --sync-bn).") var syncBn = false
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        let group = try Processes.current()
        defer { group.finish() }
        threadOptions.apply()
        guard batch % group.size == 0, batch / group.size >= (syncBn ? 1 : 2) else {
            throw ValidationError("--batch \(batch) must be a multiple of the \(group.size) ranks, with at least 2 images per rank without --sync-bn")
        }
        _ = try loadBLASOrExplain()
        let measured = MeasuredCommunicator(group)
        var config = TrainConfig()
        config.size = shape.size; config.channels = shape.channels; config.batch = batch
        let model = DiscoGAN(config: config)
        model.initialize(seed: 0)
        model.distribute(over: measured, syncBatchNorm: syncBn)
        var rng = Xoshiro256(seed: 7 &+ UInt64(group.rank))
        let local = [batch / group.size, shape.size, shape.size, shape.channels]
        let xA = Tensor.uniform(local, low: 0, high: 1, rng: &rng), xB = Tensor.uniform(local, low: 0, high: 1, rng: &rng)
        let cycle = config.updateInterval
        let timed = ((iterations + cycle - 1) / cycle) * cycle
        for it in 0..<warmup { model.step(iteration: it, xA: xA, xB: xB) }
        _ = measured.allReduceMax([0])  // every rank starts the timed part together
        measured.reset()
        let t0 = Date()
        for it in warmup..<(warmup + timed) { model.step(iteration: it, xA: xA, xB: xB) }
        let stepSeconds = Date().timeIntervalSince(t0) / Double(timed)
        let perIter = (bytes: Double(measured.bytes) / Double(timed), calls: Double(measured.calls) / Double(timed),
                       seconds: measured.seconds / Double(timed))
        // Bare all-reduces of the buckets one iteration sends: D_A + D_B once, G_AB + G_BA twice per cycle.
        var bare: [String: Double] = [:]
        var bucketFloats: [String: Int] = [:]
        for (name, net, _) in model.networks {
            bucketFloats[name] = net.parameters.count
            _ = group.allReduceMax([0])
            let s = Date()
            for _ in 0..<repeats { group.allReduceSum(net.parameters.grads.data, count: net.parameters.count) }
            bare[name] = Date().timeIntervalSince(s) / Double(repeats)
        }
        let bareIter = ((bare["D_A"]! + bare["D_B"]!) + Double(cycle - 1) * (bare["G_AB"]! + bare["G_BA"]!)) / Double(cycle)
        let gradientBytes = Double(4 * ((bucketFloats["D_A"]! + bucketFloats["D_B"]!) + (cycle - 1) * (bucketFloats["G_AB"]! + bucketFloats["G_BA"]!))) / Double(cycle)
        guard group.isRoot else { return }
        let result: [String: Any] = [
            "ranks": group.size, "communicator": group.name, "batch": batch, "batch_per_rank": batch / group.size,
            "size": shape.size, "channels": shape.channels, "sync_bn": syncBn, "threads_per_rank": Parallel.threads,
            "sec_per_iter": stepSeconds, "allreduce_sec_per_iter": perIter.seconds,
            "allreduce_calls_per_iter": perIter.calls, "allreduce_bytes_per_iter": perIter.bytes,
            "gradient_bytes_per_iter": gradientBytes, "bare_gradient_allreduce_sec_per_iter": bareIter,
            "parameters": bucketFloats, "iterations_timed": timed,
        ]
        if json { print(jsonString(result)); return }
        print(String(format: "allreduce ranks=%d batch=%d (%d per rank) size=%d sync_bn=%@ sec_per_iter=%.3f allreduce_sec_per_iter=%.4f (%.1f calls, %.2f MB) bare_gradient_allreduce=%.4f s (%.2f MB) threads=%d",
                     group.size, batch, batch / group.size, shape.size, syncBn ? "yes" : "no", stepSeconds, perIter.seconds, perIter.calls,
                     perIter.bytes / 1e6, bareIter, gradientBytes / 1e6, Parallel.threads))
    }
}
