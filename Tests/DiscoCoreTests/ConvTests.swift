import XCTest
import Foundation
@testable import DiscoCore

/// The fast im2col + GEMM convolution against the naive 7-loop oracle (`Conv.naiveForward/naiveBackward`,
/// accumulated in Double), and the transposed convolution against the adjoint identity and finite differences.
final class ConvTests: XCTestCase {
    /// max |fast - naive| / max |naive|: float GEMM vs Double accumulation over at most 5*5*9 (forward)
    /// or ~300 (weight gradient) terms.
    static let oracleRelTol: Float = 2e-5
    /// |<convT(x), y> - <x, conv(y)>| / (|convT(x)| |y|), both sides in Double from Float tensors.
    static let adjointRelTol: Double = 1e-5
    /// Finite differences of a loss linear in the perturbed tensor: only rounding error remains.
    static let linearFDTol: Double = 2e-3

    /// ~20 random geometries (kernel 1-5, stride 1-3, padding 0-2, odd sizes, batch 1-3, channels 1-9),
    /// plus fixed ones that pin the special paths: 1x1/s1/p0 (plain GEMM), DiscoGAN's 4/2/1, 5/3/2.
    static func geometries(seed: UInt64, random n: Int = 20) -> [ConvGeometry] {
        var rng = Xoshiro256(seed: seed)
        var gs: [ConvGeometry] = [
            ConvGeometry(batch: 2, height: 5, width: 3, inChannels: 3, outChannels: 7, kernel: 1, stride: 1, padding: 0),
            ConvGeometry(batch: 3, height: 8, width: 8, inChannels: 2, outChannels: 4, kernel: 4, stride: 2, padding: 1),
            ConvGeometry(batch: 3, height: 9, width: 7, inChannels: 5, outChannels: 3, kernel: 5, stride: 3, padding: 2),
            ConvGeometry(batch: 1, height: 1, width: 1, inChannels: 9, outChannels: 2, kernel: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 2, height: 7, width: 5, inChannels: 1, outChannels: 1, kernel: 2, stride: 3, padding: 0),
        ]
        for _ in 0..<n {
            let k = randInt(1...5, &rng), s = randInt(1...3, &rng), p = randInt(0...2, &rng)
            let minSize = max(1, k - 2 * p)
            // mostly odd sizes
            let h = minSize + 2 * randInt(0...4, &rng), w = minSize + randInt(0...7, &rng)
            gs.append(ConvGeometry(batch: randInt(1...3, &rng), height: h, width: w,
                                   inChannels: randInt(1...9, &rng), outChannels: randInt(1...9, &rng),
                                   kernel: k, stride: s, padding: p))
        }
        return gs
    }

    func checkAgainstOracle(_ g: ConvGeometry, _ rng: inout Xoshiro256, label: String) {
        let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
        let ref = Conv.naiveForward(x: x, w: w, g: g)
        let (refDx, refDw) = Conv.naiveBackward(x: x, w: w, dy: dy, g: g)

        let y = Tensor(filling: 1e6, shape: g.outputShape)  // garbage: must be overwritten
        Conv.forward(y: y, x: x, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(y, ref), Self.oracleRelTol, "\(label) forward \(g)")

        let dx = Tensor(filling: 1e6, shape: g.inputShape)  // garbage: must be overwritten
        Conv.backwardInput(dx: dx, dy: dy, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(dx, refDx), Self.oracleRelTol, "\(label) backwardInput \(g)")

        // dw is accumulated (+=): start from a known non-zero tensor.
        let start = randn(g.weightShape, &rng)
        let dw = start.copy()
        Conv.backwardWeight(dw: dw, x: x, dy: dy, g: g)
        let expected = Tensor(uninitialized: g.weightShape)
        for i in 0..<expected.count { expected[i] = start[i] + refDw[i] }
        XCTAssertLessThanOrEqual(maxAbsDifference(dw, expected) / max(maxAbs(refDw), 1e-12), Self.oracleRelTol,
                                 "\(label) backwardWeight (accumulating) \(g)")
    }

    func testConvMatchesNaiveOracle() {
        var rng = Xoshiro256(seed: 101)
        for g in Self.geometries(seed: 7) { checkAgainstOracle(g, &rng, label: "default budget") }
    }

    /// A tiny column budget forces the batch to be processed in chunks (1 image, and 2 images with an
    /// uneven last chunk); results must not change.
    func testConvMatchesNaiveOracleWithBatchChunking() {
        let saved = Conv.columnBudgetBytes
        defer { Conv.columnBudgetBytes = saved }
        var rng = Xoshiro256(seed: 202)
        var chunkedCases = 0
        for g in Self.geometries(seed: 8) {
            Conv.columnBudgetBytes = 1
            XCTAssertEqual(g.imagesPerChunk(), 1)
            checkAgainstOracle(g, &rng, label: "1 image per chunk")
            // two images per chunk: batch 3 -> chunks [0, 1], [2]
            let g3 = g.withBatch(3)
            Conv.columnBudgetBytes = 2 * g3.outHeight * g3.outWidth * g3.patch * 4
            XCTAssertEqual(g3.imagesPerChunk(), 2)
            checkAgainstOracle(g3, &rng, label: "2 images per chunk")
            if !(g.kernelH == 1 && g.stride == 1 && g.padding == 0) { chunkedCases += 1 }
        }
        XCTAssertGreaterThan(chunkedCases, 15)
    }

    /// Two threads run im2col weight gradients of different convolutions at the same time, both on
    /// `Workspace.shared` (as two models training in one process do), with at least two workers so
    /// that each call sums per-worker partials. Every result must match the naive oracle: a call's
    /// partials may not be overwritten by the other thread's call before they are added to dw.
    func testConcurrentWeightGradientsMatchNaiveOracle() {
        let savedThreads = Parallel.threads, savedAlgorithm = Conv.algorithm
        defer { Parallel.threads = savedThreads; Conv.algorithm = savedAlgorithm }
        Parallel.threads = max(2, savedThreads)
        Conv.algorithm = .im2col
        let geometries = [
            ConvGeometry(batch: 4, height: 12, width: 12, inChannels: 8, outChannels: 16, kernel: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 6, height: 10, width: 9, inChannels: 5, outChannels: 12, kernel: 5, stride: 2, padding: 2),
        ]
        var rng = Xoshiro256(seed: 404)
        let cases = geometries.map { g -> (ConvGeometry, Tensor, Tensor, Tensor) in
            XCTAssertGreaterThan(Conv.Plan(g).workers, 1, "\(g) must split between workers")
            let x = randn(g.inputShape, &rng), dy = randn(g.outputShape, &rng)
            let w = Tensor(zeros: g.weightShape)
            return (g, x, dy, Conv.naiveBackward(x: x, w: w, dy: dy, g: g).dw)
        }
        let rounds = 300
        let worst = UnsafeMutableBufferPointer<Float>.allocate(capacity: cases.count)
        defer { worst.deallocate() }
        worst.initialize(repeating: 0)
        DispatchQueue.concurrentPerform(iterations: cases.count) { i in
            let (g, x, dy, expected) = cases[i]
            let dw = Tensor(zeros: g.weightShape), scale = max(maxAbs(expected), 1e-12)
            for _ in 0..<rounds {
                dw.data.update(repeating: 0, count: dw.count)
                Conv.backwardWeight(dw: dw, x: x, dy: dy, g: g)
                worst[i] = max(worst[i], maxAbsDifference(dw, expected) / scale)
            }
        }
        for (i, g) in geometries.enumerated() {
            XCTAssertLessThanOrEqual(worst[i], Self.oracleRelTol, "backwardWeight \(g) while another thread ran one")
        }
    }

    /// The transposed convolution is the adjoint of the convolution: <convT(x), y> == <x, conv(y)>,
    /// and its forward equals the oracle's input gradient.
    func testTransposedConvIsAdjointOfConv() {
        var rng = Xoshiro256(seed: 303)
        for g in Self.geometries(seed: 9, random: 12) {
            let w = randn(g.weightShape, &rng)
            let x = randn(g.outputShape, &rng)   // convT input: the conv's output space
            let y = randn(g.inputShape, &rng)    // convT output space: the conv's input space
            let tx = Tensor(filling: 1e6, shape: g.inputShape)
            Conv.transposedForward(y: tx, x: x, w: w, g: g)
            let cy = Tensor(filling: 1e6, shape: g.outputShape)
            Conv.forward(y: cy, x: y, w: w, g: g)
            let lhs = dot(tx, y), rhs = dot(x, cy)
            let scale = max(norm2(tx) * norm2(y), norm2(x) * norm2(cy), 1e-12)
            XCTAssertLessThanOrEqual(abs(lhs - rhs) / scale, Self.adjointRelTol, "adjoint identity \(g): \(lhs) vs \(rhs)")

            // oracle: convT(x) = the conv's input gradient for dy = x
            let ref = Conv.naiveBackward(x: y, w: w, dy: x, g: g).dx
            XCTAssertLessThanOrEqual(relativeError(tx, ref), Self.oracleRelTol, "transposedForward vs oracle \(g)")
            // its input gradient is the conv's forward
            let dx = Tensor(filling: 1e6, shape: g.outputShape)
            Conv.transposedBackwardInput(dx: dx, dy: y, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(dx, Conv.naiveForward(x: y, w: w, g: g)), Self.oracleRelTol,
                                     "transposedBackwardInput vs oracle \(g)")
        }
    }

    /// L(w, x) = <convT(x; w), R>: its weight and input gradients against central finite differences.
    func testTransposedConvGradientsMatchFiniteDifferences() {
        var rng = Xoshiro256(seed: 404)
        let saved = Conv.columnBudgetBytes
        defer { Conv.columnBudgetBytes = saved }
        for (i, g) in Self.geometries(seed: 10, random: 6).enumerated() {
            Conv.columnBudgetBytes = i % 2 == 0 ? saved : 1   // alternate: chunked and not
            let w = randn(g.weightShape, &rng), x = randn(g.outputShape, &rng), r = randn(g.inputShape, &rng)
            let out = Tensor(zeros: g.inputShape)
            func loss() -> Double { Conv.transposedForward(y: out, x: x, w: w, g: g); return dot(out, r) }
            let dw = Tensor(zeros: g.weightShape)
            Conv.transposedBackwardWeight(dw: dw, x: x, dy: r, g: g)
            let wi = sampleIndices(w.count, 24, &rng)
            assertGradientMatches(dw, finiteDifference(w, indices: wi, h: 1e-2, loss), indices: wi,
                                  tol: Self.linearFDTol, "convT weight gradient \(g)")
            let dx = Tensor(zeros: g.outputShape)
            Conv.transposedBackwardInput(dx: dx, dy: r, w: w, g: g)
            let xi = sampleIndices(x.count, 24, &rng)
            assertGradientMatches(dx, finiteDifference(x, indices: xi, h: 1e-2, loss), indices: xi,
                                  tol: Self.linearFDTol, "convT input gradient \(g)")
        }
    }

    /// Layout conversions used at the PyTorch boundary.
    func testPermutationsRoundTrip() {
        var rng = Xoshiro256(seed: 505)
        let t = randn([2, 3, 4, 5], &rng)
        let nhwc = t.nchwToNHWC()
        XCTAssertEqual(nhwc.shape, [2, 4, 5, 3])
        // element [n, c, h, w] of NCHW is [n, h, w, c] of NHWC
        XCTAssertEqual(nhwc[((1 * 4 + 2) * 5 + 3) * 3 + 1], t[((1 * 3 + 1) * 4 + 2) * 5 + 3])
        XCTAssertEqual(maxAbsDifference(nhwc.nhwcToNCHW(), t), 0)
    }
}
