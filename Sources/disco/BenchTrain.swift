import ArgumentParser
import DiscoCore
import DiscoGAN

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time the DiscoGAN training iteration (random data, the reference schedule: one D step in three).")

    @Option(help: "Batch size.") var batch = 64
    @OptionGroup var shape: ModelShapeOptions
    @OptionGroup var gemm: GEMMOptions
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
        gemm.apply()
        let blas = try loadBLASOrExplain(applyingGEMMPrecision: true)
        let result = TrainBench.run(batch: batch, size: size, channels: channels, iterations: iterations, warmup: warmup) { it, kind, l in
            if losses {
                print("iter \(it) \(kind) " + l.entries.sorted { $0.key < $1.key }.map { "\($0.key)=\(String(format: "%.7g", $0.value))" }.joined(separator: " "))
            }
        }
        if json { print(jsonString(result)); return }
        let perIter = result["sec_per_iter"] as! Double, gflop = result["gflop_per_iter"] as! Double
        print(String(format: "train batch=%d size=%d channels=%d sec_per_iter=%.3f best_cycle=%.3f (%.1f GFLOP/iter, %.0f GFLOP/s) peak_rss_mb=%.0f peak_tensor_mb=%.0f blas=%@ threads=%d conv=%@ gemm=%@",
                     batch, size, channels, perIter, result["best_cycle_sec_per_iter"] as! Double, gflop, gflop / perIter,
                     result["peak_rss_mb"] as! Double, result["peak_tensor_mb"] as! Double, blas.coreName, blas.threads, Conv.algorithm.rawValue, BLAS.gemmPrecision.rawValue))
    }
}
