import XCTest
@testable import DiscoCore

/// DiscoCore's kernels against PyTorch (Tests/Fixtures/*.safetensors, written by make_fixtures.py).
/// Fixtures are in PyTorch's layouts (NCHW activations, Conv2d OIHW, ConvTranspose2d [in, out, k, k]);
/// `nchwToNHWC()` (permute [0, 2, 3, 1]) turns each of them into disco's layout.
/// A missing fixture file fails the test (`loadFixture`).
final class PyTorchFixtureTests: XCTestCase {
    /// max |disco - torch| / max |torch| for conv outputs and gradients (both float32, different summation orders).
    static let convRelTol: Float = 3e-5
    /// Same measure for batch norm outputs and gradients (float32 on both sides, sums over 72 rows).
    static let bnRelTol: Float = 2e-5
    /// Running statistics, absolute (values ~1).
    static let runningAbsTol: Float = 1e-6
    /// Elementwise ops and loss gradients, relative to max |torch|.
    static let opsRelTol: Float = 1e-6
    /// Scalar losses, relative.
    static let lossRelTol: Float = 1e-6
    /// Adam parameters after each of 3 steps, absolute (parameters ~N(0, 1), steps up to 1e-2).
    static let adamAbsTol: Float = 1e-6

    func assertClose(_ a: Tensor, _ ref: Tensor, _ tol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, ref.shape, what, file: file, line: line)
        guard a.shape == ref.shape else { return }
        let e = relativeError(a, ref)
        XCTAssertLessThanOrEqual(e, tol, "\(what): max|diff|/max|ref| = \(e)", file: file, line: line)
    }

    func assertScalar(_ v: Float, _ ref: Float, _ tol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(v - ref), tol * max(abs(ref), 1e-30), "\(what): \(v) vs torch \(ref)", file: file, line: line)
    }

    // MARK: convolution

    func testConv2dMatchesPyTorch() throws {
        let f = try loadFixture("conv.safetensors")
        var cases = 0
        while f.entries["conv\(cases).cfg"] != nil {
            let p = "conv\(cases)"
            let c = try f.ints("\(p).cfg")  // [N, Cin, H, W, Cout, k, stride, pad]
            let g = ConvGeometry(batch: c[0], height: c[2], width: c[3], inChannels: c[1], outChannels: c[4],
                                 kernel: c[5], stride: c[6], padding: c[7])
            let x = try f.tensor("\(p).x").nchwToNHWC(), w = try f.tensor("\(p).w").nchwToNHWC()
            let dy = try f.tensor("\(p).dy").nchwToNHWC()
            let y = Tensor(zeros: g.outputShape)
            Conv.forward(y: y, x: x, w: w, g: g)
            assertClose(y, try f.tensor("\(p).y").nchwToNHWC(), Self.convRelTol, "\(p) forward \(g)")
            let dx = Tensor(zeros: g.inputShape)
            Conv.backwardInput(dx: dx, dy: dy, w: w, g: g)
            assertClose(dx, try f.tensor("\(p).dx").nchwToNHWC(), Self.convRelTol, "\(p) input gradient \(g)")
            let dw = Tensor(zeros: g.weightShape)
            Conv.backwardWeight(dw: dw, x: x, dy: dy, g: g)
            assertClose(dw, try f.tensor("\(p).dw").nchwToNHWC(), Self.convRelTol, "\(p) weight gradient \(g)")
            cases += 1
        }
        XCTAssertEqual(cases, 11, "conv.safetensors: expected 11 configurations")
    }

    /// ConvTranspose2d with input [N, Cin, H, W], Cout, k, s, p is the adjoint of the convolution with geometry
    /// (N, Hout, Wout, in Cout, out Cin, k, s, p), Hout = (H-1)s - 2p + k; weight [Cin, Cout, k, k] permuted
    /// [0, 2, 3, 1] is disco's [Cin, k, k, Cout].
    func testConvTranspose2dMatchesPyTorch() throws {
        let f = try loadFixture("convtranspose.safetensors")
        var cases = 0
        while f.entries["deconv\(cases).cfg"] != nil {
            let p = "deconv\(cases)"
            let c = try f.ints("\(p).cfg")  // [N, Cin, H, W, Cout, k, stride, pad], H x W = its input size
            let (n, cin, h, w, cout, k, s, pad) = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
            let hout = (h - 1) * s - 2 * pad + k, wout = (w - 1) * s - 2 * pad + k
            let g = ConvGeometry(batch: n, height: hout, width: wout, inChannels: cout, outChannels: cin,
                                 kernel: k, stride: s, padding: pad)
            XCTAssertEqual([g.outHeight, g.outWidth], [h, w], "\(p): geometry")
            let x = try f.tensor("\(p).x").nchwToNHWC(), wt = try f.tensor("\(p).w").nchwToNHWC()
            let dy = try f.tensor("\(p).dy").nchwToNHWC()
            XCTAssertEqual(wt.shape, g.weightShape)
            let y = Tensor(zeros: g.inputShape)
            Conv.transposedForward(y: y, x: x, w: wt, g: g)
            assertClose(y, try f.tensor("\(p).y").nchwToNHWC(), Self.convRelTol, "\(p) forward \(g)")
            let dx = Tensor(zeros: g.outputShape)
            Conv.transposedBackwardInput(dx: dx, dy: dy, w: wt, g: g)
            assertClose(dx, try f.tensor("\(p).dx").nchwToNHWC(), Self.convRelTol, "\(p) input gradient \(g)")
            let dw = Tensor(zeros: g.weightShape)
            Conv.transposedBackwardWeight(dw: dw, x: x, dy: dy, g: g)
            assertClose(dw, try f.tensor("\(p).dw").nchwToNHWC(), Self.convRelTol, "\(p) weight gradient \(g)")
            cases += 1
        }
        XCTAssertEqual(cases, 11, "convtranspose.safetensors: expected 11 configurations")
    }

    // MARK: batch norm

    func testBatchNormMatchesPyTorch() throws {
        let f = try loadFixture("batchnorm.safetensors")
        let hp = try f.tensor("bn.hparams")        // [eps, momentum]
        let eps = hp[0], momentum = hp[1]
        let x4 = try f.tensor("bn.x").nchwToNHWC()
        let C = x4.shape[3], M = x4.count / C
        let x = x4.reshaped([M, C])
        let gamma = try f.tensor("bn.gamma"), beta = try f.tensor("bn.beta")
        let y = Tensor(zeros: [M, C]), xhat = Tensor(zeros: [M, C]), invstd = Tensor(zeros: [C])
        let stats = BatchNormKernel.forwardTraining(y: y.data, xhat: xhat.data, invstd: invstd.data, x: x.data,
                                                    gamma: gamma.data, beta: beta.data, rows: M, channels: C, eps: eps)
        assertClose(y, try f.tensor("bn.y").nchwToNHWC().reshaped([M, C]), Self.bnRelTol, "BN train forward")

        let dy = try f.tensor("bn.dy").nchwToNHWC().reshaped([M, C])
        let dx = Tensor(zeros: [M, C]), dgamma = Tensor(zeros: [C]), dbeta = Tensor(zeros: [C])
        BatchNormKernel.backward(dx: dx.data, dgamma: dgamma.data, dbeta: dbeta.data, dy: dy.data, xhat: xhat.data,
                                 gamma: gamma.data, invstd: invstd.data, rows: M, channels: C)
        assertClose(dx, try f.tensor("bn.dx").nchwToNHWC().reshaped([M, C]), Self.bnRelTol, "BN input gradient")
        assertClose(dgamma, try f.tensor("bn.dgamma"), Self.bnRelTol, "BN gamma gradient")
        assertClose(dbeta, try f.tensor("bn.dbeta"), Self.bnRelTol, "BN beta gradient")

        let rm = Tensor(zeros: [C]), rv = Tensor(filling: 1, shape: [C])
        BatchNormKernel.updateRunning(runningMean: rm.data, runningVar: rv.data, mean: stats.mean, variance: stats.variance,
                                      rows: M, momentum: momentum)
        XCTAssertLessThanOrEqual(maxAbsDifference(rm, try f.tensor("bn.running_mean")), Self.runningAbsTol, "running_mean")
        XCTAssertLessThanOrEqual(maxAbsDifference(rv, try f.tensor("bn.running_var")), Self.runningAbsTol, "running_var")

        // eval mode with those running statistics
        let x2 = try f.tensor("bn.x2").nchwToNHWC()
        let M2 = x2.count / C
        let y2 = Tensor(zeros: [M2, C])
        BatchNormKernel.forwardInference(y: y2.data, x: x2.data, gamma: gamma.data, beta: beta.data,
                                         runningMean: rm.data, runningVar: rv.data, rows: M2, channels: C, eps: eps)
        assertClose(y2, try f.tensor("bn.y2").nchwToNHWC().reshaped([M2, C]), Self.bnRelTol, "BN eval forward")

        // two train forwards of different shapes from (0, 1): momentum accumulation
        let rm2 = Tensor(zeros: [C]), rv2 = Tensor(filling: 1, shape: [C])
        for key in ["bn2.xa", "bn2.xb"] {
            let t = try f.tensor(key).nchwToNHWC()
            let m = t.count / C
            let yy = Tensor(zeros: [m, C]), hh = Tensor(zeros: [m, C]), ii = Tensor(zeros: [C])
            let one = Tensor(filling: 1, shape: [C]), zero = Tensor(zeros: [C])
            let s = BatchNormKernel.forwardTraining(y: yy.data, xhat: hh.data, invstd: ii.data, x: t.data, gamma: one.data,
                                                    beta: zero.data, rows: m, channels: C, eps: eps)
            BatchNormKernel.updateRunning(runningMean: rm2.data, runningVar: rv2.data, mean: s.mean, variance: s.variance,
                                          rows: m, momentum: momentum)
        }
        XCTAssertLessThanOrEqual(maxAbsDifference(rm2, try f.tensor("bn2.running_mean")), Self.runningAbsTol, "bn2 running_mean")
        XCTAssertLessThanOrEqual(maxAbsDifference(rv2, try f.tensor("bn2.running_var")), Self.runningAbsTol, "bn2 running_var")
    }

    // MARK: activations and losses

    func testActivationsMatchPyTorch() throws {
        let f = try loadFixture("ops.safetensors")
        for (key, act) in [("lrelu", Activation.leakyReLU), ("relu", .relu), ("sigmoid", .sigmoid), ("tanh", .tanh)] {
            let x = try f.tensor("\(key).x")
            let y = act.forward(x)
            assertClose(y, try f.tensor("\(key).y"), Self.opsRelTol, "\(key) forward")
            let dx = act.backward(dy: try f.tensor("\(key).dy"), y: y)
            assertClose(dx, try f.tensor("\(key).dx"), Self.opsRelTol, "\(key) backward")
        }
    }

    func testLossesMatchPyTorch() throws {
        let f = try loadFixture("ops.safetensors")
        // BCE with logits, including +-100 and +-30 (float64 reference)
        let bce = bceWithLogitsLoss(logits: try f.tensor("bce.logits"), targets: try f.tensor("bce.target"))
        assertScalar(bce.loss, try f.tensor("bce.loss")[0], Self.lossRelTol, "bce loss")
        assertClose(bce.grad, try f.tensor("bce.grad"), Self.opsRelTol, "bce grad")

        let mse = mseLoss(predictions: try f.tensor("mse.x"), targets: try f.tensor("mse.t"))
        assertScalar(mse.loss, try f.tensor("mse.loss")[0], Self.lossRelTol, "mse loss")
        assertClose(mse.grad, try f.tensor("mse.grad"), Self.opsRelTol, "mse grad")

        let l1 = l1Loss(predictions: try f.tensor("l1.x"), targets: try f.tensor("l1.t"))
        assertScalar(l1.loss, try f.tensor("l1.loss")[0], Self.lossRelTol, "l1 loss")
        assertClose(l1.grad, try f.tensor("l1.grad"), Self.opsRelTol, "l1 grad")

        for t in [1, 0] {
            let ls = lsganLoss(outputs: try f.tensor("lsgan\(t).x"), target: Float(t))
            assertScalar(ls.loss, try f.tensor("lsgan\(t).loss")[0], Self.lossRelTol, "lsgan\(t) loss")
            assertClose(ls.grad, try f.tensor("lsgan\(t).grad"), Self.opsRelTol, "lsgan\(t) grad")
        }

        // feature matching on NHWC features (as disco's discriminator produces them)
        let real = [try f.tensor("fm.real2").nchwToNHWC(), try f.tensor("fm.real3").nchwToNHWC()]
        let fake = [try f.tensor("fm.fake2").nchwToNHWC(), try f.tensor("fm.fake3").nchwToNHWC()]
        let fm = featureMatchingLoss(real: real, fake: fake)
        assertScalar(fm.loss, try f.tensor("fm.loss")[0], 1e-5, "feature matching loss")
        for (i, k) in ["2", "3"].enumerated() {
            assertClose(fm.dFake[i], try f.tensor("fm.dfake\(k)").nchwToNHWC(), 1e-5, "feature matching dFake\(k)")
            assertClose(fm.dReal[i], try f.tensor("fm.dreal\(k)").nchwToNHWC(), 1e-5, "feature matching dReal\(k)")
        }
    }

    // MARK: Adam

    func testAdamMatchesPyTorch() throws {
        let f = try loadFixture("adam.safetensors")
        var cases = 0
        while f.entries["adam\(cases).hparams"] != nil {
            let p = "adam\(cases)"
            let h = try f.tensor("\(p).hparams")   // [lr, beta1, beta2, eps, weight decay], float64 in the file
            let adam = Adam(parameterCount: 37, hyperparameters: .init(learningRate: h[0], beta1: h[1], beta2: h[2], eps: h[3], weightDecay: h[4]))
            let params = try f.tensor("\(p).param")
            let grads = try f.tensor("\(p).grads"), after = try f.tensor("\(p).after")
            let n = params.count
            for s in 0..<grads.shape[0] {
                adam.update(params: params, grads: Tensor(viewOf: grads, offset: s * n, shape: [n]))
                let ref = Tensor(viewOf: after, offset: s * n, shape: [n])
                XCTAssertLessThanOrEqual(maxAbsDifference(params, ref), Self.adamAbsTol, "\(p) step \(s + 1)")
            }
            cases += 1
        }
        XCTAssertEqual(cases, 2, "adam.safetensors: expected 2 hyperparameter sets")
    }
}
