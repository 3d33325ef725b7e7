import XCTest
@testable import DiscoCore

/// Winograd F(2x2, 2x2) and F(4x4, 2x2) for 4x4 stride-2 pad-1 convolutions against the naive
/// 7-loop oracle (`Conv.naiveForward/naiveBackward`, accumulated in Double): forward, input gradient,
/// weight gradient (accumulating), chunked and unchunked, with 1-3 workers, with prepared weights and
/// a fused bias + activation (inference), and the transposed convolution through Conv.
final class WinogradTests: XCTestCase {
    /// max |winograd - naive| / max |naive|, per tile size. F(2, 2) uses only +-1 coefficients; the
    /// error is float rounding of sums of at most 16C (forward), 16K (input gradient) or
    /// ~N*H*W/4*9 (weight gradient) terms. F(4, 2) has coefficients up to 4 (B^T) and 1/2 (G):
    /// its transforms cancel larger intermediate values, so its rounding is a few times larger.
    static func relTol(_ m: Int) -> Float { m == 2 ? 1e-5 : 1e-4 }

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
        for (h, w) in [(2, 6), (8, 4), (6, 10), (12, 2), (20, 12)] {
            gs.append(ConvGeometry(batch: 1 + i % 5, height: h, width: w, inChannels: 5, outChannels: 9,
                                   kernel: 4, stride: 2, padding: 1))
            i += 1
        }
        return gs
    }

    func checkAgainstOracle(_ g: ConvGeometry, _ f: Winograd, _ rng: inout Xoshiro256, label: String) {
        XCTAssertTrue(Winograd.isEligible(g), "\(g)")
        let tol = Self.relTol(f.tile)
        let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
        let ref = Conv.naiveForward(x: x, w: w, g: g)
        let (refDx, refDw) = Conv.naiveBackward(x: x, w: w, dy: dy, g: g)

        // dw is accumulated (+=): start from a known non-zero tensor.
        let start = randn(g.weightShape, &rng)
        let expected = Tensor(uninitialized: g.weightShape)
        for i in 0..<expected.count { expected[i] = start[i] + refDw[i] }

        // Both ways of sharing the work between workers (one worker: the image split alone).
        let saved = Winograd.split
        defer { Winograd.split = saved }
        for split in [Winograd.Split.images, .points] {
            Winograd.split = split
            let what = "\(label) \(split) split \(f)"
            let y = Tensor(filling: 1e6, shape: g.outputShape)  // garbage: must be overwritten
            f.forward(y: y, x: x, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(y, ref), tol, "\(what) forward \(g)")

            let dx = Tensor(filling: 1e6, shape: g.inputShape)  // garbage: must be overwritten
            f.backwardInput(dx: dx, dy: dy, w: w, g: g)
            XCTAssertLessThanOrEqual(relativeError(dx, refDx), tol, "\(what) input gradient \(g)")

            let dw = start.copy()
            f.backwardWeight(dw: dw, x: x, dy: dy, g: g)
            XCTAssertLessThanOrEqual(maxAbsDifference(dw, expected) / max(maxAbs(refDw), 1e-12), tol,
                                     "\(what) weight gradient (accumulating) \(g)")
        }
    }

    /// F(m, 2) reproduces the 2-tap correlation y[i] = d[i] g[0] + d[i + 1] g[1]; F(2, 2)'s
    /// matrices are the ones written out in Winograd.swift.
    func testTransformMatrices() {
        XCTAssertEqual(Winograd.f2.BT, [1, -1, 0, 0, 1, 0, 0, -1, 1])
        XCTAssertEqual(Winograd.f2.G, [1, 0, 1, 1, 0, 1])
        XCTAssertEqual(Winograd.f2.AT, [1, 1, 0, 0, 1, 1])
        for f in [Winograd.f2, Winograd.f4] {
            XCTAssertEqual(f.alpha, f.tile + 1)
            var rng = Xoshiro256(seed: UInt64(f.tile))
            for _ in 0..<20 {
                let d = (0..<f.alpha).map { _ in rng.nextNormal() }, g = (0..<2).map { _ in rng.nextNormal() }
                let gg = (0..<f.alpha).map { r in f.G[r * 2] * g[0] + f.G[r * 2 + 1] * g[1] }
                let bd = (0..<f.alpha).map { r in (0..<f.alpha).reduce(Float(0)) { $0 + f.BT[r * f.alpha + $1] * d[$1] } }
                for i in 0..<f.tile {
                    let y = (0..<f.alpha).reduce(Float(0)) { $0 + f.AT[i * f.alpha + $1] * gg[$1] * bd[$1] }
                    XCTAssertEqual(y, d[i] * g[0] + d[i + 1] * g[1], accuracy: 1e-4, "\(f), output \(i)")
                }
            }
        }
    }

    func testWinogradMatchesNaiveOracle() {
        var rng = Xoshiro256(seed: 601)
        let gs = Self.geometries()
        XCTAssertGreaterThan(gs.count, 60)
        for g in gs { checkAgainstOracle(g, .f2, &rng, label: "default budget") }
        // F(4x4): every other geometry (partial tiles at 2, 6, 10, 12 and 20 included).
        for (i, g) in gs.enumerated() where i % 2 == 0 { checkAgainstOracle(g, .f4, &rng, label: "default budget") }
    }

    /// DiscoGAN's own layer shapes at 64x64 (batch 2): e1/c1/d4 (3 -> 64 channels, 64x64 input), e2 (64 -> 128),
    /// e4 (256 -> 512, 8x8 input).
    func testWinogradMatchesNaiveOracleOnDiscoGANShapes() {
        var rng = Xoshiro256(seed: 605)
        for (h, c, k) in [(64, 3, 64), (32, 64, 128), (8, 256, 512)] {
            for f in [Winograd.f2, .f4] {
                checkAgainstOracle(ConvGeometry(batch: 2, height: h, width: h, inChannels: c, outChannels: k, kernel: 4, stride: 2, padding: 1),
                                   f, &rng, label: "DiscoGAN shape")
            }
        }
    }

    /// A tiny budget forces chunks of 1 image, and of 2 images with an uneven last chunk (batch 3 on
    /// one worker, batch 5 on two); results must not change.
    func testWinogradMatchesNaiveOracleWithBatchChunking() {
        let saved = Conv.columnBudgetBytes
        defer { Conv.columnBudgetBytes = saved }
        var rng = Xoshiro256(seed: 602)
        for (i, g) in Self.geometries().enumerated() where i % 3 == 0 {
            let f = i % 2 == 0 ? Winograd.f2 : .f4
            Conv.columnBudgetBytes = 1
            XCTAssertEqual(f.imagesPerChunk(g), 1)
            checkAgainstOracle(g.withBatch(4), f, &rng, label: "1 image per chunk")
            for n in [3, 5] {
                let gn = g.withBatch(n)
                Conv.columnBudgetBytes = 2 * f.tilesPerImage(gn) * f.alpha * f.alpha * (4 * gn.inChannels + gn.outChannels) * 4 / f.budgetMultiple
                XCTAssertEqual(f.imagesPerChunk(gn), 2)
                checkAgainstOracle(gn, f, &rng, label: "2 images per chunk")
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
                for f in [Winograd.f2, .f4] { checkAgainstOracle(g, f, &rng, label: "\(threads) threads") }
            }
        }
    }

    /// The generic transforms follow the same rounding rule as the unrolled kernels of F(2x2) and
    /// F(4x4): forced onto either tile, they give the same bits in all three passes and in
    /// `prepareWeights` + the forward's epilogue. Channel counts 3, 8, 13 / 9, 24, 5 run the SIMD8
    /// body, the scalar tail or both; outputs of 3, 5 and 7 leave partial last tiles for m = 4 (and
    /// odd ones for m = 2); batch 3 on the default workers sums more than one weight-gradient partial.
    func testGenericTransformsMatchUnrolledBitForBit() {
        defer { Winograd.forceGeneric = false }
        var rng = Xoshiro256(seed: 606)
        for g in [ConvGeometry(batch: 3, height: 8, width: 6, inChannels: 17, outChannels: 9, kernel: 4, stride: 2, padding: 1),
                  ConvGeometry(batch: 2, height: 6, width: 6, inChannels: 3, outChannels: 24, kernel: 4, stride: 2, padding: 1),
                  ConvGeometry(batch: 3, height: 10, width: 14, inChannels: 8, outChannels: 13, kernel: 4, stride: 2, padding: 1),
                  ConvGeometry(batch: 2, height: 16, width: 10, inChannels: 13, outChannels: 5, kernel: 4, stride: 2, padding: 1)] {
            let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
            let bias = (0..<g.outChannels).map { _ in rng.nextNormal() }
            for f in [Winograd.f2, .f4] {
                var results: [[UInt32]] = []
                for generic in [false, true] {
                    Winograd.forceGeneric = generic
                    let y = Tensor(uninitialized: g.outputShape), dx = Tensor(uninitialized: g.inputShape), dw = Tensor(zeros: g.weightShape)
                    f.forward(y: y, x: x, w: w, g: g)
                    f.backwardInput(dx: dx, dy: dy, w: w, g: g)
                    f.backwardWeight(dw: dw, x: x, dy: dy, g: g)
                    let yp = Tensor(uninitialized: g.outputShape)
                    f.forward(y: yp, x: x, w: nil, prepared: f.prepareWeights(w), g: g,
                              epilogue: ConvEpilogue(bias: bias, activation: .leakyReLU))
                    results.append((y.array + dx.array + dw.array + yp.array).map(\.bitPattern))
                }
                XCTAssertEqual(results[0], results[1], "\(f) \(g)")
            }
        }
    }

    /// Inference's use: weights prepared once, bias and activation fused after the forward (per
    /// pixel) and the input gradient (the transposed convolution's forward, per image).
    func testPreparedWeightsAndEpilogue() {
        var rng = Xoshiro256(seed: 607)
        for f in [Winograd.f2, .f4] {
            let g = ConvGeometry(batch: 3, height: 16, width: 16, inChannels: 8, outChannels: 16, kernel: 4, stride: 2, padding: 1)
            let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
            let prepared = f.prepareWeights(w)
            let biasK = (0..<16).map { _ in rng.nextNormal() }, biasC = (0..<8).map { _ in rng.nextNormal() }
            let y = Tensor(uninitialized: g.outputShape)
            f.forward(y: y, x: x, w: nil, prepared: prepared, g: g, epilogue: ConvEpilogue(bias: biasK, activation: .leakyReLU))
            let ref = Conv.naiveForward(x: x, w: w, g: g)
            for i in 0..<ref.count { let v = ref[i] + biasK[i % 16]; ref[i] = v > 0 ? v : 0.2 * v }
            XCTAssertLessThanOrEqual(relativeError(y, ref), Self.relTol(f.tile), "\(f) prepared forward + bias + leaky ReLU")
            let dx = Tensor(uninitialized: g.inputShape)
            f.backwardInput(dx: dx, dy: dy, w: nil, prepared: prepared, g: g, epilogue: ConvEpilogue(bias: biasC, activation: .sigmoid))
            let refDx = Conv.naiveBackward(x: x, w: w, dy: dy, g: g).dx
            for i in 0..<refDx.count { refDx[i] = stableSigmoid(refDx[i] + biasC[i % 8]) }
            XCTAssertLessThanOrEqual(maxAbsDifference(dx, refDx), 1e-5, "\(f) prepared transposed + bias + sigmoid")
        }
    }

    /// Through Conv with `algorithm = .winograd` / `.winograd4`: the conv passes and the transposed
    /// convolution (forward = the conv's input gradient, input gradient = the conv's forward, weight
    /// gradient with x and dy exchanged) against the oracle.
    func testConvAndTransposedConvRunWinograd() {
        let saved = Conv.algorithm
        defer { Conv.algorithm = saved }
        var rng = Xoshiro256(seed: 604)
        for (algorithm, m) in [(ConvAlgorithm.winograd, 2), (.winograd4, 4)] {
            Conv.algorithm = algorithm
            let tol = Self.relTol(m)
            for (i, g) in Self.geometries().enumerated() where i % 4 == 1 {
                // winograd4 keeps F(2x2) on the convolution's forward (a transposed one's input gradient).
                XCTAssertTrue([ConvPass.forward, .inputGradient, .weightGradient].allSatisfy {
                    Conv.winogradTile(g, $0) == ($0 == .forward ? 2 : m)
                })
                let w = randn(g.weightShape, &rng)
                let x = randn(g.outputShape, &rng)   // convT input: the conv's output space
                let dy = randn(g.inputShape, &rng)   // convT output gradient: the conv's input space
                let (refY, refDw) = Conv.naiveBackward(x: dy, w: w, dy: x, g: g)   // convT(x) and its dw for output gradient dy

                let y = Tensor(filling: 1e6, shape: g.inputShape)
                Conv.transposedForward(y: y, x: x, w: w, g: g)
                XCTAssertLessThanOrEqual(relativeError(y, refY), tol, "transposedForward F\(m) \(g)")

                let dx = Tensor(filling: 1e6, shape: g.outputShape)
                Conv.transposedBackwardInput(dx: dx, dy: dy, w: w, g: g)
                XCTAssertLessThanOrEqual(relativeError(dx, Conv.naiveForward(x: dy, w: w, g: g)), tol,
                                         "transposedBackwardInput F\(m) \(g)")

                let start = randn(g.weightShape, &rng)
                let dw = start.copy()
                Conv.transposedBackwardWeight(dw: dw, x: x, dy: dy, g: g)
                let expected = Tensor(uninitialized: g.weightShape)
                for j in 0..<expected.count { expected[j] = start[j] + refDw[j] }
                XCTAssertLessThanOrEqual(maxAbsDifference(dw, expected) / max(maxAbs(refDw), 1e-12), tol,
                                         "transposedBackwardWeight F\(m) (accumulating) \(g)")

                // and the conv's own passes through Conv
                let cy = Tensor(filling: 1e6, shape: g.outputShape)
                Conv.forward(y: cy, x: dy, w: w, g: g)
                XCTAssertLessThanOrEqual(relativeError(cy, Conv.naiveForward(x: dy, w: w, g: g)), tol, "Conv.forward F\(m) \(g)")
                let cdx = Tensor(filling: 1e6, shape: g.inputShape)
                Conv.backwardInput(dx: cdx, dy: x, w: w, g: g)
                XCTAssertLessThanOrEqual(relativeError(cdx, refY), tol, "Conv.backwardInput F\(m) \(g)")
            }
        }
    }

    /// Which geometries may run Winograd: only 4x4 / stride 2 / padding 1 on even inputs; im2col
    /// turns it off; auto follows `Winograd.preferredTile`.
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
        XCTAssertEqual(Conv.winogradTile(good, .weightGradient), 2)
        Conv.algorithm = .winograd4
        XCTAssertEqual(Conv.winogradTile(good, .forward), 2, "winograd4: F(2x2) on the forward")
        XCTAssertEqual(Conv.winogradTile(good, .inputGradient), 4)
        XCTAssertEqual(Conv.winogradTile(good, .weightGradient), 4)
        Conv.algorithm = .auto
        // auto: F(2x2) on 4x4 outputs and on every forward, F(4x4) for the gradients on whole tiles
        // from 8x8 up, nothing on 3 channels.
        let big = ConvGeometry(batch: 2, height: 32, width: 16, inChannels: 64, outChannels: 128, kernel: 4, stride: 2, padding: 1)
        let uneven = ConvGeometry(batch: 2, height: 20, width: 20, inChannels: 64, outChannels: 128, kernel: 4, stride: 2, padding: 1)
        let thin = ConvGeometry(batch: 2, height: 32, width: 32, inChannels: 3, outChannels: 64, kernel: 4, stride: 2, padding: 1)
        for pass in [ConvPass.forward, .inputGradient, .weightGradient] {
            XCTAssertEqual(Conv.winogradTile(good, pass), Winograd.preferredTile(good, pass))
            XCTAssertEqual(Conv.usesWinograd(good, pass), Winograd.preferred(good, pass))
            XCTAssertEqual(Conv.winogradTile(good, pass), 2)
            XCTAssertEqual(Conv.winogradTile(big, pass), pass == .forward ? 2 : 4)
            XCTAssertEqual(Conv.winogradTile(uneven, pass), 2)
            XCTAssertNil(Winograd.preferredTile(thin, pass))
        }
    }

    /// The point split runs only for training with two or more workers; auto takes it for weight
    /// gradients where a worker's chunk has fewer tiles than the layer has output channels (e4's
    /// shape: 4 tiles per image, 512 channels), not where it has many (e2's: 64 tiles per image,
    /// 128 channels), and never for the forward or the input gradient.
    func testSplitChoice() {
        let savedSplit = Winograd.split, savedThreads = Parallel.threads
        defer { Winograd.split = savedSplit; Parallel.threads = savedThreads }
        let e4 = ConvGeometry(batch: 64, height: 8, width: 8, inChannels: 256, outChannels: 512, kernel: 4, stride: 2, padding: 1)
        let e2 = ConvGeometry(batch: 64, height: 32, width: 32, inChannels: 64, outChannels: 128, kernel: 4, stride: 2, padding: 1)
        Parallel.threads = 2
        Winograd.split = .auto
        XCTAssertTrue(Winograd.f2.usesPointSplit(e4, .weightGradient, prepared: false))
        XCTAssertFalse(Winograd.f2.usesPointSplit(e4, .forward, prepared: false))
        XCTAssertFalse(Winograd.f2.usesPointSplit(e4, .inputGradient, prepared: false))
        XCTAssertFalse(Winograd.f2.usesPointSplit(e2, .weightGradient, prepared: false))
        XCTAssertFalse(Winograd.f2.usesPointSplit(e4, .weightGradient, prepared: true))
        Winograd.split = .points
        XCTAssertTrue(Winograd.f2.usesPointSplit(e2, .forward, prepared: false))
        XCTAssertFalse(Winograd.f2.usesPointSplit(e4.withBatch(1), .weightGradient, prepared: false))
        Parallel.threads = 1
        XCTAssertFalse(Winograd.f2.usesPointSplit(e4, .weightGradient, prepared: false))
        Winograd.split = .images
        Parallel.threads = 2
        XCTAssertFalse(Winograd.f2.usesPointSplit(e4, .weightGradient, prepared: false))

        // The environment variables: any case; unset, empty or unknown means auto. (The settings
        // were read at start-up, before this: the suite's own DISCO_CONV is put back after.)
        _ = Conv.algorithm
        let original: [(String, String?)] = ["DISCO_WINOGRAD_SPLIT", "DISCO_CONV"].map { name in (name, getenv(name).map { String(cString: $0) }) }
        defer { for (name, value) in original { if let value { setenv(name, value, 1) } else { unsetenv(name) } } }
        for (value, want) in [("points", Winograd.Split.points), ("IMAGES", .images), ("", .auto), ("rows", .auto)] {
            setenv("DISCO_WINOGRAD_SPLIT", value, 1)
            XCTAssertEqual(Winograd.Split.fromEnvironment(), want, value)
        }
        unsetenv("DISCO_WINOGRAD_SPLIT")
        XCTAssertEqual(Winograd.Split.fromEnvironment(), .auto)
        for (value, want) in [("winograd4", ConvAlgorithm.winograd4), ("Direct", .direct), ("gemm", .auto)] {
            setenv("DISCO_CONV", value, 1)
            XCTAssertEqual(ConvAlgorithm.fromEnvironment(), want, value)
        }
    }
}
