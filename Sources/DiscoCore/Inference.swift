#if canImport(Glibc)
import Glibc
#endif

/// A network prepared for inference (eval mode): each batch norm's running statistics and affine
/// parameters are folded into its convolution's weights (scale) and a per-channel bias (shift),
///
///     BN(conv(x, w)) = conv(x, w * s) + b,   s = gamma / sqrt(running_var + eps),
///                                             b = beta - running_mean * s,
///
/// so a block is one convolution and one pass that adds the bias and applies the activation,
/// instead of the convolution, a batch-norm pass and an activation pass into fresh tensors.
/// Values equal `Network.forward(x, mode: .eval)` up to float rounding (the scale is applied
/// to the weights before the products instead of after the sums).
public final class InferenceNetwork: @unchecked Sendable {
    public let blocks: [BlockSpec]
    /// Folded weights, disco's layout (OHWI of the convolution; see Conv.swift).
    let weights: [Tensor]
    /// Per-output-channel bias, empty for a block without batch norm.
    let biases: [[Float]]

    /// Folds `network`'s current weights and batch-norm state.
    public convenience init(_ network: Network) {
        self.init(blocks: network.blocks, eps: network.bnEps, torchLayout: false) { name in
            if name.hasSuffix(".running_mean") || name.hasSuffix(".running_var") {
                return UnsafePointer(network.buffers.value(name).data)
            }
            return UnsafePointer(network.parameters.value(name).data)
        }
    }

    /// Builds the folded network from tensors found by name (`e2.weight`, `e2.bn.weight`,
    /// `e2.bn.bias`, `e2.bn.running_mean`, `e2.bn.running_var`). `tensor(name)` returns the
    /// values of a tensor whose shape the caller has checked; weights are in PyTorch's layout
    /// (Conv2d [out, in, kh, kw], ConvTranspose2d [in, out, kh, kw]) when `torchLayout`, else in
    /// disco's ([A, kh, kw, B] for both, see `BlockSpec.weightShape`).
    public init(blocks: [BlockSpec], eps: Float, torchLayout: Bool,
                tensor: (String) throws -> UnsafePointer<Float>) rethrows {
        self.blocks = blocks
        var weights: [Tensor] = [], biases: [[Float]] = []
        for s in blocks {
            let shape = s.weightShape  // [A, kh, kw, B]
            let A = shape[0], KK = shape[1] * shape[2], B = shape[3]
            // The batch norm acts on the block's output channels: A for a convolution
            // (OHWI: O = A), B for a transposed convolution (its weight is the adjoint's OHWI).
            var scale = [Float](repeating: 1, count: s.outChannels)
            var bias: [Float] = []
            if s.batchNorm {
                let gamma = try tensor("\(s.name).bn.weight"), beta = try tensor("\(s.name).bn.bias")
                let mean = try tensor("\(s.name).bn.running_mean"), variance = try tensor("\(s.name).bn.running_var")
                bias = [Float](repeating: 0, count: s.outChannels)
                for c in 0..<s.outChannels {
                    scale[c] = gamma[c] / (variance[c] + eps).squareRoot()
                    bias[c] = beta[c] - mean[c] * scale[c]
                }
            }
            let src = try tensor("\(s.name).weight")
            let w = Tensor(uninitialized: shape)
            let dst = w.data
            let perA = s.kind == .conv
            scale.withUnsafeBufferPointer { sp in
                let sc = sp.baseAddress!
                Parallel.forRanges(A, grain: 16) { r in
                    for a in r {
                        let sa: Float = perA ? sc[a] : 1
                        let d = dst + a * KK * B
                        if torchLayout {
                            // [A, B, kh, kw] -> [A, kh, kw, B]
                            let sr = src + a * B * KK
                            for b in 0..<B {
                                let k = perA ? sa : sc[b], sb = sr + b * KK
                                for j in 0..<KK { d[j * B + b] = sb[j] * k }
                            }
                        } else {
                            let sr = src + a * KK * B
                            for j in 0..<KK {
                                for b in 0..<B { d[j * B + b] = sr[j * B + b] * (perA ? sa : sc[b]) }
                            }
                        }
                    }
                }
            }
            weights.append(w)
            biases.append(bias)
        }
        self.weights = weights
        self.biases = biases
        imageChannel = blocks.enumerated().map { i, s in
            ImageChannelBlock.applies(to: s) ? ImageChannelBlock(spec: s, weight: weights[i]) : nil
        }
    }

    /// Direct kernels for the image-channel blocks (e1, d4), for every batch size.
    private let imageChannel: [ImageChannelBlock?]

    /// Winograd versions of the blocks that allow it (`winogradTile`): their prepared weights, for
    /// inputs of `winogradInputSize`; nil entries run as direct convolutions (im2col + GEMM).
    private var winograd: [Winograd.Weights?] = []
    private var winogradInputSize = 0

    /// The Winograd tile for block `s` whose y side (a convolution's output, a transposed
    /// convolution's input) is `ySize` x `ySize`, or nil when Winograd does not pay at inference:
    /// it needs the 4x4 / 2 / 1 geometry, whole tiles, and enough channels on both sides for the
    /// GEMMs to be efficient (not the image-channel layers e1 and d4). F(4x4) from 8x8 up, else F(2x2).
    public static func winogradTile(for s: BlockSpec, ySize: Int) -> Int? {
        guard s.kernel == 4, s.stride == 2, s.padding == 1 else { return nil }
        let c = s.kind == .conv ? s.inChannels : s.outChannels, k = s.kind == .conv ? s.outChannels : s.inChannels
        guard 4 * c >= 64, k >= 64 else { return nil }
        if ySize >= 8 && ySize % 4 == 0 { return 4 }
        if ySize >= 2 && ySize % 2 == 0 { return 2 }
        return nil
    }

    /// Prepares Winograd convolutions for inputs of `size` x `size` (the weight transform costs
    /// about as much as a few images' forward, so it pays for batches, not for one image).
    /// Not thread-safe: call before concurrent forwards.
    public func prepareWinograd(inputSize size: Int) {
        var h = size
        winograd = blocks.enumerated().map { i, s in
            defer { h = s.outputSize(h) }
            guard let m = InferenceNetwork.winogradTile(for: s, ySize: s.kind == .conv ? s.outputSize(h) : h) else { return nil }
            return Winograd.tile(m).prepareWeights(weights[i])
        }
        winogradInputSize = size
    }

    /// Whether block i runs by Winograd (after `prepareWinograd`).
    public func usesWinograd(block i: Int) -> Bool { i < winograd.count && winograd[i] != nil }

    /// The Winograd tile block i runs with (after `prepareWinograd`), nil for a direct convolution.
    public func winogradTile(block i: Int) -> Int? { i < winograd.count ? winograd[i]?.winograd.tile : nil }

    /// Multiply-adds one image of `size` x `size` costs as run: for a Winograd block its GEMMs'
    /// ((m + 1)^2 products per m x m tile instead of 4 m^2), for the others the direct
    /// convolution's count (Conv may run some of those by its own Winograd, 9/16 of it).
    public func multiplyAdds(inputSize size: Int) -> Int {
        var h = size, total = 0
        let prepared = size == winogradInputSize
        for (i, s) in blocks.enumerated() {
            let g = s.geometry(batch: 1, height: h, width: h)
            if prepared, i < winograd.count, let wb = winograd[i] {
                total += wb.winograd.gemmMACs(g)
            } else {
                total += g.macs
            }
            h = s.outputSize(h)
        }
        return total
    }

    /// Output shape for an NHWC input shape.
    public func outputShape(for input: [Int]) -> [Int] {
        var h = input[1], w = input[2]
        for s in blocks { h = s.outputSize(h); w = s.outputSize(w) }
        return [input[0], h, w, blocks.last!.outChannels]
    }

    /// Runs the network on x [N, H, W, C] and returns a new tensor. `scratch` holds the
    /// convolutions' buffers and the intermediate activations: concurrent calls need one each.
    public func forward(_ x: Tensor, scratch: InferenceScratch = InferenceScratch(conv: .shared)) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[3] == blocks[0].inChannels,
                     "InferenceNetwork.forward: input \(x.shape) is not [N, H, W, \(blocks[0].inChannels)]")
        let useWinograd = !winograd.isEmpty && x.shape[1] == winogradInputSize && x.shape[2] == winogradInputSize
        var h = x
        for (i, s) in blocks.enumerated() {
            let g = s.geometry(batch: h.shape[0], height: h.shape[1], width: h.shape[2])
            let shape = s.kind == .conv ? g.outputShape : g.inputShape
            // Intermediate results take turns in the scratch's two buffers; the result is new.
            let y = i == blocks.count - 1 ? Tensor(uninitialized: shape) : scratch.activation(i % 2, shape: shape)
            if let ib = imageChannel[i], ib.fits(h) {
                switch s.kind {
                case .conv: ib.convolve(h, into: y, bias: biases[i], activation: s.activation)
                case .deconv: ib.transposed(h, into: y, bias: biases[i], activation: s.activation)
                }
                h = y
                continue
            }
            if useWinograd, let wb = winograd[i] {
                let epilogue = ConvEpilogue(bias: biases[i], activation: s.activation)
                switch s.kind {
                case .conv: wb.winograd.forward(y: y, x: h, w: nil, prepared: wb, g: g, epilogue: epilogue, workspace: scratch.conv)
                case .deconv: wb.winograd.backwardInput(dx: y, dy: h, w: nil, prepared: wb, g: g, epilogue: epilogue, workspace: scratch.conv)
                }
                h = y
                continue
            }
            switch s.kind {
            case .conv: Conv.forward(y: y, x: h, w: weights[i], g: g, workspace: scratch.conv)
            case .deconv: Conv.transposedForward(y: y, x: h, w: weights[i], g: g, workspace: scratch.conv)
            }
            InferenceNetwork.biasActivation(y.data, rows: y.count / s.outChannels, channels: s.outChannels,
                                            bias: biases[i], activation: s.activation)
            h = y
        }
        return h
    }

    /// y[m, c] = activation(y[m, c] + bias[c]) in place (no bias when `bias` is empty).
    static func biasActivation(_ y: UnsafeMutablePointer<Float>, rows M: Int, channels C: Int,
                               bias: [Float], activation: Activation) {
        if bias.isEmpty { activation.forward(y: y, x: y, count: M * C); return }
        bias.withUnsafeBufferPointer { bp in
            let b = bp.baseAddress!
            Parallel.forRanges(M, grain: max(1, (1 << 15) / C)) { r in
                for m in r { biasActivationRow(y + m * C, C, b, activation) }
            }
        }
    }

    /// y = activation(y) in place, on this thread; the sigmoid 8 lanes at a time (`sigmoid8`).
    static func activate(_ y: UnsafeMutablePointer<Float>, count n: Int, _ activation: Activation) {
        guard activation == .sigmoid else {
            biasActivationRow(y, n, nil, activation)
            return
        }
        var i = 0
        let raw = UnsafeMutableRawPointer(y)
        while i + 8 <= n {
            raw.storeBytes(of: sigmoid8(raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)), toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] = stableSigmoid(y[i]); i += 1 }
    }

    /// 1 / (1 + e^-x) for 8 lanes: e^-|x| by Cephes' expf (range reduction to [-ln 2 / 2, ln 2 / 2],
    /// degree-5 polynomial; relative error about 1e-7), then the stable form of `stableSigmoid`.
    @inline(__always)
    static func sigmoid8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let a = pointwiseMax(x.replacing(with: -x, where: x .> 0), SIMD8(repeating: -87.3))  // -|x|
        let n = (a * 1.44269504088896341).rounded(.toNearestOrEven)
        let r = a - n * 0.693359375 + n * 2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * r * r + r + 1
        // 2^n: n + 1.5 * 2^23 holds n in its low mantissa bits; move n + 127 into the exponent.
        let nBits = unsafeBitCast(n + 12582912, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: SIMD8<Float>.self)
        let t = er * scale                      // e^-|x|, in (0, 1]
        let s = 1 / (1 + t)
        return s.replacing(with: t * s, where: x .< 0)
    }

    /// One row of `biasActivation`; `bias` nil: none.
    @inline(__always)
    static func biasActivationRow(_ row: UnsafeMutablePointer<Float>, _ C: Int, _ bias: UnsafePointer<Float>?, _ activation: Activation) {
        let slope = Activation.leakySlope
        if let b = bias {
            switch activation {
            case .relu: for c in 0..<C { row[c] = max(row[c] + b[c], 0) }
            case .leakyReLU: for c in 0..<C { let v = row[c] + b[c]; row[c] = v > 0 ? v : v * slope }
            case .identity: for c in 0..<C { row[c] += b[c] }
            case .sigmoid: for c in 0..<C { row[c] = stableSigmoid(row[c] + b[c]) }
            case .tanh: for c in 0..<C { row[c] = tanhf(row[c] + b[c]) }
            }
        } else {
            switch activation {
            case .relu: for c in 0..<C { row[c] = max(row[c], 0) }
            case .leakyReLU: for c in 0..<C { let v = row[c]; row[c] = v > 0 ? v : v * slope }
            case .identity: break
            case .sigmoid: for c in 0..<C { row[c] = stableSigmoid(row[c]) }
            case .tanh: for c in 0..<C { row[c] = tanhf(row[c]) }
            }
        }
    }
}

/// Per-stream scratch of `InferenceNetwork.forward`: the convolutions' workspace (im2col columns,
/// Winograd transform buffers) and two buffers the intermediate activations take turns in. Reused
/// from call to call, so a stream's steady state allocates (and page-faults) nothing. Concurrent
/// forwards need one each.
public final class InferenceScratch: @unchecked Sendable {
    let conv: Workspace
    private var activations: [Tensor?] = [nil, nil]

    public init(conv: Workspace = Workspace()) { self.conv = conv }

    /// A tensor of `shape` in activation buffer `which` (0 or 1), valid until that buffer's next use.
    func activation(_ which: Int, shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        if (activations[which]?.count ?? -1) < n { activations[which] = nil; activations[which] = Tensor(uninitialized: [n]) }
        return Tensor(viewOf: activations[which]!, offset: 0, shape: shape)
    }
}
