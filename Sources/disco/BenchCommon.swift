import Foundation
import DiscoCore

/// Wall-clock seconds.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Peak resident set size of this process, in MB (VmHWM).
func peakRSSMegabytes() -> Double {
    guard let s = try? readTextFile("/proc/self/status") else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kb / 1024
    }
    return 0
}

/// Best-of-`repeats` seconds of `body` after one warm-up call.
func timeBest(repeats: Int, _ body: () -> Void) -> Double {
    body()
    var best = Double.infinity
    for _ in 0..<repeats {
        let t = now(); body(); best = min(best, now() - t)
    }
    return best
}

/// sgemm GFLOP/s at n^3 (square, row-major, no transposes), OpenBLAS using `threads` threads
/// (default: all cores, the machine's sgemm figure).
func measureSgemm(n: Int, repeats: Int = 3, threads: Int = Parallel.threads) -> Double {
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

func jsonString(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}

func loadBLASOrExplain() throws -> BLAS {
    do { return try BLAS.load() } catch { throw CLIError("\(error)") }
}

/// A one-line error for the user: ArgumentParser prints "Error: <message>" and exits with code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

import ArgumentParser
