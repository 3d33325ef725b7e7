#if canImport(Glibc)
import Glibc
#endif

/// Training's use of the direct image-channel kernels (`ImageChannelBlock`) as convolution passes,
/// for the geometries they fit: 4x4 / stride 2 / padding 1, C <= 3 input channels, K a multiple of
/// 32 output channels. Layouts as Conv's: x [N, H, W, C], y [N, H/2, W/2, K], w [K, 4, 4, C].
/// The forward is `convolve`; the input gradient (a transposed convolution's forward) is
/// `transposed`; the weight gradient is `backwardWeight` (register-blocked sums over the pixels).
public enum DirectConv {
    /// Whether `pass` of `g` has a direct kernel: forward needs K a multiple of 32, H even and W a
    /// multiple of 4; the input gradient K a multiple of 32 and Wo a multiple of 4; the weight
    /// gradient K a multiple of 16.
    public static func applies(_ g: ConvGeometry, _ pass: ConvPass) -> Bool {
        guard g.kernelH == 4 && g.kernelW == 4 && g.stride == 2 && g.padding == 1,
              g.inChannels <= 3, g.height % 2 == 0, g.width % 2 == 0 else { return false }
        switch pass {
        case .forward: return g.outChannels % 32 == 0 && g.width % 4 == 0
        case .inputGradient: return g.outChannels % 32 == 0 && g.outWidth % 4 == 0
        case .weightGradient: return g.outChannels % 16 == 0
        }
    }

    /// y = conv(x, w): y [N, Ho, Wo, K], x [N, H, W, C], w [K, 4, 4, C].
    public static func forward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry) {
        precondition(applies(g, .forward), "DirectConv forward: no direct kernel for \(g)")
        Conv.check(y, g.outputShape, "y", "direct conv forward", g); Conv.check(x, g.inputShape, "x", "direct conv forward", g)
        Conv.check(w, g.weightShape, "w", "direct conv forward", g)
        if g.batch == 0 { return }
        ImageChannelBlock(kind: .conv, weight: w).convolve(x, into: y, bias: [], activation: .identity)
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
    /// The 16C taps (ky, kx, c) are taken 4 at a time and the K channels 16 at a time (two SIMD8):
    /// 8 accumulators walk all pixels of an image (4 broadcast x loads and 2 vector dy loads per 8
    /// FMAs), the image first copied inside a zero border. Workers take contiguous shares of the
    /// batch, sum into partials of their own, and the partials are added in worker order (results
    /// do not depend on timing).
    public static func backwardWeight(dw: Tensor, x: Tensor, dy: Tensor, g: ConvGeometry) {
        precondition(applies(g, .weightGradient), "DirectConv weight gradient: no direct kernel for \(g)")
        Conv.check(dw, g.weightShape, "dw", "direct conv weight gradient", g); Conv.check(x, g.inputShape, "x", "direct conv weight gradient", g)
        Conv.check(dy, g.outputShape, "dy", "direct conv weight gradient", g)
        if g.batch == 0 { return }
        let N = g.batch, H = g.height, W = g.width, C = g.inChannels, K = g.outChannels, Ho = g.outHeight, Wo = g.outWidth
        let K8 = K / 8, taps = 16 * C, PW = W + 2
        let workers = max(1, min(Parallel.threads, N)), per = (N + workers - 1) / workers
        // partial[w] [taps][K8] (SIMD8 over K)
        let partials = (0..<workers).map { _ in UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: taps * K8) }
        defer { partials.forEach { $0.deallocate() } }
        let xd = x.data, dyd = dy.data
        Parallel.workers(workers) { w in
            let acc = partials[w]
            acc.update(repeating: .zero, count: taps * K8)
            let pad = UnsafeMutablePointer<Float>.allocate(capacity: (H + 2) * PW * C)
            defer { pad.deallocate() }
            var offsets = [Int](repeating: 0, count: taps)
            for t in 0..<16 { for c in 0..<C { offsets[t * C + c] = ((t / 4) * PW + t % 4) * C + c } }
            for n in min(N, w * per)..<min(N, (w + 1) * per) {
                ImageChannelBlock.pad(xd + n * H * W * C, H, W, C, into: pad)
                let dimg = UnsafeRawPointer(dyd + n * Ho * Wo * K)
                for tg in stride(from: 0, to: taps, by: 4) {
                    let o0 = offsets[tg], o1 = offsets[tg + 1], o2 = offsets[tg + 2], o3 = offsets[tg + 3]
                    for kb in stride(from: 0, to: K8, by: 2) {
                        var a0 = SIMD8<Float>.zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0
                        for oy in 0..<Ho {
                            let row = pad + 2 * oy * PW * C
                            let drow = dimg + (oy * Wo * K + 8 * kb) * 4
                            for ox in 0..<Wo {
                                let p = row + 2 * ox * C
                                let d = drow + ox * K * 4
                                let d0 = d.loadUnaligned(as: SIMD8<Float>.self), d1 = d.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                                let x0 = SIMD8<Float>(repeating: p[o0]), x1 = SIMD8<Float>(repeating: p[o1])
                                let x2 = SIMD8<Float>(repeating: p[o2]), x3 = SIMD8<Float>(repeating: p[o3])
                                a0 = a0.addingProduct(x0, d0); b0 = b0.addingProduct(x0, d1)
                                a1 = a1.addingProduct(x1, d0); b1 = b1.addingProduct(x1, d1)
                                a2 = a2.addingProduct(x2, d0); b2 = b2.addingProduct(x2, d1)
                                a3 = a3.addingProduct(x3, d0); b3 = b3.addingProduct(x3, d1)
                            }
                        }
                        let q = acc + tg * K8 + kb
                        q[0] += a0; q[1] += b0; q[K8] += a1; q[K8 + 1] += b1
                        q[2 * K8] += a2; q[2 * K8 + 1] += b2; q[3 * K8] += a3; q[3 * K8 + 1] += b3
                    }
                }
            }
        }
        // dw[k, t, c] += sum over workers (in order) of partial[w][t * C + c][k]
        let used = (N + per - 1) / per
        let dwd = dw.data
        Parallel.forRanges(K, grain: 8) { r in
            for k in r {
                for tc in 0..<taps {
                    var v = partials[0][tc * K8 + k / 8][k % 8]
                    for w in 1..<max(used, 1) { v += partials[w][tc * K8 + k / 8][k % 8] }
                    dwd[k * taps + tc] += v
                }
            }
        }
    }
}

/// The image-channel blocks (DiscoGAN's e1: conv C -> K, and d4: transposed conv K -> C, with C
/// = 1 or 3 image channels), computed directly with 8-wide vectors over the K channels. As a
/// GEMM, these have an inner dimension of 16 C (e1) or an output width of 16 C (d4), too thin for
/// OpenBLAS's kernels, and im2col/col2im move more data than the products need. Each image is
/// first copied into a zero-bordered buffer, so the loops need no bounds checks; the inner loops
/// keep 8 (e1) or 4 C (d4) independent accumulators, enough to keep the FMA units busy.
final class ImageChannelBlock: @unchecked Sendable {
    let kind: LayerKind
    let C: Int, K: Int
    /// [ky, kx, c, K] (8-wide vectors over K): for e1 the convolution's taps, for d4 the adjoint's.
    private let w: [SIMD8<Float>]

    /// Whether `s` is such a block: 4x4 / 2 / 1, at most 3 channels on the image side and a
    /// multiple of 32 on the other.
    static func applies(to s: BlockSpec) -> Bool {
        guard s.kernel == 4, s.stride == 2, s.padding == 1 else { return false }
        let c = s.kind == .conv ? s.inChannels : s.outChannels, k = s.kind == .conv ? s.outChannels : s.inChannels
        return c <= 3 && k % 32 == 0
    }

    /// Whether the kernels take input x: a conv's output width must be even, a transposed
    /// conv's input width a multiple of 4.
    func fits(_ x: Tensor) -> Bool {
        kind == .conv ? x.shape[2] % 4 == 0 && x.shape[1] % 2 == 0 : x.shape[2] % 4 == 0
    }

    /// `weight`: the (folded) weight in disco's layout [K, 4, 4, C].
    convenience init(spec s: BlockSpec, weight: Tensor) {
        let C = s.kind == .conv ? s.inChannels : s.outChannels, K = s.kind == .conv ? s.outChannels : s.inChannels
        precondition(weight.shape == [K, 4, 4, C], "ImageChannelBlock \(s.name): weight \(weight.shape)")
        self.init(kind: s.kind, weight: weight)
    }

    /// `weight` [K, 4, 4, C] (the convolution's OHWI, or for `.deconv` the adjoint convolution's), C <= 3, K % 32 == 0.
    init(kind: LayerKind, weight: Tensor) {
        self.kind = kind
        C = weight.shape[3]; K = weight.shape[0]
        precondition(weight.shape.count == 4 && weight.shape[1] == 4 && weight.shape[2] == 4 && C <= 3 && K % 32 == 0,
                     "ImageChannelBlock: weight \(weight.shape) is not [K, 4, 4, C] with C <= 3 and K a multiple of 32")
        let K8 = K / 8, C = C, K = K
        var w = [SIMD8<Float>](repeating: .zero, count: 16 * C * K8)
        for k in 0..<K { for t in 0..<16 { for c in 0..<C {
            w[(t * C + c) * K8 + k / 8][k % 8] = weight.data[(k * 16 + t) * C + c]
        } } }
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

    /// Convolution x [N, H, W, C] -> y [N, H/2, W/2, K], y = activation(y + bias). H, W multiples of 4.
    func convolve(_ x: Tensor, into y: Tensor, bias: [Float], activation: Activation) {
        let N = x.shape[0], H = x.shape[1], W = x.shape[2], Ho = H / 2, Wo = W / 2, C = C, K = K, K8 = K / 8
        precondition(x.shape[3] == C && y.shape == [N, Ho, Wo, K] && Wo % 2 == 0, "ImageChannelBlock.convolve: \(x.shape) -> \(y.shape)")
        let xd = x.data, yd = y.data, PW = W + 2
        w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            let wv = wp.baseAddress!, b = bias.isEmpty ? nil : bp.baseAddress
            Parallel.forRanges(N, grain: 1) { r in
                let pad = UnsafeMutablePointer<Float>.allocate(capacity: (H + 2) * PW * C)
                defer { pad.deallocate() }
                for n in r {
                    ImageChannelBlock.pad(xd + n * H * W * C, H, W, C, into: pad)
                    for oy in 0..<Ho {
                        for ox in stride(from: 0, to: Wo, by: 2) {
                            let out0 = yd + ((n * Ho + oy) * Wo + ox) * K, out1 = out0 + K
                            for kb in stride(from: 0, to: K8, by: 4) {
                                // Pixels ox and ox + 1, channels 8 kb ..< 8 kb + 32.
                                var a0 = SIMD8<Float>.zero, a1 = a0, a2 = a0, a3 = a0
                                var b0 = a0, b1 = a0, b2 = a0, b3 = a0
                                for ky in 0..<4 {
                                    let row = pad + (2 * oy + ky) * PW * C
                                    for kx in 0..<4 {
                                        let p0 = row + (2 * ox + kx) * C, p1 = p0 + 2 * C
                                        for c in 0..<C {
                                            let wt = wv + ((ky * 4 + kx) * C + c) * K8 + kb
                                            let x0 = SIMD8<Float>(repeating: p0[c]), x1 = SIMD8<Float>(repeating: p1[c])
                                            let w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3]
                                            a0 = a0.addingProduct(x0, w0); a1 = a1.addingProduct(x0, w1)
                                            a2 = a2.addingProduct(x0, w2); a3 = a3.addingProduct(x0, w3)
                                            b0 = b0.addingProduct(x1, w0); b1 = b1.addingProduct(x1, w1)
                                            b2 = b2.addingProduct(x1, w2); b3 = b3.addingProduct(x1, w3)
                                        }
                                    }
                                }
                                let o0 = UnsafeMutableRawPointer(out0 + 8 * kb), o1 = UnsafeMutableRawPointer(out1 + 8 * kb)
                                o0.storeBytes(of: a0, as: SIMD8<Float>.self); (o0 + 32).storeBytes(of: a1, as: SIMD8<Float>.self)
                                (o0 + 64).storeBytes(of: a2, as: SIMD8<Float>.self); (o0 + 96).storeBytes(of: a3, as: SIMD8<Float>.self)
                                o1.storeBytes(of: b0, as: SIMD8<Float>.self); (o1 + 32).storeBytes(of: b1, as: SIMD8<Float>.self)
                                (o1 + 64).storeBytes(of: b2, as: SIMD8<Float>.self); (o1 + 96).storeBytes(of: b3, as: SIMD8<Float>.self)
                            }
                            InferenceNetwork.biasActivationRow(out0, K, b, activation)
                            InferenceNetwork.biasActivationRow(out1, K, b, activation)
                        }
                    }
                }
            }
        } }
    }

    /// Transposed convolution x [N, H, W, K] -> y [N, 2H, 2W, C], y = activation(y + bias).
    /// W a multiple of 4. Output pixel (Y, X) takes the input rows iy with ky = Y + 1 - 2 iy in
    /// 0..<4 (two of them), and the same for columns: four input pixels, K channels each.
    /// Pixels X, X + 2, X + 4, X + 6 share their taps and are computed together.
    func transposed(_ x: Tensor, into y: Tensor, bias: [Float], activation: Activation) {
        let N = x.shape[0], H = x.shape[1], W = x.shape[2], Hy = 2 * H, Wy = 2 * W, C = C, K = K, K8 = K / 8
        precondition(x.shape[3] == K && y.shape == [N, Hy, Wy, C] && W % 4 == 0, "ImageChannelBlock.transposed: \(x.shape) -> \(y.shape)")
        let xd = x.data, yd = y.data, PW = W + 2
        w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            let wv = wp.baseAddress!, b = bias.isEmpty ? nil : bp.baseAddress
            Parallel.forRanges(N, grain: 1) { r in
                let pad = UnsafeMutablePointer<Float>.allocate(capacity: (H + 2) * PW * K)
                defer { pad.deallocate() }
                for n in r {
                    ImageChannelBlock.pad(xd + n * H * W * K, H, W, K, into: pad)
                    for Y in 0..<Hy {
                        let outRow = yd + (n * Hy + Y) * Wy * C
                        for parity in 0..<2 {
                            for g in stride(from: 0, to: W, by: 4) {
                                let X0 = parity + 2 * g  // pixels X0, X0 + 2, X0 + 4, X0 + 6
                                var a0 = SIMD8<Float>.zero, a1 = a0, a2 = a0, a3 = a0  // channel 0
                                var b0 = a0, b1 = a0, b2 = a0, b3 = a0                  // channel 1
                                var c0 = a0, c1 = a0, c2 = a0, c3 = a0                  // channel 2
                                for ky in stride(from: (Y + 1) % 2, to: 4, by: 2) {
                                    let py = (Y + 1 - ky) / 2 + 1
                                    for kx in stride(from: (X0 + 1) % 2, to: 4, by: 2) {
                                        let px = (X0 + 1 - kx) / 2 + 1
                                        let src = UnsafeRawPointer(pad + (py * PW + px) * K)
                                        let wt = wv + (ky * 4 + kx) * C * K8
                                        for j in 0..<K8 {
                                            let x0 = src.loadUnaligned(fromByteOffset: 32 * j, as: SIMD8<Float>.self)
                                            let x1 = src.loadUnaligned(fromByteOffset: 4 * K + 32 * j, as: SIMD8<Float>.self)
                                            let x2 = src.loadUnaligned(fromByteOffset: 8 * K + 32 * j, as: SIMD8<Float>.self)
                                            let x3 = src.loadUnaligned(fromByteOffset: 12 * K + 32 * j, as: SIMD8<Float>.self)
                                            let w0 = wt[j]
                                            a0 = a0.addingProduct(x0, w0); a1 = a1.addingProduct(x1, w0)
                                            a2 = a2.addingProduct(x2, w0); a3 = a3.addingProduct(x3, w0)
                                            if C > 1 {
                                                let w1 = wt[K8 + j]
                                                b0 = b0.addingProduct(x0, w1); b1 = b1.addingProduct(x1, w1)
                                                b2 = b2.addingProduct(x2, w1); b3 = b3.addingProduct(x3, w1)
                                            }
                                            if C > 2 {
                                                let w2 = wt[2 * K8 + j]
                                                c0 = c0.addingProduct(x0, w2); c1 = c1.addingProduct(x1, w2)
                                                c2 = c2.addingProduct(x2, w2); c3 = c3.addingProduct(x3, w2)
                                            }
                                        }
                                    }
                                }
                                @inline(__always) func store(_ q: Int, _ u: SIMD8<Float>, _ v: SIMD8<Float>, _ t: SIMD8<Float>) {
                                    let out = outRow + (X0 + 2 * q) * C
                                    out[0] = u.sum()
                                    if C > 1 { out[1] = v.sum() }
                                    if C > 2 { out[2] = t.sum() }
                                    if let b { for c in 0..<C { out[c] += b[c] } }
                                }
                                store(0, a0, b0, c0); store(1, a1, b1, c1); store(2, a2, b2, c2); store(3, a3, b3, c3)
                            }
                        }
                    }
                    // The activation over the whole image at once (8-wide for the sigmoid).
                    InferenceNetwork.activate(yd + n * Hy * Wy * C, count: Hy * Wy * C, activation)
                }
            }
        } }
    }
}
