import XCTest
@testable import DiscoGAN
import DiscoCore

/// One step of the MLP GAN against PyTorch (Tests/Fixtures/make_mlpgan_fixture.py): both losses
/// and every gradient of G and D, sampled elements and L2 norms, within 20x PyTorch's own float32
/// rounding (the inputs keep every ReLU input clear of its kink by that bound).
final class MLPGANFixtureTests: XCTestCase {
    /// make_fixtures.py's hash init for an MLP: parameter j (weight, bias, weight, ...) gets
    /// (2u - 1) / sqrt(fan_in).
    func hashInit(_ net: MLP, seed: Int) {
        var j = 0
        for l in 0..<net.weights.count {
            let k = 1 / Double(net.sizes[l]).squareRoot()
            for t in [net.weights[l], net.biases[l]] {
                for i in 0..<t.count { t[i] = Float((2 * hashUniform(i, j, seed) - 1) * k) }
                j += 1
            }
        }
    }

    func testOneStepMatchesPyTorch() throws {
        _ = try BLAS.load()
        let f = try fixture("mlpgan_step.safetensors")
        let seed = try f.ints("seed")[0]
        let G = MLP(sizes: [64, 128, 784], hidden: .relu, output: .sigmoid)
        let D = MLP(sizes: [784, 128, 1], hidden: .relu, output: .identity)
        hashInit(G, seed: 21); hashInit(D, seed: 22)
        let z = Tensor(shape: [8, 64], values: (0..<(8 * 64)).map { Float(2 * hashUniform($0, 3000, seed) - 1) })
        let x = Tensor(shape: [8, 784], values: (0..<(8 * 784)).map { Float(hashUniform($0, 3001, seed)) })

        let dLoss = MLPGAN.discriminatorGradients(D, real: x, fake: G.forward(z).output)
        try assertMatchesFixture(Tensor(filling: dLoss, shape: [1]), f, "d.loss")
        for (l, name) in [(0, "0"), (1, "2")] {
            try assertMatchesFixture(D.weightGrads[l], f, "d.grad.\(name).weight")
            try assertMatchesFixture(D.biasGrads[l], f, "d.grad.\(name).bias")
        }
        let gLoss = MLPGAN.generatorGradients(G, D, z: z)
        try assertMatchesFixture(Tensor(filling: gLoss, shape: [1]), f, "g.loss")
        XCTAssertTrue(D.grads.array.allSatisfy { $0 == 0 }, "the G step leaves D's gradients zero")
        for (l, name) in [(0, "0"), (1, "2")] {
            try assertMatchesFixture(G.weightGrads[l], f, "g.grad.\(name).weight")
            try assertMatchesFixture(G.biasGrads[l], f, "g.grad.\(name).bias")
        }
    }
}
