import XCTest
@testable import DiscoCore

/// Winograd F(2x2, 2x2) for 4x4 stride-2 pad-1 convolutions against the naive 7-loop oracle
/// (`Conv.naiveForward/naiveBackward`, accumulated in Double): forward, input gradient, weight
/// gradient (accumulating), chunked and unchunked, with 1-3 workers, and the transposed convolution
/// through Conv with `Conv.algorithm = .winograd`.
final class WinogradTests: XCTestCase {
    /// max |winograd - naive| / max |naive|. F(2, 2) uses only +-1 coefficients; the error is float
    /// rounding of sums of at most 16C (forward), 16K (input gradient) or ~N*H*W/4*9 (weight gradient) terms.
    static let relTol: Float = 1e-5

    /// Batch 1-5, H = W in {2, 4, 6, 8, 16}, C and K in {1, 3, 8, 17}, and a few non-square inputs.
    static func geometries() -> [ConvGeometry] {
        var gs: [ConvGeometry] = []
        var i = 0
        for h in [2, 4, 6, 8, 16] {
            for c in [1, 3, 8, 17] { for k in [1, 3, 8, 17] {
                // All 16 channel pairs at the small sizes; a diagonal-ish subset at 16x16 (the oracle is slow).
                if h == 16 && (c + k) % 2 == 1 && c != 17 { continue }
                gs.append(ConvGeometry(batch: 1 + i % 5, height: h, width: h, inChannels: c, outChannels: k,
                                       kernel: 4, stride: 2, padding: 1))
                i += 1
            } }
        }
        for (h, w) in [(2, 6), (8, 4), (6, 10), (12, 2)] {
            gs.append(ConvGeometry(batch: 1 + i % 5, height: h, width: w, inChannels: 5, outChannels: 9,
                                   kernel: 4, stride: 2, padding: 1))
            i += 1
        }
        return gs
    }

    func checkAgainstOracle(_ g: ConvGeometry, _ rng: inout Xoshiro256, label: String) {
        XCTAssertTrue(Winograd.isEligible(g), "\(g)")
        let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
        let ref = Conv.naiveForward(x: x, w: w, g: g)
        let (refDx, refDw) = Conv.naiveBackward(x: x, w: w, dy: dy, g: g)

        let y = Tensor(filling: 1e6, shape: g.outputShape)  // garbage: must be overwritten
        Winograd.forward(y: y, x: x, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(y, ref), Self.relTol, "\(label) forward \(g)")

        let dx = Tensor(filling: 1e6, shape: g.inputShape)  // garbage: must be overwritten
        Winograd.backwardInput(dx: dx, dy: dy, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(dx, refDx), Self.relTol, "\(label) input gradient \(g)")

        // dw is accumulated (+=): start from a known non-zero tensor.
        let start = randn(g.weightShape, &rng)
        let dw = start.copy()
        Winograd.backwardWeight(dw: dw, x: x, dy: dy, g: g)
        let expected = Tensor(uninitialized: g.weightShape)
        for i in 0..<expected.count { expected[i] = start[i] + refDw[i] }
        XCTAssertLessThanOrEqual(maxAbsDifference(dw, expected) / max(maxAbs(refDw), 1e-12), Self.relTol,
                                 "\(label) weight gradient (accumulating) \(g)")
    }

    func testWinogradMatchesNaiveOracle() {
        var rng = Xoshiro256(seed: 601)
        let gs = Self.geometries()
        XCTAssertGreaterThan(gs.count, 60)
        for g in gs { checkAgainstOracle(g, &rng, label: "default budget") }
    }

    /// DiscoGAN's own layer shapes at 64x64 (batch 2): e1/c1/d4 (3 -> 64 channels, 64x64 input), e2 (64 -> 128),
    /// e4 (256 -> 512, 8x8 input).
    func testWinogradMatchesNaiveOracleOnDiscoGANShapes() {
        var rng = Xoshiro256(seed: 605)
        for (h, c, k) in [(64, 3, 64), (32, 64, 128), (8, 256, 512)] {
            checkAgainstOracle(ConvGeometry(batch: 2, height: h, width: h, inChannels: c, outChannels: k, kernel: 4, stride: 2, padding: 1),
                               &rng, label: "DiscoGAN shape")
        }
    }

    /// A tiny budget forces chunks of 1 image, and of 2 images with an uneven last chunk (batch 3 on
    /// one worker, batch 5 on two); results must not change.
    func testWinogradMatchesNaiveOracleWithBatchChunking() {
        let saved = Conv.columnBudgetBytes
        defer { Conv.columnBudgetBytes = saved }
        var rng = Xoshiro256(seed: 602)
        for (i, g) in Self.geometries().enumerated() where i % 3 == 0 {
            Conv.columnBudgetBytes = 1
            XCTAssertEqual(Winograd.imagesPerChunk(g), 1)
            checkAgainstOracle(g.withBatch(4), &rng, label: "1 image per chunk")
            for n in [3, 5] {
                let gn = g.withBatch(n)
                Conv.columnBudgetBytes = 2 * Winograd.tilesPerImage(gn) * 9 * (4 * gn.inChannels + gn.outChannels) * 4
                XCTAssertEqual(Winograd.imagesPerChunk(gn), 2)
                checkAgainstOracle(gn, &rng, label: "2 images per chunk")
            }
        }
    }

    /// 1 and 3 workers (the weight-gradient partials of 3 workers are summed; batch 4 on 3 workers
    /// leaves the last one without images).
    func testWinogradWithOtherWorkerCounts() {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        var rng = Xoshiro256(seed: 603)
        for threads in [1, 3] {
            Parallel.threads = threads
            for g in [ConvGeometry(batch: 4, height: 8, width: 8, inChannels: 17, outChannels: 8, kernel: 4, stride: 2, padding: 1),
                      ConvGeometry(batch: 5, height: 6, width: 4, inChannels: 3, outChannels: 17, kernel: 4, stride: 2, padding: 1),
                      ConvGeometry(batch: 2, height: 16, width: 16, inChannels: 8, outChannels: 3, kernel: 4, stride: 2, padding: 1)] {
                checkAgainstOracle(g, &rng, label: "\(threads) threads")
            }
        }
    }

    /// Through Conv with `algorithm = .winograd`: the conv passes and the transposed convolution
    /// (forward = the conv's input gradient, input gradient = the conv's forward, weight gradient with
    /// x and dy exchanged) against the oracle.
    func testConvAndTransposedConvRunWinograd() {
        let saved = Conv.algorithm
        defer { Conv.algorithm = saved }
        Conv.algorithm = .winograd
        var rng = Xoshiro256(seed: 604)
        for (i, g) in Self.geometries().enumerated() where i % 4 == 1 {
            XCTAssertTrue(Conv.usesWinograd(g, .forward) && Conv.usesWinograd(g, .inputGradient) && Conv.usesWinograd(g, .weightGradient))
            let w = randn(g.weightShape, &rng)
            let x = randn(g.outputShape, &rng)   // convT input: the conv's output space
            let dy = randn(g.inputShape, &rng)   // convT output gradient: the conv's input space
            let (refY, refDw) = Conv.naiveBackward(x: dy, w: w, dy: x, g: g)   // convT(x) and its dw for output gradient dy

            let y = Tensor(filling: 1e6, shape: g.inputShape)
            Conv.transposedForward(y: y, x: x, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(y, refY), Self.relTol, "transposedForward \(g)")

            let dx = Tensor(filling: 1e6, shape: g.outputShape)
            Conv.transposedBackwardInput(dx: dx, dy: dy, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(dx, Conv.naiveForward(x: dy, w: w, g: g)), Self.relTol,
                                     "transposedBackwardInput \(g)")

            let start = randn(g.weightShape, &rng)
            let dw = start.copy()
            Conv.transposedBackwardWeight(dw: dw, x: x, dy: dy, g: g)
            let expected = Tensor(uninitialized: g.weightShape)
            for j in 0..<expected.count { expected[j] = start[j] + refDw[j] }
            XCTAssertLessThanOrEqual(maxAbsDifference(dw, expected) / max(maxAbs(refDw), 1e-12), Self.relTol,
                                     "transposedBackwardWeight (accumulating) \(g)")

            // and the conv's own passes through Conv
            let cy = Tensor(filling: 1e6, shape: g.outputShape)
            Conv.forward(y: cy, x: dy, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(cy, Conv.naiveForward(x: dy, w: w, g: g)), Self.relTol, "Conv.forward \(g)")
            let cdx = Tensor(filling: 1e6, shape: g.inputShape)
            Conv.backwardInput(dx: cdx, dy: x, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(cdx, refY), Self.relTol, "Conv.backwardInput \(g)")
        }
    }

    /// Which geometries may run Winograd: only 4x4 / stride 2 / padding 1 on even inputs; im2col
    /// turns it off; auto follows `Winograd.preferred`.
    func testEligibilityAndAlgorithmChoice() {
        let saved = Conv.algorithm
        defer { Conv.algorithm = saved }
        let good = ConvGeometry(batch: 2, height: 8, width: 8, inChannels: 64, outChannels: 128, kernel: 4, stride: 2, padding: 1)
        XCTAssertTrue(Winograd.isEligible(good))
        XCTAssertFalse(Winograd.isEligible(ConvGeometry(batch: 2, height: 7, width: 8, inChannels: 8, outChannels: 8, kernel: 4, stride: 2, padding: 1)))
        XCTAssertFalse(Winograd.isEligible(ConvGeometry(batch: 2, height: 8, width: 8, inChannels: 8, outChannels: 8, kernel: 4, stride: 1, padding: 0)))
        XCTAssertFalse(Winograd.isEligible(ConvGeometry(batch: 2, height: 8, width: 8, inChannels: 8, outChannels: 8, kernel: 3, stride: 2, padding: 1)))
        XCTAssertFalse(Winograd.isEligible(ConvGeometry(batch: 2, height: 8, width: 8, inChannels: 8, outChannels: 8, kernel: 4, stride: 2, padding: 0)))
        Conv.algorithm = .im2col
        XCTAssertFalse(Conv.usesWinograd(good, .forward))
        Conv.algorithm = .winograd
        XCTAssertTrue(Conv.usesWinograd(good, .weightGradient))
        Conv.algorithm = .auto
        for pass in [ConvPass.forward, .inputGradient, .weightGradient] {
            XCTAssertEqual(Conv.usesWinograd(good, pass), Winograd.preferred(good, pass))
        }
    }
}
