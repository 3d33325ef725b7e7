import XCTest
@testable import DiscoCore

/// The pieces `disco gan --arch dcgan` adds to the conv networks, each against an independent
/// source: the 1x1 -> 4x4 transposed convolution (k4, s1, p0) and the 4x4 -> 1x1 convolution
/// against the naive oracle; a block bias and tanh, and the conditional label concatenation
/// (one-hot columns, label planes) against central finite differences.
final class GANLayerTests: XCTestCase {
    /// Same bound as ConvTests: float GEMM against Double accumulation.
    static let oracleRelTol: Float = 2e-5

    /// G's first layer, ConvTranspose(nz -> 4w, k4, s1, p0): 1x1 -> 4x4. It is the adjoint of the
    /// convolution 4x4 -> 1x1 with the same kernel, so the oracle's input gradient is its forward.
    func testTransposedConv1x1To4x4MatchesOracle() {
        var rng = Xoshiro256(seed: 71)
        let nz = 7, out = 5, n = 3
        let block = BlockSpec("ct1", .deconv, nz, out, kernel: 4, stride: 1, padding: 0, batchNorm: false, activation: .identity)
        XCTAssertEqual(block.outputSize(1), 4)
        let g = block.geometry(batch: n, height: 1, width: 1)
        XCTAssertEqual(g.inputShape, [n, 4, 4, out]); XCTAssertEqual(g.outputShape, [n, 1, 1, nz])
        let x = randn([n, 1, 1, nz], &rng), w = randn(block.weightShape, &rng), dy = randn([n, 4, 4, out], &rng)
        // Oracle: convolution 4x4 -> 1x1 of dy-shaped input; its input gradient for "output gradient" x.
        let (refY, _) = Conv.naiveBackward(x: Tensor(zeros: g.inputShape), w: w, dy: x, g: g)
        let y = Tensor(filling: 1e6, shape: [n, 4, 4, out])
        Conv.transposedForward(y: y, x: x, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(y, refY), Self.oracleRelTol, "convT 1->4 forward")
        // Its input gradient is the convolution's forward of dy; its weight gradient the convolution's
        // weight gradient with input dy and output gradient x.
        let dx = Tensor(filling: 1e6, shape: x.shape)
        Conv.transposedBackwardInput(dx: dx, dy: dy, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(dx, Conv.naiveForward(x: dy, w: w, g: g)), Self.oracleRelTol, "convT 1->4 input gradient")
        let dw = Tensor(zeros: w.shape)
        Conv.transposedBackwardWeight(dw: dw, x: x, dy: dy, g: g)
        XCTAssertLessThanOrEqual(relativeError(dw, Conv.naiveBackward(x: dy, w: w, dy: x, g: g).dw), Self.oracleRelTol, "convT 1->4 weight gradient")
    }

    /// D's last layer, Conv(4w -> 1, k4, s1, p0): 4x4 -> 1x1.
    func testConv4x4To1x1MatchesOracle() {
        var rng = Xoshiro256(seed: 72)
        let g = BlockSpec("c4", .conv, 6, 1, kernel: 4, stride: 1, padding: 0, batchNorm: false, activation: .identity)
            .geometry(batch: 3, height: 4, width: 4)
        XCTAssertEqual(g.outputShape, [3, 1, 1, 1])
        let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
        let y = Tensor(filling: 1e6, shape: g.outputShape)
        Conv.forward(y: y, x: x, w: w, g: g)
        XCTAssertLessThanOrEqual(relativeError(y, Conv.naiveForward(x: x, w: w, g: g)), Self.oracleRelTol)
        let (refDx, refDw) = Conv.naiveBackward(x: x, w: w, dy: dy, g: g)
        let dx = Tensor(uninitialized: x.shape), dw = Tensor(zeros: w.shape)
        Conv.backwardInput(dx: dx, dy: dy, w: w, g: g)
        Conv.backwardWeight(dw: dw, x: x, dy: dy, g: g)
        XCTAssertLessThanOrEqual(relativeError(dx, refDx), Self.oracleRelTol)
        XCTAssertLessThanOrEqual(relativeError(dw, refDw), Self.oracleRelTol)
    }

    static let steps: [Float] = [3e-3, 1e-3, 3e-4]
    static let fdTol: Double = 1e-2

    /// A tiny DCGAN G (z 1x1 -> 4x4 -> 8x8, BN, ReLU, tanh with a bias) and D (8x8 -> 4x4 -> 1x1,
    /// LeakyReLU, BN, a biased logit): every parameter (biases included) and the input gradient
    /// against finite differences of <net(x), r>.
    func testDCGANShapedNetworksGradients() {
        var rng = Xoshiro256(seed: 73)
        let G = Network(blocks: [
            BlockSpec("ct1", .deconv, 5, 6, kernel: 4, stride: 1, padding: 0, batchNorm: true, activation: .relu),
            BlockSpec("ct2", .deconv, 6, 2, batchNorm: false, activation: .tanh, bias: true)])
        let D = Network(blocks: [
            BlockSpec("c1", .conv, 3, 4, batchNorm: false, activation: .leakyReLU),
            BlockSpec("c2", .conv, 4, 1, kernel: 4, stride: 1, padding: 0, batchNorm: false, activation: .identity, bias: true)])
        for (net, input) in [(G, [3, 1, 1, 5]), (D, [3, 8, 8, 3])] {
            net.initializeWeights(rng: &rng)
            for e in net.parameters.entries { let t = net.parameters.value(e.name); for i in 0..<t.count { t[i] += 0.3 * rng.nextNormal() } }
            XCTAssertTrue(net.parameters.contains(net.blocks.last!.name + ".bias"))
            let x = randn(input, &rng)
            let r = randn(net.outputShape(for: input), &rng)
            func loss() -> Double { dot(net.forward(x, mode: .train, record: false).output, r) }
            net.zeroGradients()
            let f = net.forward(x)
            let dx = net.backward(f.trace, dOutput: r.copy())!
            _ = assertGradientMatchesPiecewise(dx, x, indices: sampleIndices(x.count, 30, &rng), steps: Self.steps, tol: Self.fdTol,
                                               "\(net.blocks[0].name) input", loss)
            for e in net.parameters.entries {
                let t = net.parameters.value(e.name)
                _ = assertGradientMatchesPiecewise(net.parameters.grad(e.name).copy(), t, indices: sampleIndices(t.count, 16, &rng),
                                                   steps: Self.steps, tol: Self.fdTol, e.name, loss)
            }
            // The bias is in the state dict (PyTorch's `bias`), and reloads.
            let state = Dictionary(uniqueKeysWithValues: net.stateDict())
            XCTAssertNotNil(state[net.blocks.last!.name + ".bias"])
        }
    }

    func testLabelConcatLayout() {
        let x = Tensor(shape: [2, 2, 1, 1], values: [5, 6, 7, 8])  // two 2x1 one-channel images
        let y = LabelConcat.forward(x, labels: [2, 0], classes: 3)
        XCTAssertEqual(y.shape, [2, 2, 1, 4])
        XCTAssertEqual(y.array, [5, 0, 0, 1, 6, 0, 0, 1, 7, 1, 0, 0, 8, 1, 0, 0])
        let rows = LabelConcat.forward(Tensor(shape: [2, 2], values: [1, 2, 3, 4]), labels: [1, 0], classes: 2)
        XCTAssertEqual(rows.array, [1, 2, 0, 1, 3, 4, 1, 0])
    }

    /// The conditional D's input gradient through the label concatenation: label planes joined to
    /// the image (DCGAN) and one-hot columns joined to the vector (MLP), against finite differences
    /// of <D(concat(x, labels)), r> in x.
    func testLabelConcatGradientsMatchFiniteDifferences() {
        var rng = Xoshiro256(seed: 74)
        let labels = [2, 0, 1], k = 3
        // Planes: image [3, 8, 8, 1] + 3 label planes -> conv D.
        let D = Network(blocks: [
            BlockSpec("c1", .conv, 1 + k, 4, batchNorm: false, activation: .leakyReLU),
            BlockSpec("c2", .conv, 4, 1, kernel: 4, stride: 1, padding: 0, batchNorm: false, activation: .identity, bias: true)])
        D.initializeWeights(rng: &rng)
        let x = randn([3, 8, 8, 1], &rng), r = randn([3, 1, 1, 1], &rng)
        D.zeroGradients()
        let f = D.forward(LabelConcat.forward(x, labels: labels, classes: k))
        let dx = LabelConcat.backward(D.backward(f.trace, dOutput: r.copy())!, features: 1)
        XCTAssertEqual(dx.shape, x.shape)
        _ = assertGradientMatchesPiecewise(dx, x, indices: sampleIndices(x.count, 40, &rng), steps: Self.steps, tol: Self.fdTol,
                                           "label planes") {
            dot(D.forward(LabelConcat.forward(x, labels: labels, classes: k), mode: .train, record: false).output, r)
        }
        // Columns: vector [3, 6] + one-hot 3 -> MLP.
        let M = MLP(sizes: [6 + k, 5, 1], hidden: .relu, output: .identity)
        M.initialize(rng: &rng)
        let v = randn([3, 6], &rng), rv = randn([3, 1], &rng)
        let fm = M.forward(LabelConcat.forward(v, labels: labels, classes: k))
        let dv = LabelConcat.backward(M.backward(fm.trace, dOutput: rv), features: 6)
        _ = assertGradientMatchesPiecewise(dv, v, indices: Array(0..<v.count), steps: Self.steps, tol: Self.fdTol, "one-hot columns") {
            dot(M.forward(LabelConcat.forward(v, labels: labels, classes: k)).output, rv)
        }
        // The label changes D's output (the planes reach it), so the condition is not ignored.
        let other = D.forward(LabelConcat.forward(x, labels: [0, 1, 2], classes: k), mode: .train, record: false).output
        XCTAssertGreaterThan(maxAbsDifference(other, f.output), 1e-4)
    }
}
