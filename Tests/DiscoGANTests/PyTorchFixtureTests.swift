import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore

// Whole-network and whole-step comparisons against values PyTorch computed
// (Tests/Fixtures/make_fixtures.py; key lists and the hash init in Tests/Fixtures/README.md).

let fixturesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

func fixture(_ name: String) throws -> Safetensors.File {
    let path = fixturesDir + "/" + name
    guard FileManager.default.fileExists(atPath: path) else {
        XCTFail("missing fixture \(path): run Tests/Fixtures/make_fixtures.py"); throw Checkpoint.Error("missing \(path)")
    }
    return try Safetensors.read(path: path)
}

/// u of the fixtures' hash (Tests/Fixtures/README.md): element i of tensor j with a seed.
func hashUniform(_ i: Int, _ j: Int, _ seed: Int) -> Double {
    let h = (UInt64(i) &* 2654435761 &+ UInt64(j + 1) &* 40503 &+ UInt64(seed) &* 12345) & 0xFFFF_FFFF
    return Double(h) / 4294967296.0
}

/// The fixtures' deterministic "hash init", in PyTorch's layout and flat order (see README.md).
func hashInit(_ net: Network, seed: Int) throws {
    var dict: [String: Tensor] = [:]
    let state = net.stateDict()
    var j = 0
    for (name, t) in state {
        if name.hasSuffix("running_mean") { dict[name] = Tensor(zeros: t.shape); continue }
        if name.hasSuffix("running_var") { dict[name] = Tensor(filling: 1, shape: t.shape); continue }
        let out = Tensor(uninitialized: t.shape)
        let block = net.blocks.first { name.hasPrefix($0.name + ".") }!
        for i in 0..<t.count {
            let u = hashUniform(i, j, seed)
            let v: Double
            if name.hasSuffix("bn.weight") { v = 1 + 0.1 * (2 * u - 1) }
            else if name.hasSuffix("bn.bias") { v = 0.1 * (2 * u - 1) }
            else { v = (1 / Double(block.torchFanIn).squareRoot()) * (2 * u - 1) }
            out[i] = Float(v)
        }
        dict[name] = out
        j += 1
    }
    try net.load(stateDict: dict)
}

/// 2u - 1 of the hash, in flat row-major order of `shape` (a block's input or upstream gradient, NCHW).
func hashTensor(_ shape: [Int], j: Int, seed: Int) -> Tensor {
    let t = Tensor(uninitialized: shape)
    for i in 0..<t.count { t[i] = Float(2 * hashUniform(i, j, seed) - 1) }
    return t
}

/// The widest tolerance a fixture may hand a test, relative to the largest value compared: the
/// fixture rejects inputs that would need more (make_fixtures.py, LIMIT), and this keeps a
/// regenerated fixture from quietly making a test unable to fail.
let toleranceCeiling: Float = 1e-3

/// `got` (PyTorch layout) against the fixture's `key`, stored whole or sampled (`.idx`, `.sample`,
/// `.norm`), within the tolerance the fixture derived for it (`tol.KEY`, `tol.KEY.norm`; see
/// `certify` in make_fixtures.py: 20x PyTorch's own float32 rounding, plus what any ReLU input
/// within the kink band could change, at least 1e-6 of the largest value). The steps' gradients
/// carry one tolerance per sampled element (`tol.KEY.sample`), of which at least 90% must be
/// within the ceiling.
func assertMatchesFixture(_ got: Tensor, _ f: Safetensors.File, _ key: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let scale = got.array.map(abs).max() ?? 0
    let ceiling = toleranceCeiling * max(scale, 1e-30)
    if let whole = f.entries[key] {
        guard let tolEntry = f.entries["tol." + key] else { XCTFail("fixture has no tol.\(key)", file: file, line: line); return }
        let tol = tolEntry.floats[0]
        XCTAssertLessThanOrEqual(tol, ceiling, "tol.\(key) is too wide to catch errors", file: file, line: line)
        XCTAssertEqual(whole.tensor.count, got.count, "\(key): element count", file: file, line: line)
        guard whole.tensor.count == got.count else { return }
        let d = maxAbsDifference(got.reshaped(whole.shape), whole.tensor)
        XCTAssertLessThanOrEqual(d, tol, "\(key): max |diff| \(d), tolerance \(tol), max |value| \(scale)", file: file, line: line)
    } else if f.entries[key + ".idx"] != nil {
        let idx = try f.ints(key + ".idx"), want = try f.entry(key + ".sample").floats
        let tols: [Float]
        if let perElement = f.entries["tol." + key + ".sample"] {
            tols = perElement.floats
            let tight = tols.filter { $0 <= ceiling }.count
            XCTAssertGreaterThanOrEqual(10 * tight, 9 * tols.count, "tol.\(key).sample: only \(tight) of \(tols.count) tolerances within the ceiling", file: file, line: line)
        } else if let tolEntry = f.entries["tol." + key] {
            XCTAssertLessThanOrEqual(tolEntry.floats[0], ceiling, "tol.\(key) is too wide to catch errors", file: file, line: line)
            tols = [Float](repeating: tolEntry.floats[0], count: idx.count)
        } else { XCTFail("fixture has no tol.\(key)", file: file, line: line); return }
        XCTAssertEqual(tols.count, idx.count, "\(key): tolerances per sample", file: file, line: line)
        var failures: [String] = []
        for (k, i) in idx.enumerated() where k < tols.count {
            guard i < got.count else { XCTFail("\(key): index \(i) out of range \(got.count)", file: file, line: line); return }
            let d = abs(got[i] - want[k])
            if !(d <= tols[k]) { failures.append("[\(i)] \(got[i]) vs \(want[k]) (tolerance \(tols[k]))") }
        }
        XCTAssertTrue(failures.isEmpty, "\(key): \(failures.count) of \(idx.count) samples differ, e.g. \(failures.prefix(3).joined(separator: ", ")); max |value| \(scale)", file: file, line: line)
        var norm: Double = 0
        for i in 0..<got.count { norm += Double(got[i]) * Double(got[i]) }
        let wantNorm = try f.entry(key + ".norm").floats[0]
        let tolNorm = try f.entry("tol." + key + ".norm").floats[0]
        XCTAssertEqual(Float(norm.squareRoot()), wantNorm, accuracy: tolNorm, "\(key): L2 norm", file: file, line: line)
    } else {
        XCTFail("fixture has no \(key)", file: file, line: line)
    }
}

/// A network's gradients in PyTorch's layout, by parameter name.
func torchLayoutGrads(_ net: Network) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for e in net.parameters.entries {
        let g = net.parameters.grad(e.name)
        out[e.name] = e.shape.count == 4 ? g.nhwcToNCHW() : g.copy()
    }
    return out
}

final class PyTorchFixtureTests: XCTestCase {
    /// Each block of `net` alone (train mode) on the fixture's hash input and upstream gradient
    /// (zeroed where the block's pre-activation is within the kink band): output, input gradient,
    /// every parameter gradient, running statistics. See `make_blocks` in make_fixtures.py.
    func checkBlocksAlone(_ net: Network, _ f: Safetensors.File, seed: Int, input: [Int]) throws {
        var shape = input  // NCHW
        for (b, spec) in net.blocks.enumerated() {
            let one = Network(blocks: [spec])
            for e in one.parameters.entries { one.parameters.value(e.name).copy(from: net.parameters.value(e.name)) }
            let p = "block.\(spec.name)."
            let x = hashTensor(shape, j: 1000 + b, seed: seed).nchwToNHWC()
            let r = one.forward(x)
            let y = r.output.nhwcToNCHW()
            try assertMatchesFixture(y, f, p + "y")
            let g = hashTensor(y.shape, j: 2000 + b, seed: seed)
            for i in try f.ints(p + "zeroed") where i >= 0 { g[i] = 0 }
            one.zeroGradients()
            let dx = one.backward(r.trace, dOutput: g.nchwToNHWC())!
            try assertMatchesFixture(dx.nhwcToNCHW(), f, p + "dx")
            for (name, grad) in torchLayoutGrads(one) {
                try assertMatchesFixture(grad, f, p + "grad." + name.dropFirst(spec.name.count + 1))
            }
            for (name, t) in one.stateDict() where name.contains("running") {
                try assertMatchesFixture(t, f, p + name.dropFirst(spec.name.count + 1))
            }
            shape = y.shape
        }
    }

    /// The 64x64 generator, train mode: the whole forward (output, running statistics), then each block alone.
    func testGenerator64() throws {
        let f = try fixture("generator64.safetensors")
        let g = DiscoGANModels.generator(size: 64, channels: 3)
        try hashInit(g, seed: 1)
        let r = g.forward(try f.tensor("x").nchwToNHWC(), record: false)
        try assertMatchesFixture(r.output.nhwcToNCHW(), f, "y")
        for (name, t) in g.stateDict() where name.contains("running") { try assertMatchesFixture(t, f, name) }
        try hashInit(g, seed: 1)
        try checkBlocksAlone(g, f, seed: 1, input: [2, 3, 64, 64])
    }

    /// The 64x64 discriminator: the whole forward (logits, features f2-f4, running statistics), then each block alone.
    func testDiscriminator64() throws {
        let f = try fixture("discriminator64.safetensors")
        let d = DiscoGANModels.discriminator(size: 64, channels: 3)
        try hashInit(d, seed: 2)
        let r = d.forward(try f.tensor("x").nchwToNHWC(), record: false)
        try assertMatchesFixture(r.output.reshaped([r.output.count]), f, "logits")
        XCTAssertEqual(r.features.count, 3)
        for (i, k) in ["f2", "f3", "f4"].enumerated() where i < r.features.count {
            try assertMatchesFixture(r.features[i].nhwcToNCHW(), f, k)
        }
        for (name, t) in d.stateDict() where name.contains("running") { try assertMatchesFixture(t, f, name) }
        try hashInit(d, seed: 2)
        try checkBlocksAlone(d, f, seed: 2, input: [2, 3, 64, 64])
    }

    /// The 32x32 generator applied to its own output in one step (y1 = G(x), y2 = G(y1)): outputs,
    /// the loss mse(y2, x) + 0.3 mean(y1), running statistics after both uses; then each block alone.
    /// (That the gradients of both uses add up is checked against finite differences in
    /// NetworkGradientTests.testNetworkAppliedTwiceAccumulatesBothUses.)
    func testGeneratorAppliedTwice() throws {
        let f = try fixture("twice32.safetensors")
        let g = DiscoGANModels.generator(size: 32, channels: 1)
        try hashInit(g, seed: 3)
        let x = try f.tensor("x").nchwToNHWC()
        let r1 = g.forward(x, record: false), r2 = g.forward(r1.output, record: false)
        try assertMatchesFixture(r1.output.nhwcToNCHW(), f, "y1")
        try assertMatchesFixture(r2.output.nhwcToNCHW(), f, "y2")
        let mse = mseLoss(predictions: r2.output, targets: x)
        let meanTerm = Float(r1.output.array.reduce(0.0) { $0 + Double($1) } / Double(r1.output.count))
        try assertMatchesFixture(Tensor(filling: mse.loss + 0.3 * meanTerm, shape: [1]), f, "loss")
        for (name, t) in g.stateDict() where name.contains("running") { try assertMatchesFixture(t, f, name) }
        try hashInit(g, seed: 3)
        try checkBlocksAlone(g, f, seed: 3, input: [3, 1, 32, 32])
    }

    /// One D step then one G step of the reference schedule at 32x32, at the curriculum's
    /// reconstruction rate (0.01) and at the default one (0.5): against PyTorch, every loss term,
    /// all running statistics and the updated weights; the gradients each step used against finite
    /// differences of the step's loss as the reference defines it (`referenceDLoss`,
    /// `referenceGLoss`). Why not against PyTorch's gradients: see make_steps32 in make_fixtures.py
    /// (whole-step gradients move by up to 30% under legitimate float32 rounding at ReLU kinks).
    func testDiscriminatorThenGeneratorStep() throws {
        try checkSteps("steps32.safetensors", curriculum: 10_000, checkDGradients: true)
        try checkSteps("steps32_rate05.safetensors", curriculum: 0, checkDGradients: false)
    }

    /// `checkDGradients`: the D step does not depend on the rate, so one fixture's is enough.
    func checkSteps(_ name: String, curriculum: Int, checkDGradients: Bool) throws {
        let f = try fixture(name)
        var config = TrainConfig()
        config.size = 32; config.channels = 1; config.batch = 4; config.curriculumIterations = curriculum
        let hp = try f.entry("hparams").floats  // [lr, beta1, beta2, eps, weight decay, rate]
        XCTAssertEqual(config.adam.learningRate, hp[0])
        XCTAssertEqual(config.rate(at: 1), hp[5], "\(name): reconstruction rate")
        let m = DiscoGAN(config: config)
        let seeds = ["G_AB": 11, "G_BA": 12, "D_A": 13, "D_B": 14]
        for (n, net, _) in m.networks { try hashInit(net, seed: seeds[n]!) }
        let a = try f.tensor("A").nchwToNHWC(), b = try f.tensor("B").nchwToNHWC()
        func scalar(_ v: Float?) -> Tensor { Tensor(filling: v ?? .nan, shape: [1]) }

        let d = m.step(iteration: 0, xA: a, xB: b)
        XCTAssertEqual(d.kind, "D")
        try assertMatchesFixture(scalar(d.losses["dis_total"]), f, "d0.loss")
        try assertMatchesFixture(scalar(d.losses["dis_A"]), f, "d0.loss_A")
        try assertMatchesFixture(scalar(d.losses["dis_B"]), f, "d0.loss_B")
        var dGrads: [String: Tensor] = [:], dAfter: [String: Tensor] = [:]
        for (n, net, _) in m.networks where n.hasPrefix("D_") {
            dGrads[n] = net.parameters.grads.copy(); dAfter[n] = net.parameters.values.copy()
            try compareUpdatedWeights(net, f, prefix: "d0.\(n).")
        }
        for (n, net, _) in m.networks { try compareRunningStats(net, f, prefix: "d0.\(n).") }

        let g = m.step(iteration: 1, xA: a, xB: b)
        XCTAssertEqual(g.kind, "G")
        try assertMatchesFixture(scalar(g.losses["gen_total"]), f, "g1.loss")
        for term in ["gan_A", "gan_B", "fm_A", "fm_B", "recon_A", "recon_B"] {
            try assertMatchesFixture(scalar(g.losses[term]), f, "g1." + term)
        }
        var gGrads: [String: Tensor] = [:]
        for (n, net, _) in m.networks where n.hasPrefix("G_") {
            gGrads[n] = net.parameters.grads.copy()
            try compareUpdatedWeights(net, f, prefix: "g1.\(n).")
        }
        // D's running statistics after the G step are not compared: they come from D's weights after
        // its Adam step, some of whose elements step either way under float32 rounding (see
        // is_compared_step_value in make_fixtures.py).
        for (n, net, _) in m.networks where n.hasPrefix("G_") { try compareRunningStats(net, f, prefix: "g1.\(n).") }

        // The gradients, against finite differences, on a second model at the same points: the
        // D step's at the initial weights, the G step's with D as the D step left it.
        let fd = DiscoGAN(config: config)
        for (n, net, _) in fd.networks { try hashInit(net, seed: seeds[n]!) }
        var rng = Xoshiro256(seed: 7)
        for (n, net, _) in fd.networks where n.hasPrefix("D_") && checkDGradients {
            assertFiniteDifferences(net, analytic: dGrads[n]!, "\(name) D step \(n)", rng: &rng) { Self.referenceDLoss(fd, a, b) }
        }
        for (n, net, _) in fd.networks where n.hasPrefix("D_") { net.parameters.values.copy(from: dAfter[n]!) }
        let rate = Double(config.rate(at: 1))
        for (n, net, _) in fd.networks where n.hasPrefix("G_") {
            assertFiniteDifferences(net, analytic: gGrads[n]!, "\(name) G step \(n)", rng: &rng) { Self.referenceGLoss(fd, a, b, rate: rate) }
        }
    }

    /// The reference's D loss (discogan.md): per domain 0.5 (bce(D(real), 1) + bce(D(G(other)), 0)),
    /// summed over A and B; in Double, at the networks' current weights, train mode.
    static func referenceDLoss(_ m: DiscoGAN, _ a: Tensor, _ b: Tensor) -> Double {
        let ab = m.G_AB.forward(a, record: false).output, ba = m.G_BA.forward(b, record: false).output
        func bce(_ logits: Tensor, _ t: Double) -> Double {
            var s = 0.0
            for i in 0..<logits.count { let l = Double(logits[i]); s += max(l, 0) - l * t + log1p(exp(-abs(l))) }
            return s / Double(logits.count)
        }
        func out(_ d: Network, _ x: Tensor) -> Tensor { d.forward(x, record: false).output }
        return 0.5 * (bce(out(m.D_A, a), 1) + bce(out(m.D_A, ba), 0)) + 0.5 * (bce(out(m.D_B, b), 1) + bce(out(m.D_B, ab), 0))
    }

    /// The reference's G loss: per direction (0.1 bce(D(fake), 1) + 0.9 fm(D's features of real,
    /// of fake)) (1 - rate) + rate mse(reconstruction, real); in Double.
    static func referenceGLoss(_ m: DiscoGAN, _ a: Tensor, _ b: Tensor, rate: Double) -> Double {
        let ab = m.G_AB.forward(a, record: false).output, ba = m.G_BA.forward(b, record: false).output
        let aba = m.G_BA.forward(ab, record: false).output, bab = m.G_AB.forward(ba, record: false).output
        func bce1(_ l: Tensor) -> Double {
            var s = 0.0
            for i in 0..<l.count { let v = Double(l[i]); s += max(v, 0) - v + log1p(exp(-abs(v))) }
            return s / Double(l.count)
        }
        func mse(_ p: Tensor, _ t: Tensor) -> Double {
            var s = 0.0
            for i in 0..<p.count { let e = Double(p[i]) - Double(t[i]); s += e * e }
            return s / Double(p.count)
        }
        /// sum over features of mse(mean over the batch of fake, of real); NHWC [N, H, W, C].
        func fm(_ real: [Tensor], _ fake: [Tensor]) -> Double {
            var total = 0.0
            for (r, f) in zip(real, fake) {
                let n = r.shape[0], per = r.count / n
                var s = 0.0
                for j in 0..<per {
                    var mr = 0.0, mf = 0.0
                    for k in 0..<n { mr += Double(r[k * per + j]); mf += Double(f[k * per + j]) }
                    let e = (mf - mr) / Double(n)
                    s += e * e
                }
                total += s / Double(per)
            }
            return total
        }
        let realA = m.D_A.forward(a, record: false).features, realB = m.D_B.forward(b, record: false).features
        let fakeA = m.D_A.forward(ba, record: false), fakeB = m.D_B.forward(ab, record: false)
        let sideB = (0.1 * bce1(fakeB.output) + 0.9 * fm(realB, fakeB.features)) * (1 - rate) + rate * mse(aba, a)
        let sideA = (0.1 * bce1(fakeA.output) + 0.9 * fm(realA, fakeA.features)) * (1 - rate) + rate * mse(bab, b)
        return sideA + sideB
    }

    /// Directional central differences of `loss` for every parameter tensor of `net`, in two
    /// directions v: along the analytic gradient g itself (v = g / rms g; FD must give g.v within
    /// 5% of it, so a gradient wrong by a sign, a scale or an orthogonal part above ~23% of |g|
    /// fails) and a Rademacher one (v = +-1; within 8% of |g|, the standard deviation of g.v under
    /// such v). Steps h = 1e-2, 1e-3, 1e-4 times the tensor's rms (at least 1e-2), the
    /// best-agreeing kept. Per-element differences are too rough here: the step's loss crosses
    /// ReLU kinks so densely that single-weight differences scatter by 30% (measured), while
    /// the worst directional one was 2.3% along g and 4% along +-1.
    func assertFiniteDifferences(_ net: Network, analytic: Tensor, _ what: String, rng: inout Xoshiro256,
                                 loss: () -> Double) {
        for e in net.parameters.entries {
            let values = net.parameters.value(e.name), w0 = values.copy()
            let grad = Tensor(viewOf: analytic, offset: e.offset, shape: e.shape)
            var norm = 0.0, rms = 0.0
            for i in 0..<grad.count { norm += Double(grad[i]) * Double(grad[i]); rms += Double(w0[i]) * Double(w0[i]) }
            norm = norm.squareRoot(); rms = (rms / Double(w0.count)).squareRoot()
            XCTAssertGreaterThan(norm, 0, "\(what) \(e.name): zero gradient")
            guard norm > 0 else { continue }
            let grms = Float(norm / Double(grad.count).squareRoot())
            let along = (0..<grad.count).map { grad[$0] / grms }
            let signs = (0..<grad.count).map { _ in rng.next() & 1 == 0 ? Float(1) : -1 }
            for (v, name) in [(along, "along g"), (signs, "along +-1")] {
                var gv = 0.0
                for i in 0..<v.count { gv += Double(v[i]) * Double(grad[i]) }
                let tol = name == "along g" ? 0.05 * abs(gv) : 0.08 * norm
                var best = Double.infinity, bestFD = 0.0
                for hr in [1e-2, 1e-3, 1e-4] {
                    let h = Float(hr * max(rms, 1e-2))
                    for i in 0..<v.count { values[i] = w0[i] + h * v[i] }
                    let up = loss()
                    for i in 0..<v.count { values[i] = w0[i] - h * v[i] }
                    let down = loss()
                    let fdv = (up - down) / (2 * Double(h))
                    if abs(fdv - gv) < best { best = abs(fdv - gv); bestFD = fdv }
                }
                values.copy(from: w0)
                XCTAssertLessThanOrEqual(best, tol, "\(what) \(e.name) \(name): analytic \(gv), finite difference \(bestFD), |g| \(norm)")
            }
        }
    }

    /// Every running statistic of `net`, stored under `prefix`.
    func compareRunningStats(_ net: Network, _ f: Safetensors.File, prefix: String) throws {
        for (name, t) in net.stateDict() where name.contains("running") { try assertMatchesFixture(t, f, prefix + name) }
    }

    /// Every parameter of `net` after one Adam step, at the fixture's sampled elements. A step moves
    /// a weight by about lr = 2e-4 (times the sign of g + wd p); 2e-6 is 1% of that. Elements whose
    /// |g + wd p| is below 1e-3 of their tensor's largest could step either way under float32
    /// rounding of g, and so could elements whose g the summed ReLU-kink flips could move by half
    /// of |g|; the fixture lists both under `.skip` (make_fixtures.py, ADAM_CLEAR). Measured: up to
    /// 65 of 256 sampled elements of a generator's first layer; at least half must be compared.
    func compareUpdatedWeights(_ net: Network, _ f: Safetensors.File, prefix: String) throws {
        for (name, t) in net.stateDict() where !name.contains("running") {
            let key = prefix + name
            guard f.entries[key + ".idx"] != nil else { XCTFail("fixture has no \(key)"); continue }
            let idx = try f.ints(key + ".idx"), want = try f.entry(key + ".sample").floats
            let skip = Set(try f.ints(key + ".skip"))
            XCTAssertLessThanOrEqual(skip.subtracting([-1]).count, idx.count / 2, "\(key): too many ambiguous steps")
            var worst: Float = 0, compared = 0
            for (k, i) in idx.enumerated() where !skip.contains(k) {
                worst = max(worst, abs(t[i] - want[k])); compared += 1
            }
            XCTAssertGreaterThan(compared, 0, key)
            XCTAssertLessThan(worst, 2e-6, key)
        }
    }
}
