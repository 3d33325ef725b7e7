#if canImport(Glibc)
import Glibc
#endif
import _CKernels

/// Training's use of the direct image-channel kernels (`ImageChannelBlock`, in C:
/// Sources/_CKernels/direct_conv.c) as convolution passes, for the geometries they fit: 4x4 /
/// stride 2 / padding 1, C <= 3 input channels, K a multiple of 16 output channels, H and W even,
/// on a CPU with AVX2 and FMA. Layouts as Conv's: x [N, H, W, C], y [N, H/2, W/2, K], w [K, 4, 4, C].
/// The forward is `convolve`; the input gradient (a transposed convolution's forward) is
/// `transposed`; the weight gradient is `backwardWeight` (register-blocked sums over the pixels).
public enum DirectConv {
    /// Whether this CPU runs the kernels (AVX2 + FMA; x86-64 only).
    public static let available: Bool = {
        #if arch(x86_64)
        return BLAS.CPUFeatures.current().avx2
        #else
        return false
        #endif
    }()

    /// Whether `pass` of `g` has a direct kernel (the same conditions for the three passes).
    public static func applies(_ g: ConvGeometry, _ pass: ConvPass) -> Bool {
        available && g.kernelH == 4 && g.kernelW == 4 && g.stride == 2 && g.padding == 1
            && g.inChannels <= 3 && g.outChannels % 16 == 0 && g.height % 2 == 0 && g.width % 2 == 0
    }

    /// Outputs of this many bytes or more are written with streaming stores: they outgrow the
    /// caches anyway, and a store that misses would first read its line from memory.
    static let streamingBytes = 8 << 20

    /// y = activation(conv(x, w)): y [N, Ho, Wo, K], x [N, H, W, C], w [K, 4, 4, C].
    public static func forward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry, activation: Activation = .identity) {
        precondition(applies(g, .forward), "DirectConv forward: no direct kernel for \(g)")
        Conv.check(y, g.outputShape, "y", "direct conv forward", g); Conv.check(x, g.inputShape, "x", "direct conv forward", g)
        Conv.check(w, g.weightShape, "w", "direct conv forward", g)
        if g.batch == 0 { return }
        ImageChannelBlock(kind: .conv, weight: w).convolve(x, into: y, bias: [], activation: activation,
                                                            stream: y.count * MemoryLayout<Float>.stride >= streamingBytes)
    }

    /// dx = the input gradient of conv (overwrites dx): dx [N, H, W, C], dy [N, Ho, Wo, K], w [K, 4, 4, C].
    public static func backwardInput(dx: Tensor, dy: Tensor, w: Tensor, g: ConvGeometry) {
        precondition(applies(g, .inputGradient), "DirectConv input gradient: no direct kernel for \(g)")
        Conv.check(dx, g.inputShape, "dx", "direct conv input gradient", g); Conv.check(dy, g.outputShape, "dy", "direct conv input gradient", g)
        Conv.check(w, g.weightShape, "w", "direct conv input gradient", g)
        if g.batch == 0 { return }
        ImageChannelBlock(kind: .deconv, weight: w).transposed(dy, into: dx, bias: [], activation: .identity)
    }

    /// dw += the weight gradient of conv: dw [K, 4, 4, C], x [N, H, W, C], dy [N, Ho, Wo, K]:
    ///     dw[k, ky, kx, c] += sum over n, oy, ox of dy[n, oy, ox, k] * x[n, 2oy + ky - 1, 2ox + kx - 1, c].
    /// Per image `dc_direct_weight_grad` (6 taps x 16 channels in 12 accumulators over all the
    /// pixels), the image first copied inside a zero border. Workers take contiguous shares of the
    /// batch, sum into partials of their own, and the partials are added in worker order (results
    /// do not depend on timing).
    public static func backwardWeight(dw: Tensor, x: Tensor, dy: Tensor, g: ConvGeometry) {
        precondition(applies(g, .weightGradient), "DirectConv weight gradient: no direct kernel for \(g)")
        Conv.check(dw, g.weightShape, "dw", "direct conv weight gradient", g); Conv.check(x, g.inputShape, "x", "direct conv weight gradient", g)
        Conv.check(dy, g.outputShape, "dy", "direct conv weight gradient", g)
        if g.batch == 0 { return }
        let N = g.batch, H = g.height, W = g.width, C = g.inChannels, K = g.outChannels, Ho = g.outHeight, Wo = g.outWidth
        let taps = 16 * C, PW = W + 2
        let workers = max(1, min(Parallel.threads, N)), per = (N + workers - 1) / workers
        // partial[w] [16 C][K]
        let partials = (0..<workers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: taps * K) }
        defer { partials.forEach { $0.deallocate() } }
        let xd = x.data, dyd = dy.data
        Parallel.workers(workers) { w in
            let acc = partials[w]
            acc.update(repeating: 0, count: taps * K)
            let pad = UnsafeMutablePointer<Float>.allocate(capacity: (H + 2) * PW * C)
            defer { pad.deallocate() }
            let mine = min(N, w * per)..<min(N, (w + 1) * per)
            for n in mine {
                ImageChannelBlock.pad(xd + n * H * W * C, H, W, C, into: pad)
                let next = n + 1 < mine.upperBound ? UnsafePointer(dyd + (n + 1) * Ho * Wo * K) : nil
                dc_direct_weight_grad(acc, pad, dyd + n * Ho * Wo * K, next, Ho, Wo, C, K)
            }
        }
        // dw[k, t, c] += sum over workers (in order) of partial[w][t * C + c][k]
        let used = (N + per - 1) / per
        let dwd = dw.data
        Parallel.forRanges(K, grain: 8) { r in
            for k in r {
                for tc in 0..<taps {
                    var v = partials[0][tc * K + k]
                    for w in 1..<max(used, 1) { v += partials[w][tc * K + k] }
                    dwd[k * taps + tc] += v
                }
            }
        }
    }
}

/// The image-channel blocks (DiscoGAN's e1: conv C -> K, and d4: transposed conv K -> C, with C
/// = 1...3 image channels, K a multiple of 16), computed directly by the kernels of
/// Sources/_CKernels/direct_conv.c (AVX2 + FMA). As a GEMM, these have an inner dimension of 16 C
/// (e1) or an output width of 16 C (d4), too thin for OpenBLAS's kernels, and im2col/col2im move
/// more data than the products need. The convolution keeps 6 pixels x 16 channels in registers
/// (each weight load feeds 6 FMAs); the transposed one 4 pixels x C channels, as sums over K.
/// Workers take contiguous shares of the batch, one image at a time.
final class ImageChannelBlock: @unchecked Sendable {
    let kind: LayerKind
    let C: Int, K: Int
    /// [ky, kx, c, K] (K contiguous): for e1 the convolution's taps, for d4 the adjoint's.
    private let w: [Float]

    /// Whether `s` is such a block on this CPU (`DirectConv.available`): 4x4 / 2 / 1, at most 3
    /// channels on the image side and a multiple of 16 on the other.
    static func applies(to s: BlockSpec) -> Bool {
        guard DirectConv.available, s.kernel == 4, s.stride == 2, s.padding == 1 else { return false }
        let c = s.kind == .conv ? s.inChannels : s.outChannels, k = s.kind == .conv ? s.outChannels : s.inChannels
        return c <= 3 && k % 16 == 0
    }

    /// Whether the kernels take input x: a conv's input height and width must be even (a
    /// transposed conv takes any).
    func fits(_ x: Tensor) -> Bool {
        kind == .conv ? x.shape[1] % 2 == 0 && x.shape[2] % 2 == 0 : true
    }

    /// `weight`: the (folded) weight in disco's layout [K, 4, 4, C].
    convenience init(spec s: BlockSpec, weight: Tensor) {
        let C = s.kind == .conv ? s.inChannels : s.outChannels, K = s.kind == .conv ? s.outChannels : s.inChannels
        precondition(weight.shape == [K, 4, 4, C], "ImageChannelBlock \(s.name): weight \(weight.shape)")
        self.init(kind: s.kind, weight: weight)
    }

    /// `weight` [K, 4, 4, C] (the convolution's OHWI, or for `.deconv` the adjoint convolution's), C <= 3, K % 16 == 0.
    init(kind: LayerKind, weight: Tensor) {
        precondition(DirectConv.available, "ImageChannelBlock: this CPU lacks AVX2 or FMA")
        self.kind = kind
        C = weight.shape[3]; K = weight.shape[0]
        precondition(weight.shape.count == 4 && weight.shape[1] == 4 && weight.shape[2] == 4 && C <= 3 && K % 16 == 0,
                     "ImageChannelBlock: weight \(weight.shape) is not [K, 4, 4, C] with C <= 3 and K a multiple of 16")
        let C = C, K = K
        var w = [Float](repeating: 0, count: 16 * C * K)
        for k in 0..<K { for tc in 0..<(16 * C) { w[tc * K + k] = weight.data[k * 16 * C + tc] } }
        self.w = w
    }

    /// Copies image n of x [N, H, W, ch] into pad [(H + 2), (W + 2), ch] inside a zero border.
    static func pad(_ x: UnsafePointer<Float>, _ H: Int, _ W: Int, _ ch: Int, into pad: UnsafeMutablePointer<Float>) {
        let rowLen = (W + 2) * ch
        pad.update(repeating: 0, count: rowLen)
        (pad + (H + 1) * rowLen).update(repeating: 0, count: rowLen)
        for y in 0..<H {
            let row = pad + (y + 1) * rowLen
            row.update(repeating: 0, count: ch)
            (row + ch).update(from: x + y * W * ch, count: W * ch)
            (row + (W + 1) * ch).update(repeating: 0, count: ch)
        }
    }

    /// Convolution x [N, H, W, C] -> y [N, H/2, W/2, K], y = activation(y + bias); H, W even.
    /// Per image `dc_direct_forward` on the image copied inside a zero border; without a bias it
    /// applies a leaky ReLU itself, before storing. stream: streaming stores (see the kernel's).
    func convolve(_ x: Tensor, into y: Tensor, bias: [Float], activation: Activation, stream: Bool = false) {
        let N = x.shape[0], H = x.shape[1], W = x.shape[2], Ho = H / 2, Wo = W / 2, C = C, K = K
        precondition(x.shape[3] == C && y.shape == [N, Ho, Wo, K] && H % 2 == 0 && W % 2 == 0, "ImageChannelBlock.convolve: \(x.shape) -> \(y.shape)")
        let xd = x.data, yd = y.data, PW = W + 2
        // In the kernel: max(v, slope v) is the leaky ReLU's v > 0 ? v : slope v, value for value.
        let inKernel = bias.isEmpty && (activation == .identity || activation == .leakyReLU)
        let slope: Float = inKernel && activation == .leakyReLU ? Activation.leakySlope : 1
        let after: Activation = inKernel ? .identity : activation
        w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            let wv = wp.baseAddress!, b = bias.isEmpty ? nil : bp.baseAddress
            Parallel.forRanges(N, grain: 1) { r in
                let pad = UnsafeMutablePointer<Float>.allocate(capacity: (H + 2) * PW * C)
                defer { pad.deallocate() }
                for n in r {
                    ImageChannelBlock.pad(xd + n * H * W * C, H, W, C, into: pad)
                    let out = yd + n * Ho * Wo * K
                    dc_direct_forward(out, pad, wv, Ho, Wo, C, K, slope, stream ? 1 : 0)
                    if b != nil || after != .identity {
                        for p in 0..<(Ho * Wo) { InferenceNetwork.biasActivationRow(out + p * K, K, b, after) }
                    }
                }
            }
        } }
    }

    /// Transposed convolution x [N, H, W, K] -> y [N, 2H, 2W, C], y = activation(y + bias):
    /// per image `dc_direct_transposed` (no border copy: taps outside the image read zeros).
    func transposed(_ x: Tensor, into y: Tensor, bias: [Float], activation: Activation) {
        let N = x.shape[0], H = x.shape[1], W = x.shape[2], Hy = 2 * H, Wy = 2 * W, C = C, K = K
        precondition(x.shape[3] == K && y.shape == [N, Hy, Wy, C], "ImageChannelBlock.transposed: \(x.shape) -> \(y.shape)")
        let xd = x.data, yd = y.data, zero = [Float](repeating: 0, count: K)
        w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in zero.withUnsafeBufferPointer { zp in
            let wv = wp.baseAddress!, b = bias.isEmpty ? nil : bp.baseAddress, z = zp.baseAddress!
            Parallel.forRanges(N, grain: 1) { r in
                for n in r {
                    dc_direct_transposed(yd + n * Hy * Wy * C, xd + n * H * W * K, wv, b, z, H, W, C, K)
                    // The activation over the whole image at once (8-wide for the sigmoid).
                    InferenceNetwork.activate(yd + n * Hy * Wy * C, count: Hy * Wy * C, activation)
                }
            }
        } } }
    }
}
