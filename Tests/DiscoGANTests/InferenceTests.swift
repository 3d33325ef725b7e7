import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore
import DiscoImage

/// The inference path (batch norm folded into the weights, Winograd convolutions) against the
/// training code's eval-mode forward and convolutions.
final class InferenceTests: XCTestCase {
    override func setUp() {
        super.setUp()
        XCTAssertNoThrow(try BLAS.load())
    }

    /// F(m, 2) reproduces the 2-tap correlation y[i] = d[i] g[0] + d[i + 1] g[1].
    func testWinogradMatrices() {
        for m in [2, 4] {
            let f = WinogradF2(m: m)
            var rng = Xoshiro256(seed: UInt64(m))
            for _ in 0..<20 {
                let d = (0..<f.alpha).map { _ in rng.nextNormal() }, g = (0..<2).map { _ in rng.nextNormal() }
                let gg = (0..<f.alpha).map { r in f.G[r * 2] * g[0] + f.G[r * 2 + 1] * g[1] }
                let bd = (0..<f.alpha).map { r in (0..<f.alpha).reduce(Float(0)) { $0 + f.BT[r * f.alpha + $1] * d[$1] } }
                for i in 0..<m {
                    let y = (0..<f.alpha).reduce(Float(0)) { $0 + f.AT[i * f.alpha + $1] * gg[$1] * bd[$1] }
                    XCTAssertEqual(y, d[i] * g[0] + d[i + 1] * g[1], accuracy: 1e-4, "m \(m), output \(i)")
                }
            }
        }
    }

    /// One Winograd block against Conv's convolution and transposed convolution, on values of
    /// mixed sign (relative error of the sums).
    func testWinogradBlocksMatchDirectConvolution() {
        var rng = Xoshiro256(seed: 3)
        for (kind, c, k, ySize, n) in [(LayerKind.conv, 32, 64, 8, 3), (.conv, 16, 64, 4, 2), (.deconv, 32, 64, 8, 2), (.deconv, 64, 64, 4, 3)] {
            let spec = kind == .conv ? BlockSpec("b", .conv, c, k, batchNorm: false, activation: .identity)
                                     : BlockSpec("b", .deconv, k, c, batchNorm: false, activation: .identity)
            let w = Tensor.uniform([k, 4, 4, c], low: -0.2, high: 0.2, rng: &rng)
            let m = WinogradBlock.tile(for: spec, ySize: ySize)!
            let wb = WinogradBlock(spec: spec, weight: w, m: m)
            let scratch = InferenceScratch()
            let want: Tensor, got: Tensor
            if kind == .conv {
                let g = ConvGeometry(batch: n, height: 2 * ySize, width: 2 * ySize, inChannels: c, outChannels: k, kernel: 4, stride: 2, padding: 1)
                let x = Tensor.uniform(g.inputShape, low: -1, high: 1, rng: &rng)
                want = Tensor(uninitialized: g.outputShape)
                Conv.forward(y: want, x: x, w: w, g: g)
                got = Tensor(uninitialized: g.outputShape)
                wb.convolve(x, into: got, bias: [], activation: .identity, scratch: scratch)
            } else {
                let g = ConvGeometry(batch: n, height: 2 * ySize, width: 2 * ySize, inChannels: c, outChannels: k, kernel: 4, stride: 2, padding: 1)
                let x = Tensor.uniform(g.outputShape, low: -1, high: 1, rng: &rng)
                want = Tensor(uninitialized: g.inputShape)
                Conv.transposedForward(y: want, x: x, w: w, g: g)
                got = Tensor(uninitialized: g.inputShape)
                wb.transposed(x, into: got, bias: [], activation: .identity, scratch: scratch)
            }
            let scale = want.array.map(abs).max()!
            XCTAssertLessThan(maxAbsDifference(got, want), 1e-5 * max(scale, 1) * 10, "\(kind) C \(c) K \(k) y \(ySize) m \(m)")
        }
    }

    /// The 8-lane sigmoid against the scalar one, over the range that matters and beyond.
    func testVectorSigmoid() {
        var worst: Float = 0
        for i in stride(from: -120_000, through: 120_000, by: 8) {
            let x = SIMD8<Float>((0..<8).map { Float(i + $0) * 1e-3 })
            let y = InferenceNetwork.sigmoid8(x)
            for l in 0..<8 { worst = max(worst, abs(y[l] - stableSigmoid(x[l]))) }
        }
        XCTAssertLessThan(worst, 2e-7)
        let edge = InferenceNetwork.sigmoid8(SIMD8<Float>(-1e30, -100, -88, 0, 88, 100, 1e30, -0))
        XCTAssertEqual(edge[3], 0.5); XCTAssertEqual(edge[7], 0.5)
        XCTAssertEqual(edge[6], 1); XCTAssertLessThan(edge[0], 1e-30)
    }

    /// The image-channel kernels (e1, d4) against Conv's convolution and transposed convolution.
    func testImageChannelBlocksMatchDirectConvolution() {
        var rng = Xoshiro256(seed: 8)
        for (c, k, size, n) in [(3, 64, 16, 2), (1, 32, 8, 3), (2, 32, 8, 1)] {
            let w = Tensor.uniform([k, 4, 4, c], low: -0.3, high: 0.3, rng: &rng)
            let g = ConvGeometry(batch: n, height: size, width: size, inChannels: c, outChannels: k, kernel: 4, stride: 2, padding: 1)
            let conv = BlockSpec("e1", .conv, c, k, batchNorm: false, activation: .identity)
            let deconv = BlockSpec("d4", .deconv, k, c, batchNorm: false, activation: .identity)
            XCTAssertTrue(ImageChannelBlock.applies(to: conv) && ImageChannelBlock.applies(to: deconv))
            let x = Tensor.uniform(g.inputShape, low: -1, high: 1, rng: &rng)
            let want = Tensor(uninitialized: g.outputShape), got = Tensor(uninitialized: g.outputShape)
            Conv.forward(y: want, x: x, w: w, g: g)
            ImageChannelBlock(spec: conv, weight: w).convolve(x, into: got, bias: [], activation: .identity)
            XCTAssertLessThan(maxAbsDifference(got, want), 1e-5, "conv C \(c) K \(k)")
            let dy = Tensor.uniform(g.outputShape, low: -1, high: 1, rng: &rng)
            let wantT = Tensor(uninitialized: g.inputShape), gotT = Tensor(uninitialized: g.inputShape)
            Conv.transposedForward(y: wantT, x: dy, w: w, g: g)
            ImageChannelBlock(spec: deconv, weight: w).transposed(dy, into: gotT, bias: [], activation: .identity)
            XCTAssertLessThan(maxAbsDifference(gotT, wantT), 1e-5, "transposed C \(c) K \(k)")
        }
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
