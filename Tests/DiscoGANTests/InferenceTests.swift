import XCTest
import Foundation
@testable import DiscoGAN
@testable import DiscoCore
import DiscoImage

/// The inference path (batch norm folded into the weights, Winograd convolutions, the direct
/// image-channel kernels) against the training code's eval-mode forward. The kernels themselves
/// are tested in DiscoCoreTests (WinogradTests, DirectConvTests).
final class InferenceTests: XCTestCase {
    override func setUp() {
        super.setUp()
        XCTAssertNoThrow(try BLAS.load())
    }

    /// The folded network, direct and Winograd, against `Network.forward(mode: .eval)`.
    func testInferenceNetworkMatchesEvalForward() {
        for (size, channels) in [(64, 3), (32, 1)] {
            let g = randomizedGenerator(size: size, channels: channels, seed: UInt64(size))
            let x = randomImages(5, size: size, channels: channels, seed: 9)
            let want = g.forward(x, mode: .eval, record: false).output
            let net = InferenceNetwork(g)
            let direct = net.forward(x)
            XCTAssertLessThan(maxAbsDifference(direct, want), 2e-5, "direct, \(size)x\(size)x\(channels)")
            net.prepareWinograd(inputSize: size)
            XCTAssertTrue(net.blocks.indices.contains { net.usesWinograd(block: $0) })
            XCTAssertFalse(net.usesWinograd(block: 0), "e1 (image channels) stays direct")
            let wino = net.forward(x, scratch: InferenceScratch())
            XCTAssertLessThan(maxAbsDifference(wino, want), 1e-4, "Winograd, \(size)x\(size)x\(channels)")
            // The outputs are not trivially flat (so the comparison means something).
            let v = want.array, mean = v.reduce(0, +) / Float(v.count)
            XCTAssertGreaterThan(v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(v.count), 1e-4)
        }
    }
}

/// Random weights and batch-norm state far from the identity (gamma, beta, running mean and
/// variance all random), so folding mistakes show.
func randomizedGenerator(size: Int, channels: Int, seed: UInt64) -> Network {
    let g = DiscoGANModels.generator(size: size, channels: channels)
    var rng = Xoshiro256(seed: seed)
    g.initializeWeights(rng: &rng)
    for s in g.blocks where s.batchNorm {
        for i in 0..<s.outChannels {
            g.parameters.value("\(s.name).bn.weight")[i] = 0.5 + rng.nextUniform()
            g.parameters.value("\(s.name).bn.bias")[i] = 0.4 * (rng.nextUniform() - 0.5)
            g.buffers.value("\(s.name).bn.running_mean")[i] = 0.2 * (rng.nextUniform() - 0.5)
            g.buffers.value("\(s.name).bn.running_var")[i] = 0.5 + rng.nextUniform()
        }
    }
    return g
}

func randomImages(_ n: Int, size: Int, channels: Int, seed: UInt64) -> Tensor {
    var rng = Xoshiro256(seed: seed)
    return Tensor.uniform([n, size, size, channels], low: 0, high: 1, rng: &rng)
}
