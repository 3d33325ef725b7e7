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
        let result = AllreduceBench.run(group: group, batch: batch, size: shape.size, channels: shape.channels,
                                        iterations: iterations, warmup: warmup, repeats: repeats, syncBatchNorm: syncBn)
        guard group.isRoot else { return }
        if json { print(jsonString(result)); return }
        func d(_ k: String) -> Double { result[k] as! Double }
        print(String(format: "allreduce ranks=%d batch=%d (%d per rank) size=%d sync_bn=%@ sec_per_iter=%.3f allreduce_sec_per_iter=%.4f (%.1f calls, %.2f MB) bare_gradient_allreduce=%.4f s (%.2f MB) threads=%d",
                     group.size, batch, batch / group.size, shape.size, syncBn ? "yes" : "no", d("sec_per_iter"), d("allreduce_sec_per_iter"),
                     d("allreduce_calls_per_iter"), d("allreduce_bytes_per_iter") / 1e6, d("bare_gradient_allreduce_sec_per_iter"),
                     d("gradient_bytes_per_iter") / 1e6, result["threads_per_rank"] as! Int))
    }
}
