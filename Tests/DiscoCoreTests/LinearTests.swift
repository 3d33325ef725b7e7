import XCTest
@testable import DiscoCore

/// The fully connected layer: forward against a direct Double loop, and its three gradients
/// against central finite differences of a random projection of its output (the layer is linear,
/// so they agree to float32 rounding).
final class LinearTests: XCTestCase {
    func testForwardMatchesNaiveLoop() throws {
        _ = try BLAS.load()
        var rng = Xoshiro256(seed: 21)
        for (n, fin, fout) in [(1, 1, 1), (5, 7, 3), (64, 784, 128), (3, 128, 1)] {
            let x = randn([n, fin], &rng), w = randn([fout, fin], &rng, std: 0.1), b = randn([fout], &rng)
            let y = Tensor(uninitialized: [n, fout])
            Linear.forward(y: y, x: x, w: w, b: b)
            let want = Linear.naiveForward(x: x, w: w, b: b)
            XCTAssertLessThanOrEqual(relativeError(y, want), 1e-5, "\(n)x\(fin)->\(fout)")
            Linear.forward(y: y, x: x, w: w, b: nil)
            XCTAssertLessThanOrEqual(relativeError(y, Linear.naiveForward(x: x, w: w, b: nil)), 1e-5, "no bias")
        }
    }

    func testGradientsMatchFiniteDifferences() throws {
        _ = try BLAS.load()
        var rng = Xoshiro256(seed: 22)
        let n = 4, fin = 6, fout = 5
        let x = randn([n, fin], &rng), w = randn([fout, fin], &rng, std: 0.5), b = randn([fout], &rng)
        let r = randn([n, fout], &rng)  // loss = sum(r * y)
        func loss() -> Double {
            let y = Tensor(uninitialized: [n, fout])
            Linear.forward(y: y, x: x, w: w, b: b)
            return dot(y, r)
        }
        let dx = Tensor(uninitialized: x.shape), dw = Tensor(zeros: w.shape), db = Tensor(zeros: b.shape)
        Linear.backwardInput(dx: dx, dy: r, w: w)
        Linear.backwardWeight(dw: dw, db: db, x: x, dy: r)
        for (name, t, g) in [("x", x, dx), ("w", w, dw), ("b", b, db)] {
            let idx = Array(0..<t.count)
            assertGradientMatches(g, finiteDifference(t, indices: idx, h: 1e-2, loss), indices: idx, tol: 1e-3, "Linear d\(name)")
        }
        // Weight gradients accumulate (+=), as the networks' do.
        Linear.backwardWeight(dw: dw, db: db, x: x, dy: r)
        let once = Tensor(zeros: w.shape)
        Linear.backwardWeight(dw: once, db: nil, x: x, dy: r)
        XCTAssertLessThanOrEqual(relativeError(dw, Tensor(shape: w.shape, values: once.array.map { 2 * $0 })), 1e-6)
    }
}
