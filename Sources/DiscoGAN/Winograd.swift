import DiscoCore
#if canImport(Glibc)
import Glibc
#endif

// Winograd convolution for DiscoGAN's 4x4, stride-2, padding-1 convolutions and transposed
// convolutions, at inference.
//
// Space-to-depth turns the strided convolution into a 2x2, stride-1 one. With
// T[i, j][(p, q, c)] = x[2i - 1 + p, 2j - 1 + q, c] (0 outside x), i, j = 0 ... H/2, the conv is
//
//     y[oy, ox, k] = sum over a, b in {0, 1} and (p, q, c) of T[oy + a, ox + b][(p, q, c)] * W[a, b][(p, q, c), k]
//     with W[a, b][(p, q, c), k] = w[k, 2a + p, 2b + q, c]        (w in disco's OHWI layout)
//
// and each m x m tile of y is computed with Winograd's minimal filtering F(m x m, 2 x 2):
//
//     Y = AT [ sum over channels of U (.) (BT D B) ] A,     U = G W G^T,
//
// (m + 1)^2 products per tile instead of 4 m^2: one GEMM [tiles, 4C] x [4C, K] per point of the
// (m + 1) x (m + 1) transform grid. The transposed convolution is the adjoint of that conv (disco
// stores its weight as the adjoint's OHWI), computed as the adjoint of the same algorithm,
//
//     D += B [ U^T (.) (A Y A^T) ] BT,
//
// summed over overlapping tiles into T and so into the output pixels. Both use one weight
// transform U. MACs: 9/16 of the direct convolution's for m = 2, 25/64 for m = 4.

/// The matrices of F(m, 2) (Toom-Cook with the finite points below and infinity), in Float,
/// row-major: AT [m, alpha], G [alpha, 2], BT [alpha, alpha], alpha = m + 1.
struct WinogradF2: Sendable {
    let m: Int, alpha: Int
    let AT: [Float], G: [Float], BT: [Float]

    static let points: [Int: [Double]] = [2: [0, 1], 4: [0, 1, -1, 0.5]]

    init(m: Int) {
        guard let f = WinogradF2.points[m] else { preconditionFailure("WinogradF2: no points for m = \(m)") }
        let alpha = m + 1, n = alpha - 1  // finite points
        self.m = m; self.alpha = alpha
        // Evaluation of a polynomial with `cols` coefficients at each point (last row: infinity).
        func evaluation(_ cols: Int) -> [[Double]] {
            var e = f.map { p in (0..<cols).map { pow(p, Double($0)) } }
            e.append((0..<cols).map { $0 == cols - 1 ? 1 : 0 })
            return e
        }
        // Interpolation C: values at the points (and the leading coefficient at infinity) ->
        // coefficients of the degree alpha - 1 product. BT = C^T.
        var vinv = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        do {  // Gauss-Jordan on the Vandermonde matrix
            var a = f.map { p in (0..<n).map { pow(p, Double($0)) } }
            for i in 0..<n { vinv[i][i] = 1 }
            for col in 0..<n {
                let piv = (col..<n).max { abs(a[$0][col]) < abs(a[$1][col]) }!
                a.swapAt(col, piv); vinv.swapAt(col, piv)
                let d = a[col][col]
                for j in 0..<n { a[col][j] /= d; vinv[col][j] /= d }
                for r in 0..<n where r != col {
                    let k = a[r][col]
                    if k == 0 { continue }
                    for j in 0..<n { a[r][j] -= k * a[col][j]; vinv[r][j] -= k * vinv[col][j] }
                }
            }
        }
        var c = [[Double]](repeating: [Double](repeating: 0, count: alpha), count: alpha)
        for k in 0..<n {
            for i in 0..<n { c[k][i] = vinv[k][i] }
            c[k][n] = -(0..<n).reduce(0.0) { $0 + vinv[k][$1] * pow(f[$1], Double(n)) }
        }
        c[n][n] = 1
        let em = evaluation(m), eg = evaluation(2)
        AT = (0..<m).flatMap { a in (0..<alpha).map { Float(em[$0][a]) } }
        G = eg.flatMap { $0.map(Float.init) }
        BT = (0..<alpha).flatMap { i in (0..<alpha).map { Float(c[$0][i]) } }
    }

    /// Non-zero entries of row r of a row-major [rows, cols] matrix: (column, value).
    static func nonzeros(_ mat: [Float], cols: Int, row r: Int) -> [(Int, Float)] {
        (0..<cols).compactMap { mat[r * cols + $0] != 0 ? ($0, mat[r * cols + $0]) : nil }
    }
    /// Non-zero entries of column c: (row, value).
    static func nonzeros(_ mat: [Float], cols: Int, column c: Int) -> [(Int, Float)] {
        (0..<(mat.count / cols)).compactMap { mat[$0 * cols + c] != 0 ? ($0, mat[$0 * cols + c]) : nil }
    }
}

/// dst[0..<n] (+)= k * src[0..<n]
@inline(__always)
private func axpy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ k: Float, _ n: Int, first: Bool) {
    if first {
        if k == 1 { for i in 0..<n { dst[i] = src[i] } } else if k == -1 { for i in 0..<n { dst[i] = -src[i] } } else { for i in 0..<n { dst[i] = k * src[i] } }
    } else {
        if k == 1 { for i in 0..<n { dst[i] += src[i] } } else if k == -1 { for i in 0..<n { dst[i] -= src[i] } } else { for i in 0..<n { dst[i] += k * src[i] } }
    }
}

/// One 4x4 / stride 2 / padding 1 block run by Winograd F(m x m, 2 x 2): its transformed
/// weights U [alpha^2, 4C, K] (C = channels of the x side, K = of the y side: in and out for a
/// convolution, out and in for a transposed one).
final class WinogradBlock: @unchecked Sendable {
    let kind: LayerKind
    let f: WinogradF2
    let C: Int, K: Int
    let U: Tensor
    // Non-zero coefficients, precomputed for the transform loops.
    private let btRows: [[(Int, Float)]]   // row xi of BT: (i, BT[xi, i])
    private let btCols: [[(Int, Float)]]   // column i of BT: (xi, BT[xi, i])
    private let atRows: [[(Int, Float)]]   // row a of AT: (xi, AT[a, xi])
    private let atCols: [[(Int, Float)]]   // column xi of AT: (a, AT[a, xi])

    /// The tile size to use for a block whose y side is `ySize` x `ySize`, or nil when Winograd
    /// does not apply: it needs the 4x4 / 2 / 1 geometry, whole tiles, and enough channels on
    /// both sides for the GEMMs to be efficient (not the image-channel layers e1 and d4).
    static func tile(for s: BlockSpec, ySize: Int) -> Int? {
        guard s.kernel == 4, s.stride == 2, s.padding == 1 else { return nil }
        let c = s.kind == .conv ? s.inChannels : s.outChannels, k = s.kind == .conv ? s.outChannels : s.inChannels
        guard 4 * c >= 64, k >= 64 else { return nil }
        if ySize >= 8 && ySize % 4 == 0 { return 4 }
        if ySize >= 2 && ySize % 2 == 0 { return 2 }
        return nil
    }

    /// `w`: the block's (folded) weight in disco's layout [K, 4, 4, C] (for a transposed
    /// convolution, the adjoint convolution's OHWI, the same shape with K its input channels).
    init(spec s: BlockSpec, weight w: Tensor, m: Int) {
        kind = s.kind
        f = WinogradF2(m: m)
        C = s.kind == .conv ? s.inChannels : s.outChannels
        K = s.kind == .conv ? s.outChannels : s.inChannels
        precondition(w.shape == [K, 4, 4, C], "WinogradBlock \(s.name): weight \(w.shape), expected [\(K), 4, 4, \(C)]")
        let a = f.alpha, C4 = 4 * C, K = K, C = C, g = f.G
        // W[a, b] as [4C, K] matrices: W[ab][(p, q, c), k] = w[k, 2a + p, 2b + q, c].
        let wt = Tensor(uninitialized: [4, C4, K])
        let src = w.data, dst = wt.data
        Parallel.forRanges(K, grain: 8) { r in
            for k in r {
                for ky in 0..<4 { for kx in 0..<4 {
                    let ab = (ky / 2) * 2 + kx / 2, pq = (ky % 2) * 2 + kx % 2
                    let sp = src + ((k * 4 + ky) * 4 + kx) * C
                    let dp = dst + (ab * C4 + pq * C) * K + k
                    for c in 0..<C { dp[c * K] = sp[c] }
                } }
            }
        }
        // U[xi, eta] = sum over a, b of G[xi, a] G[eta, b] W[a, b].
        U = Tensor(uninitialized: [a * a, C4, K])
        let u = U.data, n = C4 * K
        Parallel.forRanges(n, grain: 1 << 14) { r in
            for xi in 0..<a { for eta in 0..<a {
                let up = u + (xi * a + eta) * n
                var first = true
                for aa in 0..<2 { for bb in 0..<2 {
                    let k = g[xi * 2 + aa] * g[eta * 2 + bb]
                    if k == 0 { continue }
                    axpy(up + r.lowerBound, dst + (aa * 2 + bb) * n + r.lowerBound, k, r.count, first: first)
                    first = false
                } }
                if first { (up + r.lowerBound).update(repeating: 0, count: r.count) }
            } }
        }
        let fm = f
        btRows = (0..<a).map { WinogradF2.nonzeros(fm.BT, cols: a, row: $0) }
        btCols = (0..<a).map { WinogradF2.nonzeros(fm.BT, cols: a, column: $0) }
        atRows = (0..<fm.m).map { WinogradF2.nonzeros(fm.AT, cols: a, row: $0) }
        atCols = (0..<a).map { WinogradF2.nonzeros(fm.AT, cols: a, column: $0) }
    }

    /// Bytes of transform buffers per image at `ySize` (for chunking the batch).
    private func bytesPerImage(ySize: Int) -> Int {
        let tiles = (ySize / f.m) * (ySize / f.m)
        return tiles * f.alpha * f.alpha * (4 * C + K) * 4
    }

    /// Images per chunk: transform buffers within the budget, but enough GEMM rows, when the batch
    /// has them, to amortise packing the [4C, K] weight matrix (once per GEMM call).
    private func chunkImages(_ n: Int, ySize: Int) -> Int {
        let tiles = (ySize / f.m) * (ySize / f.m)
        let minRows = 4 * C * K / 256
        let byBudget = InferenceScratch.budgetBytes / max(1, bytesPerImage(ySize: ySize))
        return max(1, min(n, max(byBudget, (minRows + tiles - 1) / tiles)))
    }

    /// Convolution: x [N, H, W, C] -> y [N, H/2, W/2, K], then y = activation(y + bias).
    func convolve(_ x: Tensor, into y: Tensor, bias: [Float], activation: Activation, scratch: InferenceScratch) {
        let N = x.shape[0], H = x.shape[1], W = x.shape[2]
        precondition(x.shape[3] == C && H % 2 == 0 && W % 2 == 0 && (H / 2) % f.m == 0 && (W / 2) % f.m == 0,
                     "WinogradBlock.convolve: input \(x.shape) does not fit C \(C), m \(f.m)")
        let Ho = H / 2, Wo = W / 2, m = f.m, a = f.alpha, a2 = a * a, C4 = 4 * C, K = K, C = C
        let ty = Ho / m, tx = Wo / m, tiles = ty * tx
        precondition(y.shape == [N, Ho, Wo, K], "WinogradBlock.convolve: output \(y.shape), expected \([N, Ho, Wo, K])")
        let chunk = chunkImages(N, ySize: Ho)
        let V = scratch.v.buffer(a2 * chunk * tiles * C4), M = scratch.m.buffer(a2 * chunk * tiles * K)
        let btRows = btRows, atRows = atRows, blas = BLAS.shared
        let xd = x.data, yd = y.data, u = U.data
        for first in stride(from: 0, to: N, by: chunk) {
            let count = min(chunk, N - first), rows = count * tiles
            // Input transform: V[xi, eta][tile, :] = (BT D B)[xi, eta] of each tile's T window D.
            Parallel.forRanges(count, grain: 1) { r in
                let win = UnsafeMutablePointer<Float>.allocate(capacity: a2 * C4)
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: a2 * C4)
                defer { win.deallocate(); tmp.deallocate() }
                for img in r {
                    let xi0 = xd + (first + img) * H * W * C
                    for t in 0..<tiles {
                        let oy = (t / tx) * m, ox = (t % tx) * m
                        // Gather D[i, j][(p, q, c)] = x[2(oy + i) - 1 + p, 2(ox + j) - 1 + q, c].
                        for i in 0..<a { for p in 0..<2 {
                            let row = 2 * (oy + i) - 1 + p
                            for j in 0..<a {
                                let d = win + (i * a + j) * C4 + p * 2 * C
                                let col = 2 * (ox + j) - 1
                                if row < 0 || row >= H { d.update(repeating: 0, count: 2 * C); continue }
                                let rp = xi0 + row * W * C
                                if col >= 0 && col + 1 < W { d.update(from: rp + col * C, count: 2 * C); continue }
                                if col >= 0 && col < W { d.update(from: rp + col * C, count: C) } else { d.update(repeating: 0, count: C) }
                                if col + 1 >= 0 && col + 1 < W { (d + C).update(from: rp + (col + 1) * C, count: C) } else { (d + C).update(repeating: 0, count: C) }
                            }
                        } }
                        // tmp[xi, j] = sum_i BT[xi, i] D[i, j]; V[xi, eta] = sum_j BT[eta, j] tmp[xi, j]
                        for xi in 0..<a { for j in 0..<a {
                            var firstTerm = true
                            for (i, k) in btRows[xi] { axpy(tmp + (xi * a + j) * C4, win + (i * a + j) * C4, k, C4, first: firstTerm); firstTerm = false }
                            if firstTerm { (tmp + (xi * a + j) * C4).update(repeating: 0, count: C4) }
                        } }
                        let row = img * tiles + t
                        for xi in 0..<a { for eta in 0..<a {
                            let v = V + ((xi * a + eta) * rows + row) * C4
                            var firstTerm = true
                            for (j, k) in btRows[eta] { axpy(v, tmp + (xi * a + j) * C4, k, C4, first: firstTerm); firstTerm = false }
                            if firstTerm { v.update(repeating: 0, count: C4) }
                        } }
                    }
                }
            }
            // One GEMM per transform point: M[p] [rows, K] = V[p] [rows, 4C] x U[p] [4C, K].
            for p in 0..<a2 {
                blas.sgemm(m: rows, n: K, k: C4, a: V + p * rows * C4, lda: C4, b: u + p * C4 * K, ldb: K,
                           c: M + p * rows * K, ldc: K)
            }
            // Output transform: Y = AT M A, then bias and activation, into y.
            bias.withUnsafeBufferPointer { bp in
                let b = bias.isEmpty ? nil : bp.baseAddress
                Parallel.forRanges(count, grain: 1) { r in
                    let tmp = UnsafeMutablePointer<Float>.allocate(capacity: m * a * K)
                    defer { tmp.deallocate() }
                    for img in r {
                        let yi0 = yd + (first + img) * Ho * Wo * K
                        for t in 0..<tiles {
                            let oy = (t / tx) * m, ox = (t % tx) * m, row = img * tiles + t
                            // tmp[r, eta] = sum_xi AT[r, xi] M[xi, eta]
                            for rr in 0..<m { for eta in 0..<a {
                                var firstTerm = true
                                for (xi, k) in atRows[rr] { axpy(tmp + (rr * a + eta) * K, M + ((xi * a + eta) * rows + row) * K, k, K, first: firstTerm); firstTerm = false }
                            } }
                            for rr in 0..<m { for s in 0..<m {
                                let out = yi0 + ((oy + rr) * Wo + ox + s) * K
                                var firstTerm = true
                                for (eta, k) in atRows[s] { axpy(out, tmp + (rr * a + eta) * K, k, K, first: firstTerm); firstTerm = false }
                                InferenceNetwork.biasActivationRow(out, K, b, activation)
                            } }
                        }
                    }
                }
            }
        }
    }

    /// Transposed convolution: x [N, H, W, K] -> y [N, 2H, 2W, C], then y = activation(y + bias).
    func transposed(_ x: Tensor, into y: Tensor, bias: [Float], activation: Activation, scratch: InferenceScratch) {
        let N = x.shape[0], H = x.shape[1], W = x.shape[2]
        precondition(x.shape[3] == K && H % f.m == 0 && W % f.m == 0,
                     "WinogradBlock.transposed: input \(x.shape) does not fit K \(K), m \(f.m)")
        let Hy = 2 * H, Wy = 2 * W, m = f.m, a = f.alpha, a2 = a * a, C4 = 4 * C, K = K, C = C
        let ty = H / m, tx = W / m, tiles = ty * tx
        precondition(y.shape == [N, Hy, Wy, C], "WinogradBlock.transposed: output \(y.shape), expected \([N, Hy, Wy, C])")
        let chunk = chunkImages(N, ySize: H)
        let Z = scratch.m.buffer(a2 * chunk * tiles * K), Q = scratch.v.buffer(a2 * chunk * tiles * C4)
        let btCols = btCols, atCols = atCols, blas = BLAS.shared
        let xd = x.data, yd = y.data, u = U.data
        for first in stride(from: 0, to: N, by: chunk) {
            let count = min(chunk, N - first), rows = count * tiles
            // Input transform: Z[xi, eta][tile, :] = (A X A^T)[xi, eta] of each m x m tile X of x.
            Parallel.forRanges(count, grain: 1) { r in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: a * m * K)
                defer { tmp.deallocate() }
                for img in r {
                    let xi0 = xd + (first + img) * H * W * K
                    for t in 0..<tiles {
                        let oy = (t / tx) * m, ox = (t % tx) * m, row = img * tiles + t
                        // tmp[xi, s] = sum_r AT[r, xi] X[r, s]
                        for xi in 0..<a { for s in 0..<m {
                            var firstTerm = true
                            for (rr, k) in atCols[xi] { axpy(tmp + (xi * m + s) * K, xi0 + ((oy + rr) * W + ox + s) * K, k, K, first: firstTerm); firstTerm = false }
                        } }
                        for xi in 0..<a { for eta in 0..<a {
                            let z = Z + ((xi * a + eta) * rows + row) * K
                            var firstTerm = true
                            for (s, k) in atCols[eta] { axpy(z, tmp + (xi * m + s) * K, k, K, first: firstTerm); firstTerm = false }
                        } }
                    }
                }
            }
            // Q[p] [rows, 4C] = Z[p] [rows, K] x U[p]^T.
            for p in 0..<a2 {
                blas.sgemm(transB: true, m: rows, n: C4, k: K, a: Z + p * rows * K, lda: K, b: u + p * C4 * K, ldb: K,
                           c: Q + p * rows * C4, ldc: C4)
            }
            // Output transform: D = B Q BT, added into the T window of each tile, i.e. into the
            // pixels y[2(oy + i) - 1 + p, 2(ox + j) - 1 + q] (windows of neighbouring tiles overlap).
            Parallel.forRanges(count, grain: 1) { r in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: a * a * C4)
                let d = UnsafeMutablePointer<Float>.allocate(capacity: C4)
                defer { tmp.deallocate(); d.deallocate() }
                for img in r {
                    let yi0 = yd + (first + img) * Hy * Wy * C
                    yi0.update(repeating: 0, count: Hy * Wy * C)
                    for t in 0..<tiles {
                        let oy = (t / tx) * m, ox = (t % tx) * m, row = img * tiles + t
                        // tmp[i, eta] = sum_xi BT[xi, i] Q[xi, eta]
                        for i in 0..<a { for eta in 0..<a {
                            var firstTerm = true
                            for (xi, k) in btCols[i] { axpy(tmp + (i * a + eta) * C4, Q + ((xi * a + eta) * rows + row) * C4, k, C4, first: firstTerm); firstTerm = false }
                            if firstTerm { (tmp + (i * a + eta) * C4).update(repeating: 0, count: C4) }
                        } }
                        for i in 0..<a { for j in 0..<a {
                            var firstTerm = true
                            for (eta, k) in btCols[j] { axpy(d, tmp + (i * a + eta) * C4, k, C4, first: firstTerm); firstTerm = false }
                            if firstTerm { continue }
                            for p in 0..<2 {
                                let py = 2 * (oy + i) - 1 + p
                                if py < 0 || py >= Hy { continue }
                                for q in 0..<2 {
                                    let px = 2 * (ox + j) - 1 + q
                                    if px < 0 || px >= Wy { continue }
                                    let dst = yi0 + (py * Wy + px) * C, src = d + (p * 2 + q) * C
                                    for c in 0..<C { dst[c] += src[c] }
                                }
                            }
                        } }
                    }
                }
            }
        }
        InferenceNetwork.biasActivation(yd, rows: N * Hy * Wy, channels: C, bias: bias, activation: activation)
    }
}

/// Per-stream scratch of `InferenceNetwork.forward`: im2col columns for the direct convolutions,
/// transform buffers for the Winograd ones, and two buffers the intermediate activations take
/// turns in. Reused from call to call, so a stream's steady state allocates (and page-faults)
/// nothing. Concurrent forwards need one each.
public final class InferenceScratch: @unchecked Sendable {
    /// Upper bound of one transform buffer; the batch is processed in chunks that fit.
    static let budgetBytes = 8 << 20
    let conv: Workspace, v = Workspace(), m = Workspace()
    private var activations: [Tensor?] = [nil, nil]

    public init(conv: Workspace = Workspace()) { self.conv = conv }

    /// A tensor of `shape` in activation buffer `which` (0 or 1), valid until that buffer's next use.
    func activation(_ which: Int, shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        if (activations[which]?.count ?? -1) < n { activations[which] = nil; activations[which] = Tensor(uninitialized: [n]) }
        return Tensor(viewOf: activations[which]!, offset: 0, shape: shape)
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
    init(spec s: BlockSpec, weight: Tensor) {
        kind = s.kind
        C = s.kind == .conv ? s.inChannels : s.outChannels
        K = s.kind == .conv ? s.outChannels : s.inChannels
        precondition(weight.shape == [K, 4, 4, C], "ImageChannelBlock \(s.name): weight \(weight.shape)")
        let K8 = K / 8, C = C, K = K
        var w = [SIMD8<Float>](repeating: .zero, count: 16 * C * K8)
        for k in 0..<K { for t in 0..<16 { for c in 0..<C {
            w[(t * C + c) * K8 + k / 8][k % 8] = weight.data[(k * 16 + t) * C + c]
        } } }
        self.w = w
    }

    /// Copies image n of x [N, H, W, ch] into pad [(H + 2), (W + 2), ch] inside a zero border.
    private static func pad(_ x: UnsafePointer<Float>, _ H: Int, _ W: Int, _ ch: Int, into pad: UnsafeMutablePointer<Float>) {
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
