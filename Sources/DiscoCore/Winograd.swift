#if canImport(Glibc)
import Glibc
#endif

// Winograd F(2x2, 2x2) for the 4x4, stride-2, padding-1 convolutions of DiscoGAN (and, through
// the adjoint, its transposed convolutions). Layouts as in Conv.swift: x [N, H, W, C],
// y [N, Ho, Wo, K], w [K, 4, 4, C] (OHWI).
//
// 1. Space-to-depth. Let xpad be x padded by one zero on each side (xpad[r] = x[r - 1]). With
//      u[n, j, i, (by, bx, c)] = xpad[n, 2j + by, 2i + bx, c]     j in 0...H/2, i in 0...W/2 (4C channels)
//      w'[k, ay, ax, (by, bx, c)] = w[k, 2ay + by, 2ax + bx, c]  ay, ax in {0, 1}
//    the 4x4 stride-2 pad-1 convolution is a 2x2 stride-1 valid convolution of u with w':
//      y[n, oy, ox, k] = sum_{ay, ax} sum_q u[n, oy + ay, ox + ax, q] * w'[k, ay, ax, q],  Ho = H/2.
//    (Eligible: kernel 4x4, stride 2, padding 1, H and W even.)
// 2. F(2, 2) in 1-D, for the correlation y0 = d0 g0 + d1 g1, y1 = d1 g0 + d2 g1:
//      m1 = (d0 - d1) g0,  m2 = d1 (g0 + g1),  m3 = (d2 - d1) g1,  y0 = m1 + m2,  y1 = m2 + m3,
//    i.e. y = A^T [(G g) .* (B^T d)] with
//      B^T = [[1, -1, 0], [0, 1, 0], [0, -1, 1]],  G = [[1, 0], [1, 1], [0, 1]],  A^T = [[1, 1, 0], [0, 1, 1]].
//    In 2-D, for a 2x2 output tile at (2ty, 2tx) of the u-convolution, d = the 3x3 tile of u at
//    (2ty, 2tx), g = w'[k, :, :, q]:  V = B^T d B,  U = G g G^T,  Y = A^T (sum_q V .* U) A.
//    Only coefficients +-1 occur, so the transforms add no rounding beyond a few additions.
// 3. Forward: V[xi nu][t, q] for the 9 positions (xi, nu) and tiles t; 9 GEMMs
//      M[xi nu][t, k] = sum_q V[xi nu][t, q] U[xi nu][k, q]   ([tiles x 4C] * [4C x K])
//    then Y = A^T M A per tile, written into y (outputs past Ho x Wo, when Ho or Wo is odd, are
//    dropped; input beyond the padded edge is zero).
//    Input gradient (also the transposed convolution's forward): dM = A dY A^T per tile;
//      dV[xi nu] = dM[xi nu] U[xi nu]   (9 GEMMs [tiles x K] * [K x 4C]);
//    dd = B dV B^T per tile, added into du (neighbouring tiles share a row / column of u), and
//    dx = du seen as xpad without its padding (depth-to-space): each du element is one dx element,
//    so the tiles are added straight into dx.
//    Weight gradient: dU[xi nu] += dM[xi nu]^T V[xi nu] (9 GEMMs [K x tiles] * [tiles x 4C]) into
//    per-worker partials, summed in worker order; dg = G^T dU G per (k, q); dw += dg moved back
//    from w' to w's layout.
//    GEMM multiply-adds per 2x2 output tile: 9 * 4C * K, against 4 * 16C * K for im2col: 16/9 fewer.
//
// Memory: V and M of a chunk are [9][tiles][4C] and [9][tiles][K] (tile t = (image, ty, tx) in
// order), so each of the 9 GEMMs is a plain row-major GEMM on contiguous blocks; U is [9][K][4C]
// (rows in w's order) and serves the forward (B transposed) and the input gradient (B as is); the
// weight-gradient partials are [9][K][4C] too. The batch is split as in Conv (Conv.Plan): each worker
// takes a contiguous share of images and walks it in chunks whose V and M fit Conv.columnBudgetBytes,
// doing its own transforms and single-threaded sgemm calls. The transforms are loops over contiguous
// channels, 8 at a time (SIMD8), then one at a time for the rest.

/// How Conv's passes compute the 4x4 stride-2 pad-1 convolutions (other geometries always use im2col).
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    /// Winograd where it measured faster (`Winograd.preferred`), im2col elsewhere.
    case auto
    /// im2col + GEMM for every convolution.
    case im2col
    /// Winograd F(2x2, 2x2) wherever the geometry allows it.
    case winograd

    /// `DISCO_CONV=auto|im2col|winograd`; unset means auto. Any other value is reported and ignored.
    static func fromEnvironment() -> ConvAlgorithm {
        guard let s = ProcessInfoLite.environment["DISCO_CONV"], !s.isEmpty else { return .auto }
        if let a = ConvAlgorithm(rawValue: s.lowercased()) { return a }
        fputs("disco: DISCO_CONV=\(s) is not one of \(allCases.map(\.rawValue).joined(separator: ", ")); using auto\n", stderr)
        return .auto
    }
}

/// The three passes of a convolution.
public enum ConvPass: Sendable { case forward, inputGradient, weightGradient }

extension Conv {
    /// The algorithm for eligible convolutions; read once from `DISCO_CONV` (default auto).
    nonisolated(unsafe) public static var algorithm: ConvAlgorithm = .fromEnvironment()

    /// Whether `pass` of geometry `g` runs Winograd under the current `algorithm`.
    public static func usesWinograd(_ g: ConvGeometry, _ pass: ConvPass) -> Bool {
        guard Winograd.isEligible(g) else { return false }
        switch algorithm {
        case .im2col: return false
        case .winograd: return true
        case .auto: return Winograd.preferred(g, pass)
        }
    }
}

public enum Winograd {
    typealias P = UnsafePointer<Float>
    typealias MP = UnsafeMutablePointer<Float>

    /// Kernel 4x4, stride 2, padding 1, even input height and width.
    public static func isEligible(_ g: ConvGeometry) -> Bool {
        g.kernelH == 4 && g.kernelW == 4 && g.stride == 2 && g.padding == 1 && g.height % 2 == 0 && g.width % 2 == 0
    }

    /// The `auto` rule: Winograd where it measured faster than im2col (bench kernels, interleaved runs):
    /// every pass of the layers with >= 16 input and output channels (e2-e5, d0-d3, c2-c4b: about
    /// 1.3-2x im2col's effective GFLOP/s at 32, 64 and 128). The 3-channel layers (e1, c1, d4; 4C = 12
    /// makes thin GEMMs and transform-bound passes) were as fast or faster with im2col and keep it.
    public static func preferred(_ g: ConvGeometry, _ pass: ConvPass) -> Bool {
        isEligible(g) && g.inChannels >= 16 && g.outChannels >= 16
    }

    /// Tile grid of one image: 2x2 output tiles, the last row / column half used when Ho / Wo is odd.
    static func tileRows(_ g: ConvGeometry) -> Int { (g.outHeight + 1) / 2 }
    static func tileCols(_ g: ConvGeometry) -> Int { (g.outWidth + 1) / 2 }
    static func tilesPerImage(_ g: ConvGeometry) -> Int { tileRows(g) * tileCols(g) }

    /// Images per chunk so that one chunk's V and M ([9][tiles][4C] + [9][tiles][K]) fit `limitBytes`.
    static func imagesPerChunk(_ g: ConvGeometry, limitBytes: Int = Conv.columnBudgetBytes) -> Int {
        let perImage = tilesPerImage(g) * 9 * (4 * g.inChannels + g.outChannels) * 4
        return max(1, min(g.batch, limitBytes / max(perImage, 1)))
    }

    @inline(__always) static func round16(_ n: Int) -> Int { (n + 15) / 16 * 16 }

    /// A worker's transform buffers: `a` holds V or dV ([9][tiles][4C]), `b` M or dM ([9][tiles][K]);
    /// `sink` (max(C, K) floats) receives the stores of outputs that fall outside the image.
    struct Buffers { let a, b, sink: MP }

    /// Winograd's use of `Conv.splitBatch`, holding the workspace lock: `prepare(shared)` fills the
    /// buffer all workers read (zeros, U); then each worker runs
    /// `body(worker, buffers, reserved, shared, firstChunkOfWorker, first, count)` over its share,
    /// `reserved` being `reserve` floats of its own (weight-gradient partials); then
    /// `finish(reserved areas of the workers that had images, in worker order)`.
    static func run(_ g: ConvGeometry, _ workspace: Workspace, reserve: Int, shared sharedCount: Int,
                    prepare: (MP) -> Void,
                    body: (Int, Buffers, MP, P, Bool, Int, Int) -> Void,
                    finish: ([MP]) -> Void = { _ in }) {
        workspace.lock.lock(); defer { workspace.lock.unlock() }
        let plan = Conv.Plan(batch: g.batch, imagesPerChunk: imagesPerChunk(g))
        let tiles = plan.chunk * tilesPerImage(g)
        let r = round16(reserve), a = round16(tiles * 9 * 4 * g.inChannels), b = round16(tiles * 9 * g.outChannels)
        let total = r + a + b + round16(max(g.inChannels, g.outChannels))
        let shared = workspace.sharedBuffer(sharedCount)
        prepare(shared)
        let used = Conv.splitBatch(plan, batch: g.batch, floatsPerWorker: total, workspace) { w, base, first, count, firstOfWorker in
            body(w, Buffers(a: base + r, b: base + r + a, sink: base + r + a + b), base, UnsafePointer(shared),
                 firstOfWorker, first, count)
        }
        finish(used)
    }

    // MARK: the three passes

    /// y = conv(x, w) for an eligible geometry. y [N, Ho, Wo, K], x [N, H, W, C], w [K, 4, 4, C].
    public static func forward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        precondition(isEligible(g), "Winograd forward: \(g) is not a 4x4 stride-2 pad-1 convolution of an even-sized input")
        Conv.check(y, g.outputShape, "y", "Winograd forward", g); Conv.check(x, g.inputShape, "x", "Winograd forward", g)
        Conv.check(w, g.weightShape, "w", "Winograd forward", g)
        let blas = BLAS.shared, K = g.outChannels, C4 = 4 * g.inChannels, z = round16(max(g.inChannels, K))
        run(g, workspace, reserve: 0, shared: z + 9 * K * C4, prepare: { shared in
            shared.update(repeating: 0, count: z)
            transformWeights(u: shared + z, w: w.data, g: g)
        }, body: { _, buf, _, shared, _, first, count in
            let T = count * tilesPerImage(g)
            transformInput(v: buf.a, x: x.data, zeros: shared, g: g, first: first, count: count)
            for ab in 0..<9 {
                blas.sgemm(transB: true, m: T, n: K, k: C4, a: buf.a + ab * T * C4, lda: C4,
                           b: shared + z + ab * K * C4, ldb: C4, c: buf.b + ab * T * K, ldc: K)
            }
            transformOutput(y: y.data, m: buf.b, sink: buf.sink, g: g, first: first, count: count)
        })
    }

    /// dx = the input gradient (overwrites dx) for an eligible geometry. dx [N, H, W, C], dy [N, Ho, Wo, K].
    public static func backwardInput(dx: Tensor, dy: Tensor, w: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        precondition(isEligible(g), "Winograd input gradient: \(g) is not a 4x4 stride-2 pad-1 convolution of an even-sized input")
        Conv.check(dx, g.inputShape, "dx", "Winograd input gradient", g)
        Conv.check(dy, g.outputShape, "dy", "Winograd input gradient", g)
        Conv.check(w, g.weightShape, "w", "Winograd input gradient", g)
        let blas = BLAS.shared, K = g.outChannels, C4 = 4 * g.inChannels, z = round16(max(g.inChannels, K))
        run(g, workspace, reserve: 0, shared: z + 9 * K * C4, prepare: { shared in
            shared.update(repeating: 0, count: z)
            transformWeights(u: shared + z, w: w.data, g: g)
        }, body: { _, buf, _, shared, _, first, count in
            let T = count * tilesPerImage(g)
            transformOutputGradient(dm: buf.b, dy: dy.data, zeros: shared, g: g, first: first, count: count)
            for ab in 0..<9 {
                blas.sgemm(m: T, n: C4, k: K, a: buf.b + ab * T * K, lda: K,
                           b: shared + z + ab * K * C4, ldb: C4, c: buf.a + ab * T * C4, ldc: C4)
            }
            transformInputGradient(dx: dx.data, dv: buf.a, sink: buf.sink, g: g, first: first, count: count)
        })
    }

    /// dw += the weight gradient for an eligible geometry. dw [K, 4, 4, C], x [N, H, W, C], dy [N, Ho, Wo, K].
    /// Each worker sums its share into a [9][K][4C] partial of its own; the partials are added in
    /// worker order (results do not depend on timing) while transforming back into dw.
    public static func backwardWeight(dw: Tensor, x: Tensor, dy: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        precondition(isEligible(g), "Winograd weight gradient: \(g) is not a 4x4 stride-2 pad-1 convolution of an even-sized input")
        Conv.check(dw, g.weightShape, "dw", "Winograd weight gradient", g)
        Conv.check(x, g.inputShape, "x", "Winograd weight gradient", g)
        Conv.check(dy, g.outputShape, "dy", "Winograd weight gradient", g)
        if g.batch == 0 { return }
        let blas = BLAS.shared, K = g.outChannels, C4 = 4 * g.inChannels, z = round16(max(g.inChannels, K))
        run(g, workspace, reserve: 9 * K * C4, shared: z, prepare: { shared in
            shared.update(repeating: 0, count: z)
        }, body: { _, buf, partial, shared, firstChunk, first, count in
            let T = count * tilesPerImage(g)
            transformInput(v: buf.a, x: x.data, zeros: shared, g: g, first: first, count: count)
            transformOutputGradient(dm: buf.b, dy: dy.data, zeros: shared, g: g, first: first, count: count)
            for ab in 0..<9 {
                blas.sgemm(transA: true, m: K, n: C4, k: T, a: buf.b + ab * T * K, lda: K,
                           b: buf.a + ab * T * C4, ldb: C4, beta: firstChunk ? 0 : 1, c: partial + ab * K * C4, ldc: C4)
            }
        }, finish: { partials in
            partials.map { UnsafePointer($0) }.withUnsafeBufferPointer { parts in
                Parallel.forRanges(K, grain: max(1, 16_384 / (9 * C4))) { range in
                    transformWeightGradient(dw: dw.data, parts: parts, g: g, k: range)
                }
            }
        })
    }

    // MARK: transforms

    /// U[ab][k][(by, bx, c)] = (G g G^T)[a][b] with g[ay][ax] = w[k, 2ay + by, 2ax + bx, c]. In parallel over k.
    static func transformWeights(u: MP, w: P, g: ConvGeometry) {
        let C = g.inChannels, K = g.outChannels, C4 = 4 * C, C8 = C / 8 * 8, plane = K * C4
        Parallel.forRanges(K, grain: max(1, 16_384 / (9 * C4))) { range in
            for k in range {
                for by in 0..<2 { for bx in 0..<2 {
                    let s = w + ((k * 4 + by) * 4 + bx) * C
                    let s00 = s, s01 = s + 2 * C, s10 = s + 8 * C, s11 = s + 10 * C
                    let dst = u + k * C4 + (2 * by + bx) * C
                    expand(SIMD8<Float>.self, 0, C8, s00, s01, s10, s11, dst, plane)
                    expand(Float.self, C8, C, s00, s01, s10, s11, dst, plane)
                } }
            }
        }
    }

    /// V = B^T d B for every tile of images first ..< first + count: V [9][tiles][4C].
    static func transformInput(v: MP, x: P, zeros: P, g: ConvGeometry, first: Int, count: Int) {
        let H = g.height, W = g.width, C = g.inChannels, C4 = 4 * C, C8 = C / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = count * Ty * Tx * C4
        for nr in 0..<count {
            let img = x + (first + nr) * H * W * C
            @inline(__always) func at(_ r: Int, _ c: Int) -> P { r >= 0 && r < H && c >= 0 && c < W ? img + (r * W + c) * C : zeros }
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                for by in 0..<2 { for bx in 0..<2 {
                    // d[a][b] = u[2ty + a, 2tx + b, (by, bx, :)] = x[4ty + 2a + by - 1, 4tx + 2b + bx - 1, :]
                    let r = 4 * ty + by - 1, c = 4 * tx + bx - 1
                    let s00 = at(r, c), s01 = at(r, c + 2), s02 = at(r, c + 4)
                    let s10 = at(r + 2, c), s11 = at(r + 2, c + 2), s12 = at(r + 2, c + 4)
                    let s20 = at(r + 4, c), s21 = at(r + 4, c + 2), s22 = at(r + 4, c + 4)
                    let dst = v + t * C4 + (2 * by + bx) * C
                    inputTile(SIMD8<Float>.self, 0, C8, s00, s01, s02, s10, s11, s12, s20, s21, s22, dst, plane)
                    inputTile(Float.self, C8, C, s00, s01, s02, s10, s11, s12, s20, s21, s22, dst, plane)
                } }
            } }
        }
    }

    /// y = A^T M A for every tile: M [9][tiles][K] -> y [N, Ho, Wo, K] (outputs outside Ho x Wo go to `sink`).
    static func transformOutput(y: MP, m: P, sink: MP, g: ConvGeometry, first: Int, count: Int) {
        let Ho = g.outHeight, Wo = g.outWidth, K = g.outChannels, K8 = K / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = count * Ty * Tx * K
        for nr in 0..<count {
            let img = y + (first + nr) * Ho * Wo * K
            @inline(__always) func at(_ r: Int, _ c: Int) -> MP { r < Ho && c < Wo ? img + (r * Wo + c) * K : sink }
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                let src = m + t * K
                let d00 = at(2 * ty, 2 * tx), d01 = at(2 * ty, 2 * tx + 1), d10 = at(2 * ty + 1, 2 * tx), d11 = at(2 * ty + 1, 2 * tx + 1)
                outputTile(SIMD8<Float>.self, 0, K8, src, plane, d00, d01, d10, d11)
                outputTile(Float.self, K8, K, src, plane, d00, d01, d10, d11)
            } }
        }
    }

    /// dM = A dY A^T for every tile: dy [N, Ho, Wo, K] -> dM [9][tiles][K] (dy outside Ho x Wo is zero).
    static func transformOutputGradient(dm: MP, dy: P, zeros: P, g: ConvGeometry, first: Int, count: Int) {
        let Ho = g.outHeight, Wo = g.outWidth, K = g.outChannels, K8 = K / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = count * Ty * Tx * K
        for nr in 0..<count {
            let img = dy + (first + nr) * Ho * Wo * K
            @inline(__always) func at(_ r: Int, _ c: Int) -> P { r < Ho && c < Wo ? img + (r * Wo + c) * K : zeros }
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                let s00 = at(2 * ty, 2 * tx), s01 = at(2 * ty, 2 * tx + 1), s10 = at(2 * ty + 1, 2 * tx), s11 = at(2 * ty + 1, 2 * tx + 1)
                let dst = dm + t * K
                expand(SIMD8<Float>.self, 0, K8, s00, s01, s10, s11, dst, plane)
                expand(Float.self, K8, K, s00, s01, s10, s11, dst, plane)
            } }
        }
    }

    /// dx = depth-to-space of the sum over tiles of B dV B^T: dV [9][tiles][4C] -> dx [N, H, W, C],
    /// overwriting images first ..< first + count (the padding ring goes to `sink`).
    static func transformInputGradient(dx: MP, dv: P, sink: MP, g: ConvGeometry, first: Int, count: Int) {
        let H = g.height, W = g.width, C = g.inChannels, C4 = 4 * C, C8 = C / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = count * Ty * Tx * C4
        for nr in 0..<count {
            let img = dx + (first + nr) * H * W * C
            img.update(repeating: 0, count: H * W * C)
            @inline(__always) func at(_ r: Int, _ c: Int) -> MP { r >= 0 && r < H && c >= 0 && c < W ? img + (r * W + c) * C : sink }
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                for by in 0..<2 { for bx in 0..<2 {
                    let r = 4 * ty + by - 1, c = 4 * tx + bx - 1
                    let d00 = at(r, c), d01 = at(r, c + 2), d02 = at(r, c + 4)
                    let d10 = at(r + 2, c), d11 = at(r + 2, c + 2), d12 = at(r + 2, c + 4)
                    let d20 = at(r + 4, c), d21 = at(r + 4, c + 2), d22 = at(r + 4, c + 4)
                    let src = dv + t * C4 + (2 * by + bx) * C
                    inputGradientTile(SIMD8<Float>.self, 0, C8, src, plane, d00, d01, d02, d10, d11, d12, d20, d21, d22)
                    inputGradientTile(Float.self, C8, C, src, plane, d00, d01, d02, d10, d11, d12, d20, d21, d22)
                } }
            } }
        }
    }

    /// dw[k, 2ay + by, 2ax + bx, c] += (G^T dU G)[ay][ax] with dU[ab][k][(by, bx, c)] = the sum of the
    /// workers' partials (in worker order), for k in `k`.
    static func transformWeightGradient(dw: MP, parts: UnsafeBufferPointer<P>, g: ConvGeometry, k range: Range<Int>) {
        let C = g.inChannels, K = g.outChannels, C4 = 4 * C, C8 = C / 8 * 8, plane = K * C4
        for k in range {
            for by in 0..<2 { for bx in 0..<2 {
                let off = k * C4 + (2 * by + bx) * C
                let d = dw + ((k * 4 + by) * 4 + bx) * C
                let d00 = d, d01 = d + 2 * C, d10 = d + 8 * C, d11 = d + 10 * C
                weightGradientTile(SIMD8<Float>.self, 0, C8, parts, off, plane, d00, d01, d10, d11)
                weightGradientTile(Float.self, C8, C, parts, off, plane, d00, d01, d10, d11)
            } }
        }
    }

    // MARK: per-tile kernels over channels lo ..< hi (L: 8 channels at a time, or 1)

    /// out[ab] = (B^T d B)[a][b] at dst + ab * plane; B^T rows: d0 - d1, d1, d2 - d1.
    @inline(__always)
    static func inputTile<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int,
                                           _ s00: P, _ s01: P, _ s02: P, _ s10: P, _ s11: P, _ s12: P,
                                           _ s20: P, _ s21: P, _ s22: P, _ dst: MP, _ plane: Int) {
        var c = lo
        while c < hi {
            let d10 = L.load(s10 + c), d11 = L.load(s11 + c), d12 = L.load(s12 + c)
            let e00 = L.load(s00 + c) - d10, e01 = L.load(s01 + c) - d11, e02 = L.load(s02 + c) - d12
            let e20 = L.load(s20 + c) - d10, e21 = L.load(s21 + c) - d11, e22 = L.load(s22 + c) - d12
            let o = dst + c
            (e00 - e01).store(o); e01.store(o + plane); (e02 - e01).store(o + 2 * plane)
            (d10 - d11).store(o + 3 * plane); d11.store(o + 4 * plane); (d12 - d11).store(o + 5 * plane)
            (e20 - e21).store(o + 6 * plane); e21.store(o + 7 * plane); (e22 - e21).store(o + 8 * plane)
            c += L.width
        }
    }

    /// out[ab] = (A s A^T)[a][b] at dst + ab * plane for a 2x2 s (A = G: rows s0, s0 + s1, s1).
    /// Serves dM = A dY A^T and U = G g G^T.
    @inline(__always)
    static func expand<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int,
                                        _ s00: P, _ s01: P, _ s10: P, _ s11: P, _ dst: MP, _ plane: Int) {
        var c = lo
        while c < hi {
            let a00 = L.load(s00 + c), a01 = L.load(s01 + c), a10 = L.load(s10 + c), a11 = L.load(s11 + c)
            let m0 = a00 + a10, m2 = a01 + a11
            let o = dst + c
            a00.store(o); (a00 + a01).store(o + plane); a01.store(o + 2 * plane)
            m0.store(o + 3 * plane); (m0 + m2).store(o + 4 * plane); m2.store(o + 5 * plane)
            a10.store(o + 6 * plane); (a10 + a11).store(o + 7 * plane); a11.store(o + 8 * plane)
            c += L.width
        }
    }

    /// d_ij = (A^T M A)[i][j] (A^T rows: m0 + m1, m1 + m2), M[ab] at src + ab * plane.
    @inline(__always)
    static func outputTile<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ src: P, _ plane: Int,
                                            _ d00: MP, _ d01: MP, _ d10: MP, _ d11: MP) {
        var c = lo
        while c < hi {
            let p = src + c
            let m00 = L.load(p), m01 = L.load(p + plane), m02 = L.load(p + 2 * plane)
            let m10 = L.load(p + 3 * plane), m11 = L.load(p + 4 * plane), m12 = L.load(p + 5 * plane)
            let m20 = L.load(p + 6 * plane), m21 = L.load(p + 7 * plane), m22 = L.load(p + 8 * plane)
            let r0 = m00 + m10, r1 = m01 + m11, r2 = m02 + m12
            let q0 = m10 + m20, q1 = m11 + m21, q2 = m12 + m22
            (r0 + r1).store(d00 + c); (r1 + r2).store(d01 + c); (q0 + q1).store(d10 + c); (q1 + q2).store(d11 + c)
            c += L.width
        }
    }

    /// d_ij += (G^T S G)[i][j] (G^T = A^T), S[ab] = the sum over the partials, in order, of
    /// part[off + ab * plane + c].
    @inline(__always)
    static func weightGradientTile<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ parts: UnsafeBufferPointer<P>,
                                                    _ off: Int, _ plane: Int, _ d00: MP, _ d01: MP, _ d10: MP, _ d11: MP) {
        var c = lo
        while c < hi {
            @inline(__always) func s(_ ab: Int) -> L {
                let i = off + ab * plane + c
                var v = L.load(parts[0] + i)
                for j in 1..<parts.count { v = v + L.load(parts[j] + i) }
                return v
            }
            let m00 = s(0), m01 = s(1), m02 = s(2), m10 = s(3), m11 = s(4), m12 = s(5), m20 = s(6), m21 = s(7), m22 = s(8)
            let r0 = m00 + m10, r1 = m01 + m11, r2 = m02 + m12
            let q0 = m10 + m20, q1 = m11 + m21, q2 = m12 + m22
            (L.load(d00 + c) + (r0 + r1)).store(d00 + c); (L.load(d01 + c) + (r1 + r2)).store(d01 + c)
            (L.load(d10 + c) + (q0 + q1)).store(d10 + c); (L.load(d11 + c) + (q1 + q2)).store(d11 + c)
            c += L.width
        }
    }

    /// d_ij += (B dV B^T)[i][j] (B rows: v0, v1 - v0 - v2, v2), dV[ab] at src + ab * plane.
    @inline(__always)
    static func inputGradientTile<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ src: P, _ plane: Int,
                                                   _ d00: MP, _ d01: MP, _ d02: MP, _ d10: MP, _ d11: MP, _ d12: MP,
                                                   _ d20: MP, _ d21: MP, _ d22: MP) {
        var c = lo
        while c < hi {
            let p = src + c
            let v00 = L.load(p), v01 = L.load(p + plane), v02 = L.load(p + 2 * plane)
            let v10 = L.load(p + 3 * plane), v11 = L.load(p + 4 * plane), v12 = L.load(p + 5 * plane)
            let v20 = L.load(p + 6 * plane), v21 = L.load(p + 7 * plane), v22 = L.load(p + 8 * plane)
            // rows
            let f1_0 = v10 - v00 - v20, f1_1 = v11 - v01 - v21, f1_2 = v12 - v02 - v22
            // columns, added into dx
            (L.load(d00 + c) + v00).store(d00 + c)
            (L.load(d01 + c) + (v01 - v00 - v02)).store(d01 + c)
            (L.load(d02 + c) + v02).store(d02 + c)
            (L.load(d10 + c) + f1_0).store(d10 + c)
            (L.load(d11 + c) + (f1_1 - f1_0 - f1_2)).store(d11 + c)
            (L.load(d12 + c) + f1_2).store(d12 + c)
            (L.load(d20 + c) + v20).store(d20 + c)
            (L.load(d21 + c) + (v21 - v20 - v22)).store(d21 + c)
            (L.load(d22 + c) + v22).store(d22 + c)
            c += L.width
        }
    }
}

/// What the per-tile kernels compute with: 8 floats (SIMD8) or one.
protocol WinogradLane {
    static var width: Int { get }
    static func load(_ p: UnsafePointer<Float>) -> Self
    func store(_ p: UnsafeMutablePointer<Float>)
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
}

extension Float: WinogradLane {
    @inline(__always) static var width: Int { 1 }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Float { p.pointee }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { p.pointee = self }
}

extension SIMD8: WinogradLane where Scalar == Float {
    @inline(__always) static var width: Int { 8 }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self)
    }
}
