import XCTest
@testable import DiscoCore

/// A small whole network (conv+BN+LeakyReLU, conv+BN+LeakyReLU, deconv+BN+ReLU, deconv+sigmoid on
/// 8x8x2, batch 3) against central finite differences of L = <net(x), R> (loss in Double, steps
/// 3e-3, 1e-3, 3e-4, 1e-4 with the best-agreeing one per sample, see `assertGradientMatchesPiecewise`):
/// input gradient and every parameter tensor (sampled), a network used twice in one step, and the
/// parameterGradients / inputGradient switches.
final class NetworkGradientTests: XCTestCase {
    /// min over steps of |fd - analytic| / |analytic|_inf, per parameter tensor. The loss is piecewise smooth:
    /// with BN over 12-48 rows, a step of 3e-3 on one c1 weight moves hundreds of pre-activations and often
    /// straddles a ReLU / LeakyReLU kink (observed: c1.bn.bias[3] fd 0.582 / 0.570 / 0.528 / 0.476 for
    /// h = 1e-2 / 1e-3 / 3e-4 / 1e-4 against analytic 0.471), hence several steps; and one-sided
    /// differences too, since on OpenBLAS's Sandybridge kernels under im2col that sample's kink lies
    /// within 1e-4 (central 0.4785 at h = 1e-4: 1.1% off).
    static let networkFDTol: Double = 1e-2
    static let steps: [Float] = [3e-3, 1e-3, 3e-4, 1e-4]

    static func makeNet(seed: UInt64) -> Network {
        let net = Network(blocks: [
            BlockSpec("c1", .conv, 2, 4, batchNorm: true, activation: .leakyReLU),   // 8 -> 4
            BlockSpec("c2", .conv, 4, 8, batchNorm: true, activation: .leakyReLU),   // 4 -> 2
            BlockSpec("d1", .deconv, 8, 4, batchNorm: true, activation: .relu),      // 2 -> 4
            BlockSpec("d2", .deconv, 4, 2, batchNorm: false, activation: .sigmoid),  // 4 -> 8
        ])
        var rng = Xoshiro256(seed: seed)
        net.initializeWeights(rng: &rng)
        // BN affine parameters away from (1, 0) so their gradients are generic
        for e in net.parameters.entries where e.name.hasSuffix(".bn.weight") || e.name.hasSuffix(".bn.bias") {
            let t = net.parameters.value(e.name)
            for i in 0..<t.count { t[i] = (e.name.hasSuffix("weight") ? 1 : 0) + 0.3 * rng.nextNormal() }
        }
        // weights a little larger than PyTorch's init, so the sigmoid sees a spread of values
        for e in net.parameters.entries where !e.name.contains(".bn.") {
            let t = net.parameters.value(e.name)
            for i in 0..<t.count { t[i] *= 2 }
        }
        return net
    }

    func loss(_ net: Network, _ x: Tensor, _ r: Tensor, twice: Bool = false) -> Double {
        var out = net.forward(x, mode: .train, record: false).output
        if twice { out = net.forward(out, mode: .train, record: false).output }
        return dot(out, r)
    }

    /// Checks every parameter tensor (up to `perTensor` sampled entries each) against finite differences.
    func checkParameters(_ net: Network, _ x: Tensor, _ r: Tensor, twice: Bool, rng: inout Xoshiro256, perTensor: Int = 24) {
        for e in net.parameters.entries {
            let analytic = net.parameters.grad(e.name).copy()
            let t = net.parameters.value(e.name)
            let idx = sampleIndices(t.count, perTensor, &rng)
            assertGradientMatchesPiecewise(analytic, t, indices: idx, steps: Self.steps, tol: Self.networkFDTol,
                                           "\(twice ? "net(net(x))" : "net(x)") \(e.name)") { loss(net, x, r, twice: twice) }
        }
    }

    func testNetworkGradientsMatchFiniteDifferences() {
        var rng = Xoshiro256(seed: 41)
        let net = Self.makeNet(seed: 42)
        let x = Tensor.uniform([3, 8, 8, 2], low: 0, high: 1, rng: &rng)
        let r = randn([3, 8, 8, 2], &rng)
        XCTAssertEqual(net.outputShape(for: x.shape), [3, 8, 8, 2])
        net.zeroGradients()
        let f = net.forward(x)
        let dx = net.backward(f.trace, dOutput: r.copy())!
        XCTAssertEqual(dx.shape, x.shape)
        let xi = sampleIndices(x.count, 48, &rng)
        assertGradientMatchesPiecewise(dx, x, indices: xi, steps: Self.steps, tol: Self.networkFDTol,
                                       "net(x) input gradient") { loss(net, x, r) }
        checkParameters(net, x, r, twice: false, rng: &rng)
    }

    /// y2 = net(net(x)) in one step: both uses' gradients must add up to the composed loss's gradient.
    func testNetworkAppliedTwiceAccumulatesBothUses() {
        var rng = Xoshiro256(seed: 43)
        let net = Self.makeNet(seed: 44)
        let x = Tensor.uniform([3, 8, 8, 2], low: 0, high: 1, rng: &rng)
        let r = randn([3, 8, 8, 2], &rng)
        net.zeroGradients()
        let f1 = net.forward(x)
        let f2 = net.forward(f1.output)
        let d1 = net.backward(f2.trace, dOutput: r.copy())!
        // gradients after the second use alone, to show the first use adds something
        let secondOnly = net.parameters.grads.copy()
        let dx = net.backward(f1.trace, dOutput: d1)!
        XCTAssertGreaterThan(maxAbsDifference(net.parameters.grads, secondOnly), 1e-3 * maxAbs(secondOnly),
                             "the first use contributed nothing")
        let xi = sampleIndices(x.count, 32, &rng)
        assertGradientMatchesPiecewise(dx, x, indices: xi, steps: Self.steps, tol: Self.networkFDTol,
                                       "net(net(x)) input gradient") { loss(net, x, r, twice: true) }
        checkParameters(net, x, r, twice: true, rng: &rng, perTensor: 16)
    }

    /// `parameterGradients: false` leaves the gradient buffer untouched but gives the same input gradient;
    /// `inputGradient: false` returns nil and still accumulates parameter gradients.
    func testGradientSwitches() {
        var rng = Xoshiro256(seed: 45)
        let net = Self.makeNet(seed: 46)
        let x = Tensor.uniform([3, 8, 8, 2], low: 0, high: 1, rng: &rng)
        let r = randn([3, 8, 8, 2], &rng)

        net.zeroGradients()
        let full = net.backward(net.forward(x).trace, dOutput: r.copy())!
        let fullGrads = net.parameters.grads.copy()

        let sentinel = randn([net.parameters.count], &rng)
        net.parameters.grads.copy(from: sentinel)
        let frozen = net.backward(net.forward(x).trace, dOutput: r.copy(), parameterGradients: false)
        XCTAssertNotNil(frozen)
        XCTAssertEqual(maxAbsDifference(net.parameters.grads, sentinel), 0, "parameterGradients: false changed the gradients")
        if let frozen { XCTAssertLessThanOrEqual(relativeError(frozen, full), 1e-6, "input gradient without parameter gradients") }

        net.zeroGradients()
        let none = net.backward(net.forward(x).trace, dOutput: r.copy(), inputGradient: false)
        XCTAssertNil(none)
        XCTAssertLessThanOrEqual(relativeError(net.parameters.grads, fullGrads), 1e-6, "parameter gradients with inputGradient: false")
    }

    /// Feature taps (as DiscoGAN's discriminator): L = <out, R> + sum_j <feature_j, S_j>.
    /// The trace drops the outputs of BN+ReLU/LeakyReLU blocks and rebuilds them in backward:
    /// the gradients must be bit-identical to keeping them (finite differences above check the values).
    func testDroppedOutputsGiveIdenticalGradients() {
        var rng = Xoshiro256(seed: 5)
        let x = randn([3, 8, 8, 2], &rng), r = randn([3, 8, 8, 2], &rng)
        var results: [[Float]] = []
        for keep in [true, false] {
            let net = Self.makeNet(seed: 9)
            net.keepsBlockOutputs = keep
            net.zeroGradients()
            let f = net.forward(x)
            XCTAssertEqual(f.trace.blocks.map { $0.output == nil }, keep ? [false, false, false, false] : [true, true, true, false])
            XCTAssertEqual(f.trace.blocks.map { $0.input == nil }, keep ? [false, false, false, false] : [false, true, true, true])
            let dx = net.backward(f.trace, dOutput: r.copy())!
            results.append(dx.array + net.parameters.grads.array + f.output.array)
        }
        XCTAssertEqual(results[0], results[1])
    }

    func testFeatureTapGradients() {
        var rng = Xoshiro256(seed: 47)
        let net = Network(blocks: [
            BlockSpec("c1", .conv, 2, 3, batchNorm: false, activation: .leakyReLU),  // 8 -> 4
            BlockSpec("c2", .conv, 3, 4, batchNorm: true, activation: .leakyReLU),   // 4 -> 2
            BlockSpec("c3", .conv, 4, 1, kernel: 2, stride: 1, padding: 0, batchNorm: false, activation: .identity),  // 2 -> 1
        ], featureTaps: [0, 1])
        net.initializeWeights(rng: &rng)
        let x = randn([3, 8, 8, 2], &rng)
        let r = randn([3, 1, 1, 1], &rng)
        let s = [randn([3, 4, 4, 3], &rng), randn([3, 2, 2, 4], &rng)]
        func l() -> Double {
            let f = net.forward(x, record: false)
            return dot(f.output, r) + dot(f.features[0], s[0]) + dot(f.features[1], s[1])
        }
        net.zeroGradients()
        let f = net.forward(x)
        XCTAssertEqual(f.features.map(\.shape), [[3, 4, 4, 3], [3, 2, 2, 4]])
        let dx = net.backward(f.trace, dOutput: r.copy(), dFeatures: [s[0].copy(), s[1].copy()])!
        let xi = sampleIndices(x.count, 32, &rng)
        assertGradientMatchesPiecewise(dx, x, indices: xi, steps: Self.steps, tol: Self.networkFDTol, "taps input gradient", l)
        for e in net.parameters.entries {
            let t = net.parameters.value(e.name), idx = sampleIndices(t.count, 24, &rng)
            assertGradientMatchesPiecewise(net.parameters.grad(e.name).copy(), t, indices: idx, steps: Self.steps,
                                           tol: Self.networkFDTol, "taps \(e.name)", l)
        }
    }
}

/// Named state in PyTorch's layout: stateDict -> load restores the network exactly; wrong shapes are refused.
final class NetworkStateTests: XCTestCase {
    func testStateDictRoundTripAndLayouts() throws {
        let a = NetworkGradientTests.makeNet(seed: 61)
        var rng = Xoshiro256(seed: 62)
        let x = Tensor.uniform([2, 8, 8, 2], low: 0, high: 1, rng: &rng)
        _ = a.forward(x)  // move the running statistics away from (0, 1)
        let state = a.stateDict()
        let names = state.map(\.0)
        XCTAssertEqual(Set(names), Set(a.parameters.entries.map(\.name) + a.buffers.entries.map(\.name)))
        let byName = Dictionary(uniqueKeysWithValues: state)
        // Conv2d [out, in, k, k]; ConvTranspose2d [in, out, k, k]
        XCTAssertEqual(byName["c1.weight"]?.shape, [4, 2, 4, 4])
        XCTAssertEqual(byName["d1.weight"]?.shape, [8, 4, 4, 4])
        XCTAssertEqual(byName["d2.weight"]?.shape, [4, 2, 4, 4])
        // element [o, i, ky, kx] of the PyTorch layout is [o, ky, kx, i] of disco's
        let w = a.parameters.value("c1.weight")
        XCTAssertEqual(byName["c1.weight"]![((3 * 2 + 1) * 4 + 2) * 4 + 0], w[((3 * 4 + 2) * 4 + 0) * 2 + 1])

        // through safetensors bytes, into a differently initialised network
        let parsed = try Safetensors.parse(Safetensors.serialize(state), path: "<memory>")
        let b = NetworkGradientTests.makeNet(seed: 63)
        try b.load(stateDict: Dictionary(uniqueKeysWithValues: try parsed.names.map { ($0, try parsed.tensor($0)) }))
        XCTAssertEqual(maxAbsDifference(a.parameters.values, b.parameters.values), 0)
        XCTAssertEqual(maxAbsDifference(a.buffers.values, b.buffers.values), 0)
        let ya = a.forward(x, mode: .eval, record: false).output, yb = b.forward(x, mode: .eval, record: false).output
        XCTAssertEqual(maxAbsDifference(ya, yb), 0)

        var bad = byName
        bad["c2.weight"] = Tensor(zeros: [8, 4, 4, 3])
        XCTAssertThrowsError(try b.load(stateDict: bad)) { XCTAssertTrue("\($0)".contains("c2.weight"), "\($0)") }
        bad = byName
        bad["d1.bn.running_var"] = nil
        XCTAssertThrowsError(try b.load(stateDict: bad)) { XCTAssertTrue("\($0)".contains("d1.bn.running_var"), "\($0)") }
    }
}
