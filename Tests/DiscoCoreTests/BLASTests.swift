import XCTest
@testable import DiscoCore

final class BLASTests: XCTestCase {
    func cpu(_ flags: [String]) -> BLAS.CPUFeatures { BLAS.CPUFeatures(flags: Set(flags), modelName: "test") }

    /// The kernel set follows the CPU's features: AVX-512 (f, dq, bw, vl) -> SkylakeX, with bf16 -> Cooperlake, AVX2 -> Haswell.
    func testKernelChoiceFollowsFeatures() {
        let avx512 = ["avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"]
        XCTAssertEqual(BLAS.bestCoreType(for: cpu(avx512)), "SkylakeX")
        XCTAssertEqual(BLAS.bestCoreType(for: cpu(avx512 + ["avx512_bf16"])), "Cooperlake")
        XCTAssertEqual(BLAS.bestCoreType(for: cpu(["avx", "avx2", "fma", "avx512f"])), "Haswell")  // partial AVX-512
        XCTAssertEqual(BLAS.bestCoreType(for: cpu(["avx", "avx2", "fma"])), "Haswell")
        XCTAssertEqual(BLAS.bestCoreType(for: cpu(["avx"])), "Sandybridge")
        XCTAssertNil(BLAS.bestCoreType(for: cpu(["sse4_2"])))
    }

    /// The loaded library runs the kernel set disco asked for (unless overridden), and its sgemm is right.
    func testLoadedLibraryUsesTheChosenKernelAndMultipliesCorrectly() throws {
        let blas = try BLAS.load()
        if ProcessInfo.processInfo.environment["DISCO_BLAS_CORETYPE"] == nil, let want = BLAS.bestCoreType(for: blas.cpu) {
            XCTAssertEqual(blas.coreName.lowercased(), want.lowercased(), "OpenBLAS runs \(blas.coreName), disco chose \(want)")
        }
        var rng = Xoshiro256(seed: 4)
        let m = 7, n = 5, k = 9
        let a = Tensor.uniform([k, m], low: -1, high: 1, rng: &rng)   // stored transposed
        let b = Tensor.uniform([n, k], low: -1, high: 1, rng: &rng)   // stored transposed
        let c = Tensor(filling: 1, shape: [m, n])
        blas.sgemm(transA: true, transB: true, m: m, n: n, k: k, alpha: 2, a: a.data, lda: m, b: b.data, ldb: k, beta: 0.5, c: c.data, ldc: n)
        for i in 0..<m { for j in 0..<n {
            var s: Double = 0
            for p in 0..<k { s += Double(a[p * m + i]) * Double(b[j * k + p]) }
            XCTAssertEqual(c[i * n + j], Float(2 * s + 0.5), accuracy: 1e-5)
        } }
    }
}
