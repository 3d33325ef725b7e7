import XCTest
import Foundation
@testable import DiscoCore

/// Closed forms: Adam's first step, batch norm's running statistics, safetensors round trips and errors.
final class ClosedFormTests: XCTestCase {
    // MARK: Adam

    /// First step: m = (1-b1) g, v = (1-b2) g^2, so p -= lr/(1-b1) * (1-b1) g / (|g| + eps) ~ lr * sign(g).
    /// Tolerance: 1e-3 * lr per parameter (eps/|g| <= 1e-6 and Float rounding of p ~ 0.1).
    func testAdamFirstStepIsLearningRateTimesSign() {
        var rng = Xoshiro256(seed: 51)
        for wd: Float in [0, 1e-2] {
            let n = 1000, lr: Float = 1e-3
            let p = randn([n], &rng, std: 0.1)
            let g = Tensor(uninitialized: [n])
            for i in 0..<n { g[i] = (rng.nextUniform() < 0.5 ? -1 : 1) * (0.01 + rng.nextUniform()) }
            let p0 = p.copy()
            let adam = Adam(parameterCount: n, hyperparameters: .init(learningRate: lr, beta1: 0.5, beta2: 0.999, eps: 1e-8, weightDecay: wd))
            adam.update(params: p, grads: g)
            XCTAssertEqual(adam.step, 1)
            for i in 0..<n {
                let geff = g[i] + wd * p0[i]
                XCTAssertEqual(p0[i] - p[i], lr * (geff > 0 ? 1 : -1), accuracy: 1e-3 * lr, "param \(i), wd \(wd)")
            }
        }
    }

    /// Six steps against PyTorch's formula evaluated in Double (L2 weight decay, bias correction);
    /// tolerance 1e-6 absolute on parameters ~N(0, 1).
    func testAdamMatchesDoubleReferenceOverSteps() {
        var rng = Xoshiro256(seed: 52)
        let n = 257, hp = Adam.Hyperparameters(learningRate: 2e-3, beta1: 0.5, beta2: 0.999, eps: 1e-8, weightDecay: 1e-3)
        let p = randn([n], &rng)
        var pd = p.array.map(Double.init), md = [Double](repeating: 0, count: n), vd = md
        let adam = Adam(parameterCount: n, hyperparameters: hp)
        for step in 1...6 {
            let g = randn([n], &rng)
            for i in 0..<n {
                let gi = Double(g[i]) + Double(hp.weightDecay) * pd[i]
                md[i] = Double(hp.beta1) * md[i] + (1 - Double(hp.beta1)) * gi
                vd[i] = Double(hp.beta2) * vd[i] + (1 - Double(hp.beta2)) * gi * gi
                let bc1 = 1 - pow(Double(hp.beta1), Double(step)), bc2 = 1 - pow(Double(hp.beta2), Double(step))
                pd[i] -= Double(hp.learningRate) / bc1 * md[i] / (vd[i].squareRoot() / bc2.squareRoot() + Double(hp.eps))
            }
            adam.update(params: p, grads: g)
        }
        for i in 0..<n {
            // Float vs Double arithmetic only: a few ulps of p (|p| < ~4)
            XCTAssertEqual(Double(p[i]), pd[i], accuracy: 1e-6, "param \(i)")
        }
    }

    // MARK: batch norm running statistics

    /// x = [1, 2, 3, 4] (one channel): mean 2.5, biased variance 1.25, unbiased 5/3.
    /// running_mean = 0.9*0 + 0.1*2.5, running_var = 0.9*1 + 0.1*5/3 (PyTorch, momentum 0.1).
    func testRunningStatisticsUseUnbiasedVariance() {
        let x = Tensor(shape: [4, 1], values: [1, 2, 3, 4])
        let y = Tensor(zeros: [4, 1]), xhat = Tensor(zeros: [4, 1]), invstd = Tensor(zeros: [1])
        let one = Tensor(filling: 1, shape: [1]), zero = Tensor(zeros: [1])
        let stats = BatchNormKernel.forwardTraining(y: y.data, xhat: xhat.data, invstd: invstd.data, x: x.data,
                                                    gamma: one.data, beta: zero.data, rows: 4, channels: 1, eps: 1e-5)
        XCTAssertEqual(stats.mean, [2.5]); XCTAssertEqual(stats.variance, [1.25])
        let rm = Tensor(zeros: [1]), rv = Tensor(filling: 1, shape: [1])
        BatchNormKernel.updateRunning(runningMean: rm.data, runningVar: rv.data, mean: stats.mean, variance: stats.variance,
                                      rows: 4, momentum: 0.1)
        XCTAssertEqual(rm[0], 0.25, accuracy: 1e-7)
        XCTAssertEqual(rv[0], 0.9 + 0.1 * 5.0 / 3.0, accuracy: 1e-6)
        XCTAssertEqual(y[0], Float(-1.5 / (1.25 + 1e-5).squareRoot()), accuracy: 1e-6)

        // the same through a Network: 1x1 identity conv + BN; rows = N*H*W = 4
        let net = Network(blocks: [BlockSpec("b", .conv, 1, 1, kernel: 1, stride: 1, padding: 0, batchNorm: true, activation: .identity)])
        net.parameters.value("b.weight").fill(1)
        _ = net.forward(x.reshaped([1, 2, 2, 1]), mode: .train, record: false)
        XCTAssertEqual(net.buffers.value("b.bn.running_mean")[0], 0.25, accuracy: 1e-7)
        XCTAssertEqual(net.buffers.value("b.bn.running_var")[0], 0.9 + 0.1 * 5.0 / 3.0, accuracy: 1e-6)
        // eval mode uses the running statistics: y = (x - 0.25) / sqrt(rv + eps)
        let rvf = 0.9 + 0.1 * 5.0 / 3.0
        let ev = net.forward(x.reshaped([1, 2, 2, 1]), mode: .eval, record: false).output
        for i in 0..<4 { XCTAssertEqual(Double(ev[i]), (Double(i + 1) - 0.25) / (rvf + 1e-5).squareRoot(), accuracy: 1e-5) }
        XCTAssertEqual(net.buffers.value("b.bn.running_var")[0], Float(rvf), accuracy: 1e-6, "eval must not update running stats")
    }

    /// The training forward without xhat (the unrecorded forwards), out of place and in place,
    /// writes the same output as with xhat, bit for bit, for each activation it fuses; the
    /// in-place one through a Network too.
    func testBatchNormForwardWithoutXhatMatches() {
        var rng = Xoshiro256(seed: 21)
        let rows = 37, C = 24
        let x = Tensor.uniform([rows, C], low: -2, high: 3, rng: &rng)
        let gamma = Tensor.uniform([C], low: 0.5, high: 1.5, rng: &rng), beta = Tensor.uniform([C], low: -0.5, high: 0.5, rng: &rng)
        for activation in [Activation.identity, .relu, .leakyReLU] {
            let y = Tensor(zeros: [rows, C]), xhat = Tensor(zeros: [rows, C]), invstd = Tensor(zeros: [C])
            let s = BatchNormKernel.forwardTraining(y: y.data, xhat: xhat.data, invstd: invstd.data, x: x.data, gamma: gamma.data,
                                                    beta: beta.data, rows: rows, channels: C, eps: 1e-5, activation: activation)
            let apart = Tensor(zeros: [rows, C]), inPlace = Tensor(shape: [rows, C], values: x.array)
            let s2 = BatchNormKernel.forwardTraining(y: apart.data, xhat: nil, invstd: invstd.data, x: x.data, gamma: gamma.data,
                                                     beta: beta.data, rows: rows, channels: C, eps: 1e-5, activation: activation)
            _ = BatchNormKernel.forwardTraining(y: inPlace.data, xhat: nil, invstd: invstd.data, x: inPlace.data, gamma: gamma.data,
                                                beta: beta.data, rows: rows, channels: C, eps: 1e-5, activation: activation)
            XCTAssertEqual(apart.array, y.array, "\(activation), apart")
            XCTAssertEqual(inPlace.array, y.array, "\(activation), in place")
            XCTAssertEqual(s2.mean, s.mean); XCTAssertEqual(s2.variance, s.variance)
            XCTAssertTrue(y.array.contains { $0 < 0 } || activation == .relu, "\(activation): some outputs negative")
        }
        let net = Network(blocks: [BlockSpec("e1", .conv, 3, 16, batchNorm: false, activation: .leakyReLU),
                                   BlockSpec("e2", .conv, 16, 32, batchNorm: true, activation: .leakyReLU)])
        var wrng = Xoshiro256(seed: 4)
        net.initializeWeights(rng: &wrng)
        let input = Tensor.uniform([3, 16, 16, 3], low: -1, high: 1, rng: &rng)
        let recorded = net.forward(input, mode: .train, record: true).output
        let unrecorded = net.forward(input, mode: .train, record: false).output
        XCTAssertEqual(unrecorded.array, recorded.array)
    }

    // MARK: safetensors

    /// This process's folder for the safetensors files; removed after each test.
    var tempFolder: URL { FileManager.default.temporaryDirectory.appendingPathComponent("disco-coretests-\(getpid())") }

    func tempPath(_ name: String) -> String {
        try? FileManager.default.createDirectory(at: tempFolder, withIntermediateDirectories: true)
        return tempFolder.appendingPathComponent(name).path
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: tempFolder)
        super.tearDown()
    }

    func testSafetensorsRoundTrip() throws {
        var rng = Xoshiro256(seed: 53)
        let tensors: [(String, Tensor)] = [
            ("a.weight", randn([4, 2, 3, 3], &rng)), ("a.bn.bias", randn([4], &rng)), ("scalar", Tensor(shape: [], values: [3.5])),
            ("z", Tensor(shape: [1, 1], values: [-.infinity])), ("b", randn([5, 7], &rng)),
        ]
        let meta = ["format": "pt", "note": "disco \u{2713}"]
        let data = Safetensors.serialize(tensors, metadata: meta)
        let headerLen = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        XCTAssertEqual((8 + headerLen) % 8, 0, "data section must be 8-byte aligned")
        let path = tempPath("roundtrip.safetensors")
        try data.write(to: URL(fileURLWithPath: path))
        let f = try Safetensors.read(path: path)
        XCTAssertEqual(f.names, tensors.map(\.0).sorted())
        XCTAssertEqual(f.metadata, meta)
        for (name, t) in tensors {
            let e = try f.entry(name)
            XCTAssertEqual(e.dtype, "F32"); XCTAssertEqual(e.shape, t.shape)
            XCTAssertEqual(e.floats.map(\.bitPattern), t.array.map(\.bitPattern), name)  // bit exact
        }
        XCTAssertThrowsError(try f.tensor("nope")) { XCTAssertTrue("\($0)".contains("nope")) }
    }

    func testSafetensorsTruncatedFilesGiveFormatErrorNamingThePath() throws {
        var rng = Xoshiro256(seed: 54)
        let data = Safetensors.serialize([("w", randn([3, 3], &rng)), ("v", randn([10], &rng))])
        let headerLen = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        let cases: [(String, Data)] = [
            ("header-truncated.safetensors", data.prefix(8 + headerLen / 2)),
            ("length-only.safetensors", data.prefix(5)),
            ("data-truncated.safetensors", data.prefix(data.count - 4)),
            ("not-json.safetensors", data.prefix(8) + Data(repeating: 0x41, count: headerLen)),
        ]
        for (name, bytes) in cases {
            let path = tempPath(name)
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Safetensors.read(path: path), name) { error in
                guard let fe = error as? Safetensors.FormatError else { return XCTFail("\(name): \(type(of: error)) is not a FormatError") }
                XCTAssertEqual(fe.path, path)
                XCTAssertTrue(fe.description.contains(path), "\(name): '\(fe.description)' does not name the path")
            }
        }
        let missing = tempPath("does-not-exist.safetensors")
        XCTAssertThrowsError(try Safetensors.read(path: missing)) { XCTAssertEqual(($0 as? Safetensors.FormatError)?.path, missing) }
    }
}
