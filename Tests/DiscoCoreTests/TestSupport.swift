import XCTest
import Foundation
@testable import DiscoCore

// Shared helpers for the DiscoCore tests: random tensors, Double-accumulated dot products,
// finite differences and relative-error reports.

/// The folder of PyTorch fixtures, `Tests/Fixtures`, found from this source file's path.
let fixturesDirectory: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Reads a fixture file; a missing file is a test failure (thrown), never a silent pass.
func loadFixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> Safetensors.File {
    let url = fixturesDirectory.appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: url.path) else {
        XCTFail("fixture \(url.path) is missing (run Tests/Fixtures/make_fixtures.py)", file: file, line: line)
        throw Safetensors.FormatError(path: url.path, message: "missing fixture")
    }
    return try Safetensors.read(path: url.path)
}

func randn(_ shape: [Int], _ rng: inout Xoshiro256, std: Float = 1) -> Tensor {
    Tensor.normal(shape, mean: 0, std: std, rng: &rng)
}

func randInt(_ range: ClosedRange<Int>, _ rng: inout Xoshiro256) -> Int {
    range.lowerBound + Int(rng.next() % UInt64(range.count))
}

/// <a, b> accumulated in Double.
func dot(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.count == b.count)
    var s: Double = 0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
}

func norm2(_ a: Tensor) -> Double { dot(a, a).squareRoot() }

func maxAbs(_ a: Tensor) -> Float {
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a[i])) }
    return m
}

/// max |a - b| / max |ref| (ref = b), with a floor so an all-zero reference compares absolutely.
func relativeError(_ a: Tensor, _ ref: Tensor, floor: Float = 1e-12) -> Float {
    maxAbsDifference(a, ref) / max(maxAbs(ref), floor)
}

/// Distinct indices in 0..<count: all of them if count <= n, else n sampled (always including the ends).
func sampleIndices(_ count: Int, _ n: Int, _ rng: inout Xoshiro256) -> [Int] {
    if count <= n { return Array(0..<count) }
    var s: Set<Int> = [0, count - 1]
    while s.count < n { s.insert(Int(rng.next() % UInt64(count))) }
    return s.sorted()
}

/// Central finite difference of `loss` with respect to `t[i]` for each i in `indices`
/// (t is perturbed in place by +-h and restored).
func finiteDifference(_ t: Tensor, indices: [Int], h: Float, _ loss: () -> Double) -> [Double] {
    indices.map { i in
        let saved = t[i]
        t[i] = saved + h; let lp = loss()
        t[i] = saved - h; let lm = loss()
        t[i] = saved
        // divide by the step actually taken in Float
        return (lp - lm) / (Double(saved + h) - Double(saved - h))
    }
}

/// Compares an analytic gradient with finite differences at `indices`:
/// max_i |fd_i - g_i| <= tol * max_j |g_j| (scale: the gradient's infinity norm over the whole tensor).
/// Returns the observed ratio.
@discardableResult
func assertGradientMatches(_ analytic: Tensor, _ fd: [Double], indices: [Int], tol: Double, _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) -> Double {
    let scale = max(Double(maxAbs(analytic)), 1e-12)
    var worst = 0.0, worstIndex = -1
    for (k, i) in indices.enumerated() {
        let e = abs(fd[k] - Double(analytic[i]))
        if e > worst { worst = e; worstIndex = i }
    }
    let ratio = worst / scale
    XCTAssertLessThanOrEqual(ratio, tol,
        "\(what): finite difference disagrees at index \(worstIndex): analytic \(worstIndex >= 0 ? analytic[worstIndex] : 0), "
        + "fd \(worstIndex >= 0 ? fd[indices.firstIndex(of: worstIndex)!] : 0), |err|/|g|inf = \(ratio) > \(tol)",
        file: file, line: line)
    XCTAssertGreaterThan(maxAbs(analytic), 0, "\(what): gradient is identically zero (test would be vacuous)", file: file, line: line)
    return ratio
}

/// For piecewise-smooth losses (ReLU / LeakyReLU kinks behind batch norm): central and one-sided
/// differences at several steps; each sample is compared with the estimate that agrees best. A
/// central step that straddles a kink gives an O(1) error at that step only; when a kink lies
/// closer than every step, the one-sided difference away from it still estimates the derivative
/// (to O(h)). A wrong analytic gradient disagrees with all of them.
/// Checks max_i min_estimates |fd_i - g_i| <= tol * |g|_inf and returns the ratio.
@discardableResult
func assertGradientMatchesPiecewise(_ analytic: Tensor, _ t: Tensor, indices: [Int], steps: [Float], tol: Double,
                                    _ what: String, file: StaticString = #filePath, line: UInt = #line,
                                    _ loss: () -> Double) -> Double {
    let base = loss()
    // Per step: central, forward and backward differences of every sample.
    let fds: [[(central: Double, forward: Double, backward: Double)]] = steps.map { h in
        indices.map { i in
            let saved = t[i]
            t[i] = saved + h; let lp = loss()
            t[i] = saved - h; let lm = loss()
            t[i] = saved
            // divided by the steps actually taken in Float
            return ((lp - lm) / (Double(saved + h) - Double(saved - h)), (lp - base) / (Double(saved + h) - Double(saved)),
                    (base - lm) / (Double(saved) - Double(saved - h)))
        }
    }
    let scale = max(Double(maxAbs(analytic)), 1e-12)
    var worst = 0.0, worstIndex = -1, worstFDs: [String] = []
    for (k, i) in indices.enumerated() {
        let g = Double(analytic[i])
        let e = fds.map { min(abs($0[k].central - g), abs($0[k].forward - g), abs($0[k].backward - g)) }.min()!
        if e > worst {
            worst = e; worstIndex = i
            worstFDs = fds.map { String(format: "%.6g (one-sided %.6g, %.6g)", $0[k].central, $0[k].forward, $0[k].backward) }
        }
    }
    let ratio = worst / scale
    XCTAssertLessThanOrEqual(ratio, tol,
        "\(what): finite differences disagree at index \(worstIndex) for every step \(steps): analytic "
        + "\(worstIndex >= 0 ? analytic[worstIndex] : 0), fd \(worstFDs), min |err|/|g|inf = \(ratio) > \(tol)",
        file: file, line: line)
    XCTAssertGreaterThan(maxAbs(analytic), 0, "\(what): gradient is identically zero (test would be vacuous)", file: file, line: line)
    return ratio
}
