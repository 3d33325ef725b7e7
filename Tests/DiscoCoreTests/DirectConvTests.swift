import XCTest
@testable import DiscoCore

/// The direct image-channel kernels (`ImageChannelBlock`: e1, c1 and d4 computed without im2col)
/// against the naive 7-loop oracle, and the 8-lane sigmoid of the inference epilogue.
final class DirectConvTests: XCTestCase {
    /// The 8-lane sigmoid against the scalar one, over the range that matters and beyond.
    func testVectorSigmoid() {
        var worst: Float = 0
        for i in stride(from: -120_000, through: 120_000, by: 8) {
            let x = SIMD8<Float>((0..<8).map { Float(i + $0) * 1e-3 })
            let y = InferenceNetwork.sigmoid8(x)
            for l in 0..<8 { worst = max(worst, abs(y[l] - stableSigmoid(x[l]))) }
        }
        XCTAssertLessThan(worst, 2e-7)
        let edge = InferenceNetwork.sigmoid8(SIMD8<Float>(-1e30, -100, -88, 0, 88, 100, 1e30, -0))
        XCTAssertEqual(edge[3], 0.5); XCTAssertEqual(edge[7], 0.5)
        XCTAssertEqual(edge[6], 1); XCTAssertLessThan(edge[0], 1e-30)
    }

    /// The image-channel kernels (e1, d4) against the naive oracle's convolution and transposed
    /// convolution (the input gradient of the convolution), on 1 and 2 workers (odd batches split
    /// unevenly), and on every partial block: output images of fewer than 6 pixels or no multiple
    /// of 6 (the convolution's 6-pixel blocks), transposed input rows narrower than 4 or no
    /// multiple of 4 (its 4-pixel groups), K = 16 and 48 (no multiple of 32), C = 1, 2, 3.
    func testImageChannelBlocksMatchDirectConvolution() {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        var rng = Xoshiro256(seed: 8)
        for (c, k, h, w, n, threads) in [(3, 64, 16, 16, 2, 1), (3, 64, 16, 16, 3, 2), (1, 32, 8, 8, 3, 2), (2, 32, 8, 8, 1, 1),
                                         (3, 16, 4, 4, 3, 2), (3, 48, 6, 10, 2, 1), (1, 16, 12, 6, 3, 2), (2, 48, 10, 14, 1, 2)] {
            Parallel.threads = threads
            let wt = Tensor.uniform([k, 4, 4, c], low: -0.3, high: 0.3, rng: &rng)
            let g = ConvGeometry(batch: n, height: h, width: w, inChannels: c, outChannels: k, kernel: 4, stride: 2, padding: 1)
            let conv = BlockSpec("e1", .conv, c, k, batchNorm: false, activation: .identity)
            let deconv = BlockSpec("d4", .deconv, k, c, batchNorm: false, activation: .identity)
            XCTAssertTrue(ImageChannelBlock.applies(to: conv) && ImageChannelBlock.applies(to: deconv))
            let x = Tensor.uniform(g.inputShape, low: -1, high: 1, rng: &rng)
            let want = Conv.naiveForward(x: x, w: wt, g: g), got = Tensor(filling: 1e6, shape: g.outputShape)
            ImageChannelBlock(spec: conv, weight: wt).convolve(x, into: got, bias: [], activation: .identity)
            XCTAssertLessThan(maxAbsDifference(got, want), 1e-5, "conv \(g), \(threads) workers")
            // Streaming stores write the same values; the leaky ReLU applied in the kernel is
            // the activation's own, value for value.
            let streamed = Tensor(filling: 1e6, shape: g.outputShape), leaky = Tensor(filling: 1e6, shape: g.outputShape)
            ImageChannelBlock(spec: conv, weight: wt).convolve(x, into: streamed, bias: [], activation: .identity, stream: true)
            XCTAssertEqual(streamed.array, got.array, "streamed conv \(g), \(threads) workers")
            ImageChannelBlock(spec: conv, weight: wt).convolve(x, into: leaky, bias: [], activation: .leakyReLU, stream: threads == 2)
            Activation.leakyReLU.forward(y: got.data, x: got.data, count: got.count)
            XCTAssertEqual(leaky.array, got.array, "conv + leaky ReLU \(g), \(threads) workers")
            XCTAssertTrue(leaky.array.contains { $0 < 0 } && leaky.array.contains { $0 > 0 }, "both signs")
            let dy = Tensor.uniform(g.outputShape, low: -1, high: 1, rng: &rng)
            let wantT = Conv.naiveBackward(x: x, w: wt, dy: dy, g: g).dx, gotT = Tensor(filling: 1e6, shape: g.inputShape)
            ImageChannelBlock(spec: deconv, weight: wt).transposed(dy, into: gotT, bias: [], activation: .identity)
            XCTAssertLessThan(maxAbsDifference(gotT, wantT), 1e-5, "transposed \(g), \(threads) workers")
        }
    }

    /// The direct kernels as Conv's passes (`DISCO_CONV=direct`, and what auto picks): forward and
    /// input gradient against the oracle, on the geometries they apply to; the geometries they do
    /// not fit fall back to im2col.
    func testDirectConvAsConvPasses() {
        let saved = Conv.algorithm
        defer { Conv.algorithm = saved }
        var rng = Xoshiro256(seed: 9)
        let e1 = ConvGeometry(batch: 3, height: 16, width: 16, inChannels: 3, outChannels: 64, kernel: 4, stride: 2, padding: 1)
        let gray = ConvGeometry(batch: 2, height: 8, width: 8, inChannels: 1, outChannels: 32, kernel: 4, stride: 2, padding: 1)
        Conv.algorithm = .auto
        XCTAssertEqual(Conv.kernel(e1, .forward), .direct)
        XCTAssertEqual(Conv.kernel(e1, .inputGradient), .direct)
        XCTAssertEqual(Conv.kernel(e1, .weightGradient), .direct)
        Conv.algorithm = .direct
        XCTAssertEqual(Conv.kernel(e1, .inputGradient), .direct)
        XCTAssertEqual(Conv.kernel(e1, .weightGradient), .direct)
        XCTAssertEqual(Conv.kernel(ConvGeometry(batch: 1, height: 8, width: 7, inChannels: 3, outChannels: 64, kernel: 4, stride: 2, padding: 1), .forward), .im2col, "W odd")
        XCTAssertEqual(Conv.kernel(ConvGeometry(batch: 1, height: 8, width: 8, inChannels: 3, outChannels: 24, kernel: 4, stride: 2, padding: 1), .forward), .im2col, "K not a multiple of 16")
        XCTAssertEqual(Conv.kernel(ConvGeometry(batch: 1, height: 8, width: 8, inChannels: 4, outChannels: 64, kernel: 4, stride: 2, padding: 1), .forward), .im2col, "4 channels")
        for g in [e1, gray] {
            let x = Tensor.uniform(g.inputShape, low: -1, high: 1, rng: &rng), w = Tensor.uniform(g.weightShape, low: -0.3, high: 0.3, rng: &rng)
            let dy = Tensor.uniform(g.outputShape, low: -1, high: 1, rng: &rng)
            let y = Tensor(filling: 1e6, shape: g.outputShape), dx = Tensor(filling: 1e6, shape: g.inputShape)
            Conv.forward(y: y, x: x, w: w, g: g)
            Conv.backwardInput(dx: dx, dy: dy, w: w, g: g)
            let want = Conv.naiveForward(x: x, w: w, g: g)
            XCTAssertLessThan(maxAbsDifference(y, want), 1e-5, "forward \(g)")
            // With an activation: the direct kernel's in-store leaky ReLU and im2col's pass after.
            for algorithm in [ConvAlgorithm.direct, .im2col] {
                Conv.algorithm = algorithm
                let yl = Tensor(filling: 1e6, shape: g.outputShape)
                Conv.forward(y: yl, x: x, w: w, g: g, activation: .leakyReLU)
                for i in 0..<want.count {
                    let v = want[i], expected = v > 0 ? v : v * Activation.leakySlope
                    if abs(yl[i] - expected) > 1e-5 { XCTFail("forward + leaky ReLU \(g) \(algorithm) [\(i)]: \(yl[i]) vs \(expected)"); break }
                }
            }
            Conv.algorithm = .direct
            XCTAssertLessThan(maxAbsDifference(dx, Conv.naiveBackward(x: x, w: w, dy: dy, g: g).dx), 1e-5, "input gradient \(g)")
        }
    }

    /// The direct weight gradient against the oracle, accumulating into dw, with 1, 2 and 3
    /// workers (batch 5 on 3 workers: shares of 2, 2, 1; on 4 the last has none), on taller
    /// than wide images (10 rows of 8) and on rows of 65 pixels.
    func testDirectWeightGradient() {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        var rng = Xoshiro256(seed: 10)
        for (threads, g) in [(1, ConvGeometry(batch: 2, height: 8, width: 6, inChannels: 3, outChannels: 16, kernel: 4, stride: 2, padding: 1)),
                             (2, ConvGeometry(batch: 3, height: 16, width: 16, inChannels: 3, outChannels: 64, kernel: 4, stride: 2, padding: 1)),
                             (3, ConvGeometry(batch: 5, height: 6, width: 10, inChannels: 1, outChannels: 32, kernel: 4, stride: 2, padding: 1)),
                             (4, ConvGeometry(batch: 5, height: 4, width: 4, inChannels: 2, outChannels: 48, kernel: 4, stride: 2, padding: 1)),
                             (2, ConvGeometry(batch: 3, height: 20, width: 16, inChannels: 3, outChannels: 16, kernel: 4, stride: 2, padding: 1)),
                             (1, ConvGeometry(batch: 2, height: 6, width: 130, inChannels: 3, outChannels: 16, kernel: 4, stride: 2, padding: 1))] {
            Parallel.threads = threads
            XCTAssertTrue(DirectConv.applies(g, .weightGradient))
            let x = Tensor.uniform(g.inputShape, low: -1, high: 1, rng: &rng), w = Tensor.uniform(g.weightShape, low: -0.3, high: 0.3, rng: &rng)
            let dy = Tensor.uniform(g.outputShape, low: -1, high: 1, rng: &rng)
            let start = Tensor.uniform(g.weightShape, low: -1, high: 1, rng: &rng), dw = start.copy()
            DirectConv.backwardWeight(dw: dw, x: x, dy: dy, g: g)
            let ref = Conv.naiveBackward(x: x, w: w, dy: dy, g: g).dw
            for i in 0..<ref.count { ref[i] += start[i] }
            XCTAssertLessThan(relativeError(dw, ref), 1e-5, "\(threads) workers, \(g)")
        }
    }
}
