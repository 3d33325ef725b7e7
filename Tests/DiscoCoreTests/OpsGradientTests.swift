import XCTest
@testable import DiscoCore

/// Activations, batch norm and losses against central finite differences (Float forward, loss in Double).
final class OpsGradientTests: XCTestCase {
    /// |fd - analytic| / |analytic|_inf for smooth ops, h = 1e-2 (or 3e-3), Float forward, Double loss.
    static let fdTol: Double = 5e-3

    // MARK: activations

    func testActivationGradients() {
        var rng = Xoshiro256(seed: 11)
        let h: Float = 3e-3
        for act in Activation.allCases {
            let x = randn([3, 4, 5, 2], &rng, std: 2)
            // keep away from the kinks of relu / leakyReLU at 0
            for i in 0..<x.count where abs(x[i]) < 0.05 { x[i] = x[i] < 0 ? -0.05 - abs(x[i]) : 0.05 + x[i] }
            let r = randn(x.shape, &rng)
            func loss() -> Double { dot(act.forward(x), r) }
            let y = act.forward(x)
            let dx = act.backward(dy: r, y: y)
            let idx = Array(0..<x.count)
            assertGradientMatches(dx, finiteDifference(x, indices: idx, h: h, loss), indices: idx, tol: Self.fdTol, "\(act)")

            // in place through the pointer API (y aliases x, dx aliases dy), as Network uses it
            let xi = x.copy(), di = r.copy()
            act.forward(y: xi.data, x: xi.data, count: xi.count)
            XCTAssertEqual(maxAbsDifference(xi, y), 0, "\(act) forward in place")
            act.backward(dx: di.data, dy: di.data, y: xi.data, count: di.count)
            XCTAssertEqual(maxAbsDifference(di, dx), 0, "\(act) backward in place")
        }
    }

    func testActivationClosedFormsAndExtremes() {
        let x = Tensor(shape: [6], values: [-100, -2, -0.5, 0.5, 2, 100])
        let lr = Activation.leakyReLU.forward(x)
        XCTAssertEqual(lr.array, [-20, -0.4, -0.1, 0.5, 2, 100])
        let s = Activation.sigmoid.forward(x)
        XCTAssertEqual(s[0], 0, accuracy: 1e-30); XCTAssertEqual(s[5], 1)
        XCTAssertEqual(s[4], Float(1 / (1 + exp(-2.0))), accuracy: 1e-7)
        XCTAssertFalse(s.array.contains { $0.isNaN })
        let t = Activation.tanh.forward(x)
        XCTAssertEqual(t[1], Float(tanh(-2.0)), accuracy: 1e-7)
        XCTAssertEqual(Activation.relu.forward(x).array, [0, 0, 0, 0.5, 2, 100])
    }

    // MARK: batch norm

    /// Runs BatchNormKernel's training forward on x [M, C]; returns y (and fills xhat, invstd).
    func bnForward(_ x: Tensor, _ gamma: Tensor, _ beta: Tensor, xhat: Tensor, invstd: Tensor, eps: Float = 1e-5) -> Tensor {
        let M = x.shape[0], C = x.shape[1]
        let y = Tensor(zeros: x.shape)
        _ = BatchNormKernel.forwardTraining(y: y.data, xhat: xhat.data, invstd: invstd.data, x: x.data,
                                            gamma: gamma.data, beta: beta.data, rows: M, channels: C, eps: eps)
        return y
    }

    func checkBatchNorm(nhwc shape: [Int], seed: UInt64, samples: Int) {
        var rng = Xoshiro256(seed: seed)
        let C = shape[3], M = shape[0] * shape[1] * shape[2]
        let x4 = randn(shape, &rng, std: 1.5)
        for i in 0..<x4.count { x4[i] += Float(i % C) * 0.7 }      // channel-dependent means
        let x = x4.reshaped([M, C])                                // the [M, C] view of NHWC
        let gamma = randn([C], &rng), beta = randn([C], &rng)
        let r = randn([M, C], &rng)
        let xhat = Tensor(zeros: [M, C]), invstd = Tensor(zeros: [C])
        func loss() -> Double {
            let sx = Tensor(zeros: [M, C]), si = Tensor(zeros: [C])
            return dot(bnForward(x, gamma, beta, xhat: sx, invstd: si), r)
        }
        _ = bnForward(x, gamma, beta, xhat: xhat, invstd: invstd)
        let dx = Tensor(zeros: [M, C])
        let dgamma = Tensor(filling: 0.25, shape: [C]), dbeta = Tensor(filling: -0.5, shape: [C])  // accumulated into
        BatchNormKernel.backward(dx: dx.data, dgamma: dgamma.data, dbeta: dbeta.data, dy: r.data, xhat: xhat.data,
                                 gamma: gamma.data, invstd: invstd.data, rows: M, channels: C)
        for c in 0..<C { dgamma[c] -= 0.25; dbeta[c] += 0.5 }
        let xi = sampleIndices(x.count, samples, &rng)
        assertGradientMatches(dx, finiteDifference(x, indices: xi, h: 1e-2, loss), indices: xi, tol: Self.fdTol, "BN dx \(shape)")
        let ci = Array(0..<C)
        assertGradientMatches(dgamma, finiteDifference(gamma, indices: ci, h: 1e-2, loss), indices: ci, tol: Self.fdTol, "BN dgamma \(shape)")
        assertGradientMatches(dbeta, finiteDifference(beta, indices: ci, h: 1e-2, loss), indices: ci, tol: Self.fdTol, "BN dbeta \(shape)")

        // in place (dx aliases dy), as Network calls it
        let d = r.copy()
        BatchNormKernel.backward(dx: d.data, dgamma: nil, dbeta: nil, dy: d.data, xhat: xhat.data,
                                 gamma: gamma.data, invstd: invstd.data, rows: M, channels: C)
        XCTAssertLessThanOrEqual(relativeError(d, dx), 1e-6, "BN backward in place \(shape)")
    }

    func testBatchNormGradientsSmall() { checkBatchNorm(nhwc: [3, 2, 2, 4], seed: 21, samples: 48) }
    /// M = 2*15*21 = 630 rows: several threads' partial sums and 64-row blocks with a ragged end.
    func testBatchNormGradientsManyRows() { checkBatchNorm(nhwc: [2, 15, 21, 3], seed: 22, samples: 60) }

    /// Forward closed form: per channel, mean 0 and biased variance var/(var+eps) after normalisation.
    func testBatchNormForwardNormalises() {
        var rng = Xoshiro256(seed: 23)
        let M = 700, C = 5
        let x = randn([M, C], &rng, std: 3)
        let gamma = Tensor(filling: 1, shape: [C]), beta = Tensor(zeros: [C])
        let xhat = Tensor(zeros: [M, C]), invstd = Tensor(zeros: [C])
        let y = bnForward(x, gamma, beta, xhat: xhat, invstd: invstd)
        for c in 0..<C {
            var s = 0.0, s2 = 0.0, xs = 0.0, xs2 = 0.0
            for m in 0..<M { let v = Double(y[m * C + c]); s += v; s2 += v * v; xs += Double(x[m * C + c]) }
            let mean = xs / Double(M)
            for m in 0..<M { let d = Double(x[m * C + c]) - mean; xs2 += d * d }
            let biased = xs2 / Double(M)
            XCTAssertEqual(s / Double(M), 0, accuracy: 1e-5)
            XCTAssertEqual(s2 / Double(M), biased / (biased + 1e-5), accuracy: 1e-4)
            XCTAssertEqual(Double(invstd[c]), 1 / (biased + 1e-5).squareRoot(), accuracy: 1e-5 / biased.squareRoot())
        }
    }

    // MARK: losses

    func testBCEWithLogitsGradient() {
        var rng = Xoshiro256(seed: 31)
        let logits = randn([4, 3, 5], &rng, std: 3)
        let targets = Tensor.uniform([4, 3, 5], low: 0, high: 1, rng: &rng)
        let (_, grad) = bceWithLogitsLoss(logits: logits, targets: targets)
        let idx = Array(0..<logits.count)
        let fd = finiteDifference(logits, indices: idx, h: 1e-2) { Double(bceWithLogitsLoss(logits: logits, targets: targets).loss) }
        assertGradientMatches(grad, fd, indices: idx, tol: Self.fdTol, "bceWithLogits")
        // the scalar-target overload
        for t: Float in [0, 1] {
            let (_, g) = bceWithLogitsLoss(logits: logits, target: t)
            let fdt = finiteDifference(logits, indices: idx, h: 1e-2) { Double(bceWithLogitsLoss(logits: logits, target: t).loss) }
            assertGradientMatches(g, fdt, indices: idx, tol: Self.fdTol, "bceWithLogits target \(t)")
        }
    }

    /// Large logits: l(50, 0) = 50 + log1p(e^-50) = 50, l(50, 1) = log1p(e^-50) ~ 2e-22,
    /// l(-50, 1) = 50, l(-50, 0) ~ 0; gradient (sigmoid(x) - t) / n with sigmoid(+-50) = 1, ~0.
    func testBCEWithLogitsLargeLogitsClosedForm() {
        let logits = Tensor(shape: [4], values: [50, 50, -50, -50])
        let targets = Tensor(shape: [4], values: [0, 1, 1, 0])
        let (loss, grad) = bceWithLogitsLoss(logits: logits, targets: targets)
        XCTAssertEqual(loss, 100 / 4, accuracy: 1e-5)
        XCTAssertEqual(grad.array[0], 0.25, accuracy: 1e-7)
        XCTAssertEqual(grad.array[1], 0, accuracy: 1e-7)
        XCTAssertEqual(grad.array[2], -0.25, accuracy: 1e-7)
        XCTAssertEqual(grad.array[3], 0, accuracy: 1e-7)
        XCTAssertFalse(loss.isNaN || loss.isInfinite)
        for (l, t, want) in [(Float(50), Float(0), 50.0), (50, 1, 1.9287498479639178e-22), (-50, 1, 50), (-50, 0, 1.9287498479639178e-22)] {
            let one = bceWithLogitsLoss(logits: Tensor(shape: [1], values: [l]), targets: Tensor(shape: [1], values: [t])).loss
            XCTAssertEqual(Double(one), want, accuracy: want * 1e-6 + 1e-30, "bce(\(l), \(t))")
        }
        // finite differences at +-50 (the loss is linear there)
        let idx = [0, 1, 2, 3]
        let fd = finiteDifference(logits, indices: idx, h: 1e-2) { Double(bceWithLogitsLoss(logits: logits, targets: targets).loss) }
        for k in idx { XCTAssertEqual(fd[k], Double(grad[k]), accuracy: 1e-4, "fd at \(logits[k]), t \(targets[k])") }
    }

    /// At logit 0 the loss is log 2 whatever the target; gradient (1/2 - t)/n.
    func testBCEAtZeroIsLog2() {
        let logits = Tensor(zeros: [2, 3])
        let targets = Tensor(shape: [2, 3], values: [0, 1, 0.5, 0.25, 1, 0])
        let (loss, grad) = bceWithLogitsLoss(logits: logits, targets: targets)
        XCTAssertEqual(Double(loss), log(2.0), accuracy: 1e-7)
        for i in 0..<6 { XCTAssertEqual(grad[i], (0.5 - targets[i]) / 6, accuracy: 1e-8) }
    }

    func testMSEAndLSGANGradients() {
        var rng = Xoshiro256(seed: 32)
        let p = randn([3, 7], &rng), t = randn([3, 7], &rng)
        let (loss, grad) = mseLoss(predictions: p, targets: t)
        var ref = 0.0
        for i in 0..<p.count { ref += Double(p[i] - t[i]) * Double(p[i] - t[i]) }
        XCTAssertEqual(Double(loss), ref / 21, accuracy: 1e-6 * ref)
        let idx = Array(0..<p.count)
        assertGradientMatches(grad, finiteDifference(p, indices: idx, h: 1e-2) { Double(mseLoss(predictions: p, targets: t).loss) },
                              indices: idx, tol: Self.fdTol, "mse")
        for target: Float in [0, 1] {
            let (l, g) = lsganLoss(outputs: p, target: target)
            var r = 0.0
            for i in 0..<p.count { r += Double(p[i] - target) * Double(p[i] - target) }
            XCTAssertEqual(Double(l), r / 21, accuracy: 1e-6 * r)
            assertGradientMatches(g, finiteDifference(p, indices: idx, h: 1e-2) { Double(lsganLoss(outputs: p, target: target).loss) },
                                  indices: idx, tol: Self.fdTol, "lsgan target \(target)")
        }
    }

    func testL1Gradient() {
        var rng = Xoshiro256(seed: 33)
        let p = randn([5, 4], &rng), t = randn([5, 4], &rng)
        for i in 0..<p.count where abs(p[i] - t[i]) < 0.05 { p[i] = t[i] + 0.1 }  // no ties within the step
        let (loss, grad) = l1Loss(predictions: p, targets: t)
        var ref = 0.0
        for i in 0..<p.count { ref += abs(Double(p[i] - t[i])) }
        XCTAssertEqual(Double(loss), ref / 20, accuracy: 1e-6 * ref)
        let idx = Array(0..<p.count)
        assertGradientMatches(grad, finiteDifference(p, indices: idx, h: 1e-2) { Double(l1Loss(predictions: p, targets: t).loss) },
                              indices: idx, tol: Self.fdTol, "l1")
        // ties: gradient 0 (PyTorch's sign(0) = 0)
        XCTAssertEqual(l1Loss(predictions: t, targets: t).grad.array, [Float](repeating: 0, count: 20))
    }

    func testFeatureMatchingGradients() {
        var rng = Xoshiro256(seed: 34)
        let shapes = [[3, 2, 2, 4], [3, 5], [3, 1, 1, 2]]
        let real = shapes.map { randn($0, &rng) }, fake = shapes.map { randn($0, &rng) }
        let (loss, dReal, dFake) = featureMatchingLoss(real: real, fake: fake)
        // closed form in Double
        var ref = 0.0
        for (r, f) in zip(real, fake) {
            let n = r.shape[0], per = r.count / n
            var s = 0.0
            for j in 0..<per {
                var d = 0.0
                for b in 0..<n { d += Double(f[b * per + j]) - Double(r[b * per + j]) }
                d /= Double(n); s += d * d
            }
            ref += s / Double(per)
        }
        XCTAssertEqual(Double(loss), ref, accuracy: 1e-5 * ref)
        func l() -> Double { Double(featureMatchingLoss(real: real, fake: fake).loss) }
        for k in 0..<shapes.count {
            let idx = Array(0..<real[k].count)
            assertGradientMatches(dFake[k], finiteDifference(fake[k], indices: idx, h: 1e-2, l), indices: idx, tol: Self.fdTol, "feature matching dFake[\(k)]")
            assertGradientMatches(dReal[k], finiteDifference(real[k], indices: idx, h: 1e-2, l), indices: idx, tol: Self.fdTol, "feature matching dReal[\(k)]")
        }
    }
}
