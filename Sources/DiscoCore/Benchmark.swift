import Foundation

/// What disco's benchmark commands measure with: a monotonic clock, best-of timing, the sgemm
/// reference figure, and the process's peak memory. Speed is measured by these commands
/// (`disco bench ...`, `disco info`), never asserted in tests.
public enum Benchmark {
    /// Wall-clock seconds (monotonic).
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Seconds of one call of `body`.
    public static func time(_ body: () -> Void) -> Double {
        let t = now(); body(); return now() - t
    }

    /// Best-of-`repeats` seconds of `body` after one warm-up call.
    public static func timeBest(repeats: Int, _ body: () -> Void) -> Double {
        body()
        var best = Double.infinity
        for _ in 0..<repeats { best = min(best, time(body)) }
        return best
    }

    /// sgemm GFLOP/s at n^3 (square, row-major, no transposes), OpenBLAS using `threads` threads
    /// (default: all of disco's workers, the machine's sgemm figure). OpenBLAS must be loaded.
    public static func sgemmGFLOPS(n: Int, repeats: Int = 3, threads: Int = Parallel.threads) -> Double {
        let blas = BLAS.shared
        var rng = Xoshiro256(seed: 1)
        let a = Tensor.uniform([n, n], low: -1, high: 1, rng: &rng), b = Tensor.uniform([n, n], low: -1, high: 1, rng: &rng)
        let c = Tensor(zeros: [n, n])
        let t = blas.withThreads(threads) {
            timeBest(repeats: repeats) {
                blas.sgemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)
            }
        }
        return 2 * Double(n) * Double(n) * Double(n) / t / 1e9
    }

    /// Peak resident set size of this process, in MB (VmHWM).
    public static func peakRSSMegabytes() -> Double {
        guard let s = try? readTextFile("/proc/self/status") else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
            return kb / 1024
        }
        return 0
    }

    /// The 1, 5 and 15 minute load averages (how busy the machine was around a measurement).
    public static func loadAverage() -> [Double] {
        guard let s = try? readTextFile("/proc/loadavg") else { return [] }
        return s.split(separator: " ").prefix(3).compactMap { Double($0) }
    }

    public static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
