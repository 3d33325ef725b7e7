#if canImport(Glibc)
import Glibc
#endif

// Winograd F(m x m, 2 x 2), m = 2 or 4, for the 4x4, stride-2, padding-1 convolutions of DiscoGAN
// and (through the adjoint) its transposed convolutions: forward, input gradient and weight
// gradient, for training (Conv's passes) and inference (`InferenceNetwork`, with prepared weights
// and a fused bias + activation) alike. One type, `Winograd`, its tile size m a parameter.
//
// Dims: N = batch, H x W = input, C = input channels, K = output channels, Ho = H/2, Wo = W/2,
// m = output tile side, alpha = m + 1 (input tile side), T = tiles of a chunk of images.
// Layouts as in Conv.swift: x [N, H, W, C], y [N, Ho, Wo, K], w [K, 4, 4, C] (OHWI).
//
// 1. Space-to-depth. Let xpad be x padded by one zero on each side (xpad[r] = x[r - 1]). With
//      u[n, j, i, (by, bx, c)] = xpad[n, 2j + by, 2i + bx, c]     j in 0...H/2, i in 0...W/2 (4C channels)
//      w'[k, ay, ax, (by, bx, c)] = w[k, 2ay + by, 2ax + bx, c]  ay, ax in {0, 1}
//    the 4x4 stride-2 pad-1 convolution is a 2x2 stride-1 valid convolution of u with w':
//      y[n, oy, ox, k] = sum_{ay, ax} sum_q u[n, oy + ay, ox + ax, q] * w'[k, ay, ax, q].
//    (Eligible: kernel 4x4, stride 2, padding 1, H and W even.)
// 2. F(m, 2) in 1-D (Toom-Cook at the points 0, 1 (m = 2) or 0, 1, -1, 1/2 (m = 4), and infinity):
//    the correlation y_i = d_i g_0 + d_(i+1) g_1 (i < m) is y = A^T [(G g) .* (B^T d)], with
//    A^T [m, alpha], G [alpha, 2], B^T [alpha, alpha] (`Winograd.init` builds them). For m = 2:
//      B^T = [[1, -1, 0], [0, 1, 0], [0, -1, 1]],  G = [[1, 0], [1, 1], [0, 1]],  A^T = [[1, 1, 0], [0, 1, 1]]
//    (only +-1: the transforms add no rounding beyond a few additions); m = 4 has 1/2, 2 and 4 too.
//    In 2-D, for an m x m output tile at (m ty, m tx) of the u-convolution, d = the alpha x alpha
//    tile of u at (m ty, m tx), g = w'[k, :, :, q]:  V = B^T d B,  U = G g G^T,  Y = A^T (sum_q V .* U) A.
// 3. Forward: V[p][t, q] for the alpha^2 transform points p = (xi, eta) and tiles t; alpha^2 GEMMs
//      M[p][t, k] = sum_q V[p][t, q] U[p][k, q]   ([T x 4C] * [4C x K])
//    then Y = A^T M A per tile, written into y (outputs past Ho x Wo, in a last partial tile, are
//    dropped; input beyond the padded edge is zero), then the epilogue (inference: + bias, activation).
//    Input gradient (also the transposed convolution's forward): dM = A dY A^T per tile;
//      dV[p] = dM[p] U[p]   (alpha^2 GEMMs [T x K] * [K x 4C]);
//    dd = B dV B^T per tile, added into du (neighbouring tiles share a row / column of u), and
//    dx = du seen as xpad without its padding (depth-to-space): each du element is one dx element,
//    so the tiles are added straight into dx.
//    Weight gradient: dU[p] += dM[p]^T V[p] (alpha^2 GEMMs [K x T] * [T x 4C]) into per-worker
//    partials, summed in worker order; dg = G^T dU G per (k, q); dw += dg moved back from w' to w.
//    GEMM multiply-adds per m x m output tile: alpha^2 * 4C * K, against m^2 * 16C * K for im2col:
//    9/16 of it for m = 2, 25/64 for m = 4.
// 4. The one rounding rule of every transform (so that all tile sizes and all three passes compute
//    alike, and F(2x2) and F(4x4) bit-identical to the hand-unrolled kernels that run them): a 2-D
//    transform L X R^T is applied rows first (over the first index), then columns; each sum starts
//    from its first non-zero term (times its coefficient: +1 and -1 exactly) and adds the others in
//    index order. F(2x2) and F(4x4) run hand-unrolled kernels that follow it; other tiles (and
//    tests, with `forceGeneric`) run the generic ones, which read the coefficients from tables.
//
// Memory: V and M of a chunk are [alpha^2][T][4C] and [alpha^2][T][K] (tile t = (image, ty, tx) in
// order), so each GEMM is a plain row-major GEMM on contiguous blocks; U is [alpha^2][K][4C] (rows
// in w's order; `prepareWeights` makes it once for inference) and serves the forward (B transposed)
// and the input gradient (B as is); the weight-gradient partials are [alpha^2][K][4C] too. The batch
// is split as in Conv (Conv.Plan): each worker takes a contiguous share of images and walks it in
// chunks whose V and M fit Conv.columnBudgetBytes (twice that for F(4x4): `budgetMultiple`), doing
// its own transforms and single-threaded sgemm calls (the image split). Where a worker's chunk has
// fewer tiles than the layer has output channels, OpenBLAS's packing of U (or, for the weight
// gradient, the [K, 4C] partials read and written) for every chunk of every worker outweighs the
// GEMMs' other costs; weight gradients then take the point split (`usesPointSplit`, `runByPoints`):
// the chunk's V and dM are shared, the workers transform their shares of its images, then cut the
// alpha^2 GEMMs between them (by rows of dU, so each element is one worker's: no partials).
// `DISCO_WINOGRAD_SPLIT=images|points` forces one for every training pass (for measuring). The
// transforms are loops over contiguous channels, 8 at a time (SIMD8), then one at a time for the rest.

/// How Conv's passes compute the 4x4 stride-2 pad-1 convolutions (other geometries always use im2col).
/// (`ConvKernel`, `Conv.kernel` and the choice between the kernels live here too, beside Winograd.)
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    /// What measured fastest for each pass (`Conv.preferredKernel`): Winograd on the big layers
    /// (F(4x4) for the gradients from 8x8 outputs up, F(2x2) elsewhere), the direct kernels for
    /// every pass of the small-channel ones, im2col elsewhere.
    case auto
    /// im2col + GEMM for every convolution.
    case im2col
    /// Winograd F(2x2, 2x2) wherever the geometry allows it.
    case winograd
    /// Winograd F(4x4, 2x2) wherever the geometry allows it, but for the convolution's forward,
    /// which runs F(2x2): F(4x4) rounds more there than the PyTorch fixtures' tolerances allow
    /// (`preferredTile`). A transposed convolution's forward is an input gradient: F(4x4).
    case winograd4
    /// The direct small-channel kernels (`DirectConv`) for the passes they have, im2col elsewhere.
    case direct

    /// `DISCO_CONV=auto|im2col|winograd|winograd4|direct`; unset means auto. Any other value is reported and ignored.
    static func fromEnvironment() -> ConvAlgorithm { ProcessInfoLite.choice("DISCO_CONV", default: .auto) }
}

/// The three passes of a convolution.
public enum ConvPass: String, Sendable, CaseIterable { case forward, inputGradient = "input_grad", weightGradient = "weight_grad" }

/// How one pass of a convolution is computed.
public enum ConvKernel: Equatable, Sendable, CustomStringConvertible {
    case im2col
    /// Winograd F(m x m, 2 x 2).
    case winograd(Int)
    /// `DirectConv` (small-channel layers).
    case direct

    /// One letter per kernel for tables: i = im2col, w = F(2x2), W = F(4x4), d = direct.
    public var letter: String {
        switch self {
        case .im2col: return "i"
        case .winograd(let m): return m == 2 ? "w" : "W"
        case .direct: return "d"
        }
    }
    public var description: String {
        switch self {
        case .im2col: return "im2col"
        case .winograd(let m): return "winograd\(m)"
        case .direct: return "direct"
        }
    }
}

extension Conv {
    /// The algorithm for eligible convolutions; read once from `DISCO_CONV` (default auto).
    nonisolated(unsafe) public static var algorithm: ConvAlgorithm = .fromEnvironment()

    /// How `pass` of geometry `g` runs under the current `algorithm`.
    public static func kernel(_ g: ConvGeometry, _ pass: ConvPass) -> ConvKernel {
        switch algorithm {
        case .im2col: return .im2col
        case .winograd: return Winograd.isEligible(g) ? .winograd(2) : .im2col
        case .winograd4: return Winograd.isEligible(g) ? .winograd(pass == .forward ? 2 : 4) : .im2col
        case .direct: return DirectConv.applies(g, pass) ? .direct : .im2col
        case .auto: return preferredKernel(g, pass)
        }
    }

    /// The `auto` rule: what measured fastest for each pass (`disco bench kernels --compare`,
    /// docs/performance.md): the direct kernels for all three passes of a small-channel
    /// convolution (e1, c1 and d4 at batch 64, 64x64, Zen 4, 2 threads, 3 runs of `--compare
    /// --rounds 12` on a busy machine: the fastest kernel in 26 of 27 readings; im2col's time
    /// times 0.19-0.90 for the convolution-type passes (e1, c1 forward, d4 input gradient),
    /// 0.28-1.02 for the transposed ones (e1, c1 input gradient, d4 forward), 0.60-0.86 for the
    /// weight gradients; in the quiet window after, `--rounds 4`: 0.46-0.82 for all nine passes);
    /// Winograd where `Winograd.preferredTile` says; im2col elsewhere.
    public static func preferredKernel(_ g: ConvGeometry, _ pass: ConvPass) -> ConvKernel {
        if DirectConv.applies(g, pass) { return .direct }
        if let m = Winograd.preferredTile(g, pass) { return .winograd(m) }
        return .im2col
    }

    /// The Winograd tile `pass` of geometry `g` runs with under the current `algorithm`, or nil.
    public static func winogradTile(_ g: ConvGeometry, _ pass: ConvPass) -> Int? {
        if case .winograd(let m) = kernel(g, pass) { return m }
        return nil
    }

    /// Whether `pass` of geometry `g` runs Winograd under the current `algorithm`.
    public static func usesWinograd(_ g: ConvGeometry, _ pass: ConvPass) -> Bool { winogradTile(g, pass) != nil }
}

/// What runs after a Winograd pass has written an output pixel (the forward) or an image (the
/// input gradient): y = activation(y + bias) per channel. Training uses none.
public struct ConvEpilogue {
    /// Per output channel; empty: no bias.
    public let bias: [Float]
    public let activation: Activation
    public init(bias: [Float], activation: Activation) { self.bias = bias; self.activation = activation }

    /// Applies it to `pixels` consecutive pixels of `channels` channels at `p`.
    @inline(__always)
    func apply(_ p: UnsafeMutablePointer<Float>, pixels: Int, channels: Int) {
        if bias.isEmpty { InferenceNetwork.biasActivationRow(p, pixels * channels, nil, activation); return }
        bias.withUnsafeBufferPointer { b in
            for i in 0..<pixels { InferenceNetwork.biasActivationRow(p + i * channels, channels, b.baseAddress!, activation) }
        }
    }
}

/// Winograd F(m x m, 2 x 2) for one tile size m (see the notes above): the transform matrices,
/// and the three passes of an eligible convolution. `Winograd.f2` and `Winograd.f4` are the two
/// in use.
public struct Winograd: Sendable, CustomStringConvertible {
    typealias P = UnsafePointer<Float>
    typealias MP = UnsafeMutablePointer<Float>

    /// m: the side of an output tile.
    public let tile: Int
    /// m + 1: the side of an input tile, and of the transform grid (alpha^2 GEMMs per pass).
    public let alpha: Int
    /// Row-major: A^T [m, alpha], G [alpha, 2], B^T [alpha, alpha].
    public let AT: [Float], G: [Float], BT: [Float]
    /// The non-zero coefficients (index, value) of each row or column, in index order, for the
    /// generic transforms: rows of B^T (input), of A^T (output), of G (weights); columns of A^T
    /// (output gradient), of B^T (input gradient), of G (weight gradient).
    let btRows, atRows, gRows, atCols, btCols, gCols: WinogradTerms
    /// Run the generic transforms even for m = 2 and 4 (tests: they must match the unrolled ones bit for bit).
    nonisolated(unsafe) static var forceGeneric = false

    public static let f2 = Winograd(tile: 2)
    public static let f4 = Winograd(tile: 4)
    /// The tile sizes disco implements.
    public static let tiles = [2, 4]
    public static func tile(_ m: Int) -> Winograd {
        switch m {
        case 2: return f2
        case 4: return f4
        default: preconditionFailure("Winograd: no F(\(m)x\(m), 2x2) (tiles: \(tiles))")
        }
    }

    public var description: String { "F(\(tile)x\(tile), 2x2)" }

    /// Toom-Cook F(m, 2) on the points 0, 1 (m = 2) or 0, 1, -1, 1/2 (m = 4), and infinity.
    public init(tile m: Int) {
        let points: [Int: [Double]] = [2: [0, 1], 4: [0, 1, -1, 0.5]]
        guard let f = points[m] else { preconditionFailure("Winograd: no points for F(\(m)x\(m), 2x2) (tiles: 2, 4)") }
        let alpha = m + 1, n = alpha - 1  // finite points
        tile = m; self.alpha = alpha
        // Evaluation of a polynomial with `cols` coefficients at each point (last row: infinity).
        func evaluation(_ cols: Int) -> [[Double]] {
            var e = f.map { p in (0..<cols).map { pow(p, Double($0)) } }
            e.append((0..<cols).map { $0 == cols - 1 ? 1 : 0 })
            return e
        }
        // Interpolation C: values at the points (and the leading coefficient at infinity) ->
        // coefficients of the degree alpha - 1 product. B^T = C^T.
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
        func rows(_ mat: [Float], _ cols: Int) -> [[(Int, Float)]] {
            (0..<(mat.count / cols)).map { r in (0..<cols).compactMap { mat[r * cols + $0] != 0 ? ($0, mat[r * cols + $0]) : nil } }
        }
        func columns(_ mat: [Float], _ cols: Int) -> [[(Int, Float)]] {
            (0..<cols).map { c in (0..<(mat.count / cols)).compactMap { mat[$0 * cols + c] != 0 ? ($0, mat[$0 * cols + c]) : nil } }
        }
        btRows = WinogradTerms(rows(BT, alpha)); atRows = WinogradTerms(rows(AT, alpha)); gRows = WinogradTerms(rows(G, 2))
        atCols = WinogradTerms(columns(AT, alpha)); btCols = WinogradTerms(columns(BT, alpha)); gCols = WinogradTerms(columns(G, 2))
    }

    // MARK: which convolutions, which tile

    /// Kernel 4x4, stride 2, padding 1, even input height and width (any tile size).
    public static func isEligible(_ g: ConvGeometry) -> Bool {
        g.kernelH == 4 && g.kernelW == 4 && g.stride == 2 && g.padding == 1 && g.height % 2 == 0 && g.width % 2 == 0
    }

    /// The `auto` rule of training: the tile where Winograd measured fastest (bench kernels
    /// --compare, alternated rounds; docs/performance.md), nil for im2col. Layers with >= 16 input
    /// and output channels run Winograd (about 1.3-2x im2col's effective GFLOP/s); the 3-channel
    /// layers (e1, c1, d4; 4C = 12 makes thin GEMMs and transform-bound passes) keep im2col or the
    /// direct kernels. With its unrolled transforms, F(4x4) took 0.39-0.63 of im2col's time on the
    /// passes of the layers with 16x16 and 8x8 outputs (e2, e3, c2, c3, d2, d3; F(2x2) 0.46-0.70),
    /// ahead of F(2x2) in 49 of 54 cells of three alternated runs; on 4x4 outputs (e4, d1, c4: one
    /// F(4x4) tile per image) F(2x2) stays ahead. F(4x4) rounds more (points 1/2, -1; B^T holds
    /// 1/6, 1/3, 8/3): on the convolution's forward it took the discriminator's logits past the
    /// PyTorch fixture's tolerance (1.8e-6 against 1.7e-6, F(2x2) 1.5e-7), so the forward keeps
    /// F(2x2); the input gradient (also d2's and d3's forward) and the weight gradient run F(4x4) on
    /// whole tiles from 8x8 outputs up, within every fixture's tolerance. `DISCO_CONV=winograd` forces
    /// F(2x2) everywhere, `winograd4` F(4x4) everywhere but the forward. Tried for the forward: the points 1, -1, 1/2, -1/2
    /// (B^T rows scaled to integers, 1/6, 1/3, 2/3 in G) cut the simulated error of F(4x4) by a
    /// third and took the logits to 0.50x their tolerance with F(4x4) on the forward of c2 and c3
    /// (the points 0, 1, -1, 1/2 used here: 1.08x), and measured 0.85-0.95x F(2x2)'s forward time
    /// on e2, e3, c2, c3; but under `DISCO_CONV=winograd4` the logits went to 1.43x (0, 1, -1, 1/2:
    /// 0.94x), so they are not used. Of the other point sets simulated none did better; computing the transforms
    /// exactly changed nothing measurable (the error is the GEMMs' float sums, spread by A^T). On
    /// the DCGAN of `disco gan` (32x32, width 32, batch 64) F(4x4) runs ct3's forward and
    /// weight gradient and c2's gradients: three alternated bench runs put it at 0.83-1.35x F(2x2)
    /// per pass (the passes take 2-4 ms; rounds spread by 10-1000%), about even over the four
    /// passes, and 5 alternated `bench gan` pairs with and without it were within noise (mean 0.153
    /// vs 0.149 s/iteration, best 0.117 vs 0.118), so the rule stays as it is there.
    public static func preferredTile(_ g: ConvGeometry, _ pass: ConvPass) -> Int? {
        guard isEligible(g) && g.inChannels >= 16 && g.outChannels >= 16 else { return nil }
        let wholeF4 = g.outHeight >= 8 && g.outWidth >= 8 && g.outHeight % 4 == 0 && g.outWidth % 4 == 0
        return pass != .forward && wholeF4 ? 4 : 2
    }

    /// Whether `auto` runs `pass` of `g` by Winograd (`preferredTile` is not nil).
    public static func preferred(_ g: ConvGeometry, _ pass: ConvPass) -> Bool { preferredTile(g, pass) != nil }

    /// Tile grid of one image: m x m output tiles, the last row / column partly used when m does not divide Ho / Wo.
    func tileRows(_ g: ConvGeometry) -> Int { (g.outHeight + tile - 1) / tile }
    func tileCols(_ g: ConvGeometry) -> Int { (g.outWidth + tile - 1) / tile }
    func tilesPerImage(_ g: ConvGeometry) -> Int { tileRows(g) * tileCols(g) }

    /// Multiply-adds of the GEMMs of one pass (alpha^2 * 4C * K per tile), against `g.macs` for im2col.
    public func gemmMACs(_ g: ConvGeometry) -> Int { g.batch * tilesPerImage(g) * alpha * alpha * 4 * g.inChannels * g.outChannels }

    /// How many times Conv.columnBudgetBytes one worker's chunk (V and M) may take: 2 for F(4x4),
    /// 1 otherwise. Each sgemm call packs its [K, 4C] block of U again, so F(4x4), whose images
    /// hold 4x fewer tiles, got short GEMMs at 8 MB (the 8x8-output layers: chunks of 16 images, 64
    /// rows); at 16 MB a worker's 32 images of those layers make one chunk, and the 16x16-output
    /// layers two. Measured (bench kernels, budgets alternated in one run, 6 rounds, load 3.5 on 2
    /// cores): F(4x4)'s 18 passes of e2, e3, d2, d3, c2, c3 took 0.96x the 8 MB time (geometric
    /// mean; per pass 0.86-1.08x, two 8 MB columns of the same run differing by up to 15%), 24 MB
    /// 0.94x; 16 MB keeps two workers' chunks (2 x 9.8 MB on those layers) within the 32 MB L3.
    /// Against F(2x2) in two alternated runs of each binary: e3's and c3's forward and input
    /// gradient went from 0.91-1.03x F(2x2)'s time (8 MB) to 0.81-0.85x (16 MB).
    var budgetMultiple: Int { tile == 4 ? 2 : 1 }

    /// Images per chunk so that one chunk's V and M ([alpha^2][tiles][4C] + [alpha^2][tiles][K])
    /// fit `budgetMultiple * Conv.columnBudgetBytes`.
    func imagesPerChunk(_ g: ConvGeometry, limitBytes: Int? = nil) -> Int {
        let limitBytes = limitBytes ?? budgetMultiple * Conv.columnBudgetBytes
        let perImage = tilesPerImage(g) * alpha * alpha * (4 * g.inChannels + g.outChannels) * 4
        return max(1, min(g.batch, limitBytes / max(perImage, 1)))
    }

    @inline(__always) static func round16(_ n: Int) -> Int { (n + 15) / 16 * 16 }

    /// A worker's transform buffers: `a` holds V or dV ([alpha^2][tiles][4C]), `b` M or dM
    /// ([alpha^2][tiles][K]); `sink` (max(C, K) floats) receives the stores of outputs that fall
    /// outside the image.
    struct Buffers { let a, b, sink: MP }

    /// Winograd's use of `Conv.splitBatch`, holding the workspace lock: `prepare(shared)` fills the
    /// buffer all workers read (zeros, U); then each worker runs
    /// `body(worker, buffers, reserved, shared, firstChunkOfWorker, first, count)` over its share,
    /// `reserved` being `reserve` floats of its own (weight-gradient partials); then
    /// `finish(reserved areas of the workers that had images, in worker order)`.
    func run(_ g: ConvGeometry, _ workspace: Workspace, reserve: Int, shared sharedCount: Int, prepared: Bool = false,
             prepare: (MP) -> Void,
             body: (Int, Buffers, MP, P, Bool, Int, Int) -> Void,
             finish: ([MP]) -> Void = { _ in }) {
        workspace.lock.lock(); defer { workspace.lock.unlock() }
        var fit = imagesPerChunk(g)
        if prepared {
            // Inference: each GEMM packs its [K, 4C] block of U again, so a chunk gets at least
            // 4CK/256 rows (tiles) when the batch has them, as the inference path always did
            // (measured: the 8x8 and 4x4 layers' chunks otherwise hold a few dozen tiles).
            let minRows = 4 * g.inChannels * g.outChannels / 256
            fit = max(fit, min(g.batch, (minRows + tilesPerImage(g) - 1) / tilesPerImage(g)))
        }
        let plan = Conv.Plan(batch: g.batch, imagesPerChunk: fit)
        let tiles = plan.chunk * tilesPerImage(g), a2 = alpha * alpha
        let r = Winograd.round16(reserve), a = Winograd.round16(tiles * a2 * 4 * g.inChannels)
        let b = Winograd.round16(tiles * a2 * g.outChannels)
        let total = r + a + b + Winograd.round16(max(g.inChannels, g.outChannels))
        let shared = workspace.sharedBuffer(sharedCount)
        prepare(shared)
        let used = Conv.splitBatch(plan, batch: g.batch, floatsPerWorker: total, workspace) { w, base, first, count, firstOfWorker in
            body(w, Buffers(a: base + r, b: base + r + a, sink: base + r + a + b), base, UnsafePointer(shared),
                 firstOfWorker, first, count)
        }
        finish(used)
    }

    /// How a pass shares its work between the workers (see `usesPointSplit`).
    public enum Split: String, CaseIterable, Sendable {
        /// `usesPointSplit`'s rule.
        case auto
        /// Each worker takes a contiguous share of the images and runs all alpha^2 GEMMs on it.
        case images
        /// The workers transform a chunk's images together, then split its alpha^2 GEMMs.
        case points

        /// `DISCO_WINOGRAD_SPLIT=auto|images|points` (for measuring; unset means auto).
        static func fromEnvironment() -> Split { ProcessInfoLite.choice("DISCO_WINOGRAD_SPLIT", default: .auto) }
    }
    nonisolated(unsafe) public static var split: Split = .fromEnvironment()

    /// Whether a training pass of `g` runs `runByPoints` rather than `run`. Split by images, every
    /// worker runs all alpha^2 GEMMs on its own chunks, and OpenBLAS packs the [K, 4C] blocks of U
    /// (or, for the weight gradient, writes the [K, 4C] partials) once per chunk per worker:
    /// alpha^2 * K * 4C floats each time, against the chunk's alpha^2 * T * 4C of V. Where a
    /// worker's chunk has fewer tiles than U has rows (K), that packing outweighs V's; split by
    /// points, U is packed once per chunk of the whole batch and each GEMM has all its tiles.
    /// auto takes it for the weight gradient alone: there it measured 8-10% more GFLOP/s on e3, c3
    /// and d1 (`bench kernels`, three alternated pairs; the forward and input gradient within the
    /// rounds' spread), and the forward's rounding stays as it was (under `DISCO_CONV=winograd4`
    /// the point split's GEMMs rounded the 4x4-output layers' F(4x4) forward past PyTorch
    /// fixtures' tolerances, where the image split stays within them).
    func usesPointSplit(_ g: ConvGeometry, _ pass: ConvPass, prepared: Bool) -> Bool {
        let workers = min(Parallel.threads, g.batch)
        if prepared || workers < 2 { return false }
        switch Winograd.split {
        case .images: return false
        case .points: return true
        case .auto:
            guard pass == .weightGradient else { return false }
            let plan = Conv.Plan(batch: g.batch, imagesPerChunk: imagesPerChunk(g))
            return plan.chunk * tilesPerImage(g) < g.outChannels
        }
    }

    /// The point split, holding the workspace lock. The batch goes in chunks whose V and M fit
    /// `workers * Conv.columnBudgetBytes` (the memory the image split gives all workers); the
    /// chunk's buffers are shared. Per chunk, three parallel phases:
    /// `before(buffers, shared, chunk, mine)` on each worker's share `mine` of the chunk's images
    /// (transforms into the chunk's V / dM at tile (image - chunk.lowerBound) * tilesPerImage);
    /// `gemm(buffers, accumulator, shared, T, point, rows, firstChunk)` over the alpha^2 points'
    /// GEMMs, `rows(T)` rows each (T tiles, or K for the weight gradient), the alpha^2 * rows
    /// rows cut in `workers` contiguous pieces (a point at a cut runs as two GEMMs on disjoint
    /// rows: no element is written by two workers); `after(buffers, shared, chunk, mine)` as
    /// `before` (transforms back). Then `finish(accumulator)` (`accumulator` floats, shared).
    /// (The chunk's budget is `workers * budgetMultiple * Conv.columnBudgetBytes`.)
    /// Every cut depends on the batch, the budget and the worker count only, never on timing.
    func runByPoints(_ g: ConvGeometry, _ workspace: Workspace, accumulator: Int, shared sharedCount: Int,
                     rows: (Int) -> Int,
                     prepare: (MP) -> Void,
                     before: (Buffers, P, Range<Int>, Range<Int>) -> Void,
                     gemm: (Buffers, MP, P, Int, Int, Range<Int>, Bool) -> Void,
                     after: (Buffers, P, Range<Int>, Range<Int>) -> Void = { _, _, _, _ in },
                     finish: (MP) -> Void = { _ in }) {
        workspace.lock.lock(); defer { workspace.lock.unlock() }
        let N = g.batch, workers = max(1, min(Parallel.threads, N)), a2 = alpha * alpha, tpi = tilesPerImage(g)
        let fit = imagesPerChunk(g, limitBytes: workers * budgetMultiple * Conv.columnBudgetBytes)
        let pieces = (N + fit - 1) / fit, chunk = (N + pieces - 1) / pieces
        let r = Winograd.round16(accumulator), a = Winograd.round16(chunk * tpi * a2 * 4 * g.inChannels)
        let b = Winograd.round16(chunk * tpi * a2 * g.outChannels), sinkCount = Winograd.round16(max(g.inChannels, g.outChannels))
        workspace.reserveWorkers(workers)
        let base = workspace.buffer(r + a + b + sinkCount, worker: 0)
        let sinks = [base + r + a + b] + (1..<workers).map { workspace.buffer(sinkCount, worker: $0) }
        let buffers = sinks.map { Buffers(a: base + r, b: base + r + a, sink: $0) }
        let shared = workspace.sharedBuffer(sharedCount)
        prepare(shared)
        let sp = UnsafePointer(shared)
        for first in stride(from: 0, to: N, by: chunk) {
            let images = first..<min(N, first + chunk), T = images.count * tpi, R = rows(T), units = a2 * R
            Parallel.workers(workers) { w in
                let mine = Parallel.range(w, of: workers, count: images.count, align: 1)
                if !mine.isEmpty { before(buffers[w], sp, images, (first + mine.lowerBound)..<(first + mine.upperBound)) }
            }
            Parallel.workers(workers) { w in
                let lo = units * w / workers, hi = units * (w + 1) / workers
                var u = lo
                while u < hi {
                    let p = u / R, end = min(hi, (p + 1) * R)
                    gemm(buffers[w], base, sp, T, p, (u - p * R)..<(end - p * R), first == 0)
                    u = end
                }
            }
            Parallel.workers(workers) { w in
                let mine = Parallel.range(w, of: workers, count: images.count, align: 1)
                if !mine.isEmpty { after(buffers[w], sp, images, (first + mine.lowerBound)..<(first + mine.upperBound)) }
            }
        }
        finish(base)
    }

    /// The buffer a forward or input-gradient pass shares between its workers: `zeros` floats of
    /// zeros, then, with the pass's own weights, U [alpha^2][K][4C], and under bf16 GEMMs U rounded
    /// to bfloat16 after it, once per pass (each GEMM then rounds only its A). Prepared weights
    /// keep their U elsewhere, and each GEMM rounds it.
    struct SharedU {
        let zeros: Int
        /// Floats of U (0: prepared weights) and of its bfloat16 copy (0: none).
        let u: Int, rounded: Int
        var floats: Int { zeros + u + rounded }

        init(_ f: Winograd, _ g: ConvGeometry, own: Bool) {
            zeros = Winograd.round16(max(g.inChannels, g.outChannels))
            u = own ? f.alpha * f.alpha * g.outChannels * 4 * g.inChannels : 0
            rounded = own && BLAS.gemmPrecision == .bf16 ? Winograd.round16((u + 1) / 2) : 0
        }

        /// Zeros, then U = the transform of `w` (own weights), then its bfloat16 copy.
        func fill(_ shared: MP, _ f: Winograd, w: Tensor?, g: ConvGeometry) {
            shared.update(repeating: 0, count: zeros)
            guard u > 0, let w else { return }
            f.transformWeights(u: shared + zeros, w: w.data, g: g)
            if rounded > 0 { BLAS.roundToBF16(copy(of: shared + zeros), shared + zeros, count: u) }
        }

        /// The bfloat16 copy of point `offset` of U (at `u`, the shared buffer's U), if there is one.
        func rounded(_ u: P, offset: Int) -> UnsafePointer<UInt16>? {
            rounded > 0 ? UnsafePointer(copy(of: u)) + offset : nil
        }

        private func copy(of u: P) -> UnsafeMutablePointer<UInt16> {
            UnsafeMutableRawPointer(mutating: u + self.u).assumingMemoryBound(to: UInt16.self)
        }
    }

    // MARK: prepared weights (inference)

    /// U = G w' G^T of one convolution's weight, made once for many forwards (inference): the
    /// weight transform costs about as much as a few images' forward.
    public struct Weights: @unchecked Sendable {
        public let winograd: Winograd
        /// Input and output channels of the convolution (C, K).
        public let inChannels: Int, outChannels: Int
        /// U [alpha^2, K, 4C].
        let u: Tensor
    }

    /// U of `w` [K, 4, 4, C] (the convolution's OHWI; a transposed convolution's weight is the
    /// adjoint convolution's OHWI, the same shape).
    public func prepareWeights(_ w: Tensor) -> Weights {
        precondition(w.shape.count == 4 && w.shape[1] == 4 && w.shape[2] == 4, "Winograd.prepareWeights: weight \(w.shape) is not [K, 4, 4, C]")
        let K = w.shape[0], C = w.shape[3]
        let g = ConvGeometry(batch: 1, height: 2, width: 2, inChannels: C, outChannels: K, kernel: 4, stride: 2, padding: 1)
        let u = Tensor(uninitialized: [alpha * alpha, K, 4 * C])
        transformWeights(u: u.data, w: w.data, g: g)
        return Weights(winograd: self, inChannels: C, outChannels: K, u: u)
    }

    func checkPrepared(_ p: Weights?, _ g: ConvGeometry, _ op: String) {
        guard let p else { return }
        precondition(p.winograd.tile == tile && p.inChannels == g.inChannels && p.outChannels == g.outChannels,
                     "\(op): prepared weights of \(p.winograd), C \(p.inChannels), K \(p.outChannels) do not fit \(self) for \(g)")
    }

    // MARK: the three passes

    /// y = conv(x, w) for an eligible geometry, then `epilogue` per output pixel.
    /// y [N, Ho, Wo, K], x [N, H, W, C], w [K, 4, 4, C] (or `prepared`: its U; then w may be nil).
    public func forward(y: Tensor, x: Tensor, w: Tensor?, prepared: Weights? = nil, g: ConvGeometry,
                        epilogue: ConvEpilogue? = nil, workspace: Workspace = .shared) {
        let op = "Winograd \(self) forward"
        precondition(Winograd.isEligible(g), "\(op): \(g) is not a 4x4 stride-2 pad-1 convolution of an even-sized input")
        Conv.check(y, g.outputShape, "y", op, g); Conv.check(x, g.inputShape, "x", op, g)
        if let w { Conv.check(w, g.weightShape, "w", op, g) } else { precondition(prepared != nil, "\(op): no weights") }
        checkPrepared(prepared, g, op)
        let blas = BLAS.shared, K = g.outChannels, C4 = 4 * g.inChannels
        let a2 = alpha * alpha, own = prepared == nil, tpi = tilesPerImage(g)
        let su = SharedU(self, g, own: own), z = su.zeros
        let prepare = { (shared: MP) in su.fill(shared, self, w: own ? w : nil, g: g) }
        // M[ab] = V[ab] U[ab]^T on tiles `rows` of a chunk of T tiles.
        func gemm(_ buf: Buffers, _ u: P, _ T: Int, _ ab: Int, _ rows: Range<Int>) {
            blas.gemm(transB: true, m: rows.count, n: K, k: C4, a: buf.a + ab * T * C4 + rows.lowerBound * C4, lda: C4,
                      b: u + ab * K * C4, ldb: C4, roundedB: su.rounded(u, offset: ab * K * C4),
                      c: buf.b + ab * T * K + rows.lowerBound * K, ldc: K)
        }
        if usesPointSplit(g, .forward, prepared: !own) {
            runByPoints(g, workspace, accumulator: 0, shared: su.floats, rows: { $0 }, prepare: prepare, before: { buf, shared, chunk, mine in
                transformInput(v: buf.a + (mine.lowerBound - chunk.lowerBound) * tpi * C4, x: x.data, zeros: shared, g: g,
                               first: mine.lowerBound, count: mine.count, planeImages: chunk.count)
            }, gemm: { buf, _, shared, T, ab, rows, _ in gemm(buf, shared + z, T, ab, rows)
            }, after: { buf, _, chunk, mine in
                transformOutput(y: y.data, m: buf.b + (mine.lowerBound - chunk.lowerBound) * tpi * K, sink: buf.sink, g: g,
                                first: mine.lowerBound, count: mine.count, planeImages: chunk.count, epilogue: epilogue)
            })
            return
        }
        run(g, workspace, reserve: 0, shared: su.floats, prepared: !own, prepare: prepare,
            body: { _, buf, _, shared, _, first, count in
            let u = prepared.map { UnsafePointer($0.u.data) } ?? shared + z
            let T = count * tilesPerImage(g)
            transformInput(v: buf.a, x: x.data, zeros: shared, g: g, first: first, count: count)
            for ab in 0..<a2 { gemm(buf, u, T, ab, 0..<T) }
            transformOutput(y: y.data, m: buf.b, sink: buf.sink, g: g, first: first, count: count, epilogue: epilogue)
        })
    }

    /// dx = the input gradient (overwrites dx) for an eligible geometry, then `epilogue` per image.
    /// dx [N, H, W, C], dy [N, Ho, Wo, K], w [K, 4, 4, C] (or `prepared`). Also the transposed
    /// convolution's forward (x = dy, y = dx).
    public func backwardInput(dx: Tensor, dy: Tensor, w: Tensor?, prepared: Weights? = nil, g: ConvGeometry,
                              epilogue: ConvEpilogue? = nil, workspace: Workspace = .shared) {
        let op = "Winograd \(self) input gradient"
        precondition(Winograd.isEligible(g), "\(op): \(g) is not a 4x4 stride-2 pad-1 convolution of an even-sized input")
        Conv.check(dx, g.inputShape, "dx", op, g); Conv.check(dy, g.outputShape, "dy", op, g)
        if let w { Conv.check(w, g.weightShape, "w", op, g) } else { precondition(prepared != nil, "\(op): no weights") }
        checkPrepared(prepared, g, op)
        let blas = BLAS.shared, K = g.outChannels, C4 = 4 * g.inChannels
        let a2 = alpha * alpha, own = prepared == nil, imagePixels = g.height * g.width, tpi = tilesPerImage(g)
        let su = SharedU(self, g, own: own), z = su.zeros
        let prepare = { (shared: MP) in su.fill(shared, self, w: own ? w : nil, g: g) }
        // dV[ab] = dM[ab] U[ab] on tiles `rows` of a chunk of T tiles.
        func gemm(_ buf: Buffers, _ u: P, _ T: Int, _ ab: Int, _ rows: Range<Int>) {
            blas.gemm(m: rows.count, n: C4, k: K, a: buf.b + ab * T * K + rows.lowerBound * K, lda: K,
                      b: u + ab * K * C4, ldb: C4, roundedB: su.rounded(u, offset: ab * K * C4),
                      c: buf.a + ab * T * C4 + rows.lowerBound * C4, ldc: C4)
        }
        if usesPointSplit(g, .inputGradient, prepared: !own) {
            runByPoints(g, workspace, accumulator: 0, shared: su.floats, rows: { $0 }, prepare: prepare, before: { buf, shared, chunk, mine in
                transformOutputGradient(dm: buf.b + (mine.lowerBound - chunk.lowerBound) * tpi * K, dy: dy.data, zeros: shared, g: g,
                                        first: mine.lowerBound, count: mine.count, planeImages: chunk.count)
            }, gemm: { buf, _, shared, T, ab, rows, _ in gemm(buf, shared + z, T, ab, rows)
            }, after: { buf, _, chunk, mine in
                transformInputGradient(dx: dx.data, dv: buf.a + (mine.lowerBound - chunk.lowerBound) * tpi * C4, sink: buf.sink, g: g,
                                       first: mine.lowerBound, count: mine.count, planeImages: chunk.count)
                if let epilogue {
                    epilogue.apply(dx.data + mine.lowerBound * imagePixels * g.inChannels, pixels: mine.count * imagePixels, channels: g.inChannels)
                }
            })
            return
        }
        run(g, workspace, reserve: 0, shared: su.floats, prepared: !own, prepare: prepare,
            body: { _, buf, _, shared, _, first, count in
            let u = prepared.map { UnsafePointer($0.u.data) } ?? shared + z
            let T = count * tilesPerImage(g)
            transformOutputGradient(dm: buf.b, dy: dy.data, zeros: shared, g: g, first: first, count: count)
            for ab in 0..<a2 { gemm(buf, u, T, ab, 0..<T) }
            transformInputGradient(dx: dx.data, dv: buf.a, sink: buf.sink, g: g, first: first, count: count)
            if let epilogue {
                epilogue.apply(dx.data + first * imagePixels * g.inChannels, pixels: count * imagePixels, channels: g.inChannels)
            }
        })
    }

    /// dw += the weight gradient for an eligible geometry. dw [K, 4, 4, C], x [N, H, W, C], dy [N, Ho, Wo, K].
    /// Each worker sums its share into a [alpha^2][K][4C] partial of its own; the partials are
    /// added in worker order (results do not depend on timing) while transforming back into dw.
    public func backwardWeight(dw: Tensor, x: Tensor, dy: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        let op = "Winograd \(self) weight gradient"
        precondition(Winograd.isEligible(g), "\(op): \(g) is not a 4x4 stride-2 pad-1 convolution of an even-sized input")
        Conv.check(dw, g.weightShape, "dw", op, g); Conv.check(x, g.inputShape, "x", op, g)
        Conv.check(dy, g.outputShape, "dy", op, g)
        if g.batch == 0 { return }
        let blas = BLAS.shared, K = g.outChannels, C4 = 4 * g.inChannels, z = Winograd.round16(max(g.inChannels, K))
        let a2 = alpha * alpha, tpi = tilesPerImage(g)
        // dU[ab] rows `rows` (of K) += (or = on a first chunk) dM[ab]^T V[ab] over a chunk of T tiles.
        func gemm(_ buf: Buffers, _ du: MP, _ T: Int, _ ab: Int, _ rows: Range<Int>, _ firstChunk: Bool) {
            blas.gemm(transA: true, m: rows.count, n: C4, k: T, a: buf.b + ab * T * K + rows.lowerBound, lda: K,
                       b: buf.a + ab * T * C4, ldb: C4, beta: firstChunk ? 0 : 1, c: du + ab * K * C4 + rows.lowerBound * C4, ldc: C4)
        }
        // dw += G^T (the sum of the parts, in order) G.
        func addToWeights(_ parts: [MP]) {
            parts.map { UnsafePointer($0) }.withUnsafeBufferPointer { parts in
                Parallel.forRanges(K, grain: max(1, 16_384 / (a2 * C4))) { range in
                    transformWeightGradient(dw: dw.data, parts: parts, g: g, k: range)
                }
            }
        }
        if usesPointSplit(g, .weightGradient, prepared: false) {
            // dU [alpha^2][K][4C] summed over the whole batch, each element by one worker (K rows cut).
            runByPoints(g, workspace, accumulator: a2 * K * C4, shared: z, rows: { _ in K }, prepare: { shared in
                shared.update(repeating: 0, count: z)
            }, before: { buf, shared, chunk, mine in
                let off = (mine.lowerBound - chunk.lowerBound) * tpi
                transformInput(v: buf.a + off * C4, x: x.data, zeros: shared, g: g, first: mine.lowerBound, count: mine.count, planeImages: chunk.count)
                transformOutputGradient(dm: buf.b + off * K, dy: dy.data, zeros: shared, g: g, first: mine.lowerBound, count: mine.count,
                                        planeImages: chunk.count)
            }, gemm: { buf, du, _, T, ab, rows, firstChunk in gemm(buf, du, T, ab, rows, firstChunk)
            }, finish: { du in addToWeights([du]) })
            return
        }
        run(g, workspace, reserve: a2 * K * C4, shared: z, prepare: { shared in
            shared.update(repeating: 0, count: z)
        }, body: { _, buf, partial, shared, firstChunk, first, count in
            let T = count * tilesPerImage(g)
            transformInput(v: buf.a, x: x.data, zeros: shared, g: g, first: first, count: count)
            transformOutputGradient(dm: buf.b, dy: dy.data, zeros: shared, g: g, first: first, count: count)
            for ab in 0..<a2 { gemm(buf, partial, T, ab, 0..<K, firstChunk) }
        }, finish: addToWeights)
    }

    // MARK: transforms (F(2x2) and F(4x4): the unrolled kernels; `forceGeneric`: the generic ones, same rule)

    /// 2 or 4: the unrolled kernels of that tile run; 0: the generic ones (`forceGeneric`, or another tile).
    var unrolled: Int { Winograd.forceGeneric || (tile != 2 && tile != 4) ? 0 : tile }

    /// U[p][k][(by, bx, c)] = (G g G^T)[p] with g[ay][ax] = w[k, 2ay + by, 2ax + bx, c]. In parallel over k.
    func transformWeights(u: MP, w: P, g: ConvGeometry) {
        let C = g.inChannels, K = g.outChannels, C4 = 4 * C, C8 = C / 8 * 8, plane = K * C4
        let a = alpha, unrolled = unrolled, gr = gRows.ref
        Parallel.forRanges(K, grain: max(1, 16_384 / (a * a * C4))) { range in
            let tmp8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: 2 * a), tmp1 = UnsafeMutablePointer<Float>.allocate(capacity: 2 * a)
            let src = UnsafeMutablePointer<P>.allocate(capacity: 4)
            defer { tmp8.deallocate(); tmp1.deallocate(); src.deallocate() }
            for k in range {
                for by in 0..<2 { for bx in 0..<2 {
                    let s = w + ((k * 4 + by) * 4 + bx) * C
                    let s00 = s, s01 = s + 2 * C, s10 = s + 8 * C, s11 = s + 10 * C
                    let dst = u + k * C4 + (2 * by + bx) * C
                    if unrolled == 2 {
                        Winograd.expand(SIMD8<Float>.self, 0, C8, s00, s01, s10, s11, dst, plane)
                        Winograd.expand(Float.self, C8, C, s00, s01, s10, s11, dst, plane)
                    } else if unrolled == 4 {
                        Winograd.weightTile4(SIMD8<Float>.self, 0, C8, s00, s01, s10, s11, dst, plane)
                        Winograd.weightTile4(Float.self, C8, C, s00, s01, s10, s11, dst, plane)
                    } else {
                        src[0] = s00; src[1] = s01; src[2] = s10; src[3] = s11
                        Winograd.expandGeneric(SIMD8<Float>.self, 0, C8, gr, gr, a, 2, src, tmp8, dst, plane)
                        Winograd.expandGeneric(Float.self, C8, C, gr, gr, a, 2, src, tmp1, dst, plane)
                    }
                } }
            }
        }
    }

    /// V = B^T d B for every tile of images first ..< first + count: V [alpha^2][tiles][4C].
    func transformInput(v: MP, x: P, zeros: P, g: ConvGeometry, first: Int, count: Int, planeImages: Int? = nil) {
        let H = g.height, W = g.width, C = g.inChannels, C4 = 4 * C, C8 = C / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = (planeImages ?? count) * Ty * Tx * C4, m = tile, a = alpha
        let unrolled = unrolled, bt = btRows.ref
        let src = UnsafeMutablePointer<P>.allocate(capacity: a * a)
        let tmp8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: a * a), tmp1 = UnsafeMutablePointer<Float>.allocate(capacity: a * a)
        defer { src.deallocate(); tmp8.deallocate(); tmp1.deallocate() }
        for nr in 0..<count {
            let img = x + (first + nr) * H * W * C
            @inline(__always) func at(_ r: Int, _ c: Int) -> P { r >= 0 && r < H && c >= 0 && c < W ? img + (r * W + c) * C : zeros }
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                for by in 0..<2 { for bx in 0..<2 {
                    // d[i][j] = u[m ty + i, m tx + j, (by, bx, :)] = x[2(m ty + i) + by - 1, 2(m tx + j) + bx - 1, :]
                    let r = 2 * m * ty + by - 1, c = 2 * m * tx + bx - 1
                    let dst = v + t * C4 + (2 * by + bx) * C
                    if unrolled == 2 {
                        let s00 = at(r, c), s01 = at(r, c + 2), s02 = at(r, c + 4)
                        let s10 = at(r + 2, c), s11 = at(r + 2, c + 2), s12 = at(r + 2, c + 4)
                        let s20 = at(r + 4, c), s21 = at(r + 4, c + 2), s22 = at(r + 4, c + 4)
                        Winograd.inputTile(SIMD8<Float>.self, 0, C8, s00, s01, s02, s10, s11, s12, s20, s21, s22, dst, plane)
                        Winograd.inputTile(Float.self, C8, C, s00, s01, s02, s10, s11, s12, s20, s21, s22, dst, plane)
                    } else if unrolled == 4 {
                        for i in 0..<5 { for j in 0..<5 { src[i * 5 + j] = at(r + 2 * i, c + 2 * j) } }
                        Winograd.inputTile4(SIMD8<Float>.self, 0, C8, src, dst, plane)
                        Winograd.inputTile4(Float.self, C8, C, src, dst, plane)
                    } else {
                        for i in 0..<a { for j in 0..<a { src[i * a + j] = at(r + 2 * i, c + 2 * j) } }
                        Winograd.inputTileGeneric(SIMD8<Float>.self, 0, C8, bt, a, src, tmp8, dst, plane)
                        Winograd.inputTileGeneric(Float.self, C8, C, bt, a, src, tmp1, dst, plane)
                    }
                } }
            } }
        }
    }

    /// y = A^T M A for every tile: M [alpha^2][tiles][K] -> y [N, Ho, Wo, K] (outputs outside
    /// Ho x Wo go to `sink`), then the epilogue on each pixel written.
    func transformOutput(y: MP, m mm: P, sink: MP, g: ConvGeometry, first: Int, count: Int, planeImages: Int? = nil, epilogue: ConvEpilogue?) {
        let Ho = g.outHeight, Wo = g.outWidth, K = g.outChannels, K8 = K / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = (planeImages ?? count) * Ty * Tx * K, m = tile, a = alpha
        let unrolled = unrolled, at = atRows.ref
        let dst = UnsafeMutablePointer<MP>.allocate(capacity: m * m)
        let tmp8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: m * a), tmp1 = UnsafeMutablePointer<Float>.allocate(capacity: m * a)
        defer { dst.deallocate(); tmp8.deallocate(); tmp1.deallocate() }
        for nr in 0..<count {
            let img = y + (first + nr) * Ho * Wo * K
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                let src = mm + t * K
                for r in 0..<m { for s in 0..<m {
                    let oy = m * ty + r, ox = m * tx + s
                    dst[r * m + s] = oy < Ho && ox < Wo ? img + (oy * Wo + ox) * K : sink
                } }
                if unrolled == 2 {
                    Winograd.outputTile(SIMD8<Float>.self, 0, K8, src, plane, dst[0], dst[1], dst[2], dst[3])
                    Winograd.outputTile(Float.self, K8, K, src, plane, dst[0], dst[1], dst[2], dst[3])
                } else if unrolled == 4 {
                    Winograd.outputTile4(SIMD8<Float>.self, 0, K8, src, plane, dst)
                    Winograd.outputTile4(Float.self, K8, K, src, plane, dst)
                } else {
                    Winograd.outputTileGeneric(SIMD8<Float>.self, 0, K8, at, a, m, src, plane, tmp8, dst)
                    Winograd.outputTileGeneric(Float.self, K8, K, at, a, m, src, plane, tmp1, dst)
                }
                if let epilogue {
                    for i in 0..<(m * m) where dst[i] != sink { epilogue.apply(dst[i], pixels: 1, channels: K) }
                }
            } }
        }
    }

    /// dM = A dY A^T for every tile: dy [N, Ho, Wo, K] -> dM [alpha^2][tiles][K] (dy outside Ho x Wo is zero).
    func transformOutputGradient(dm: MP, dy: P, zeros: P, g: ConvGeometry, first: Int, count: Int, planeImages: Int? = nil) {
        let Ho = g.outHeight, Wo = g.outWidth, K = g.outChannels, K8 = K / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = (planeImages ?? count) * Ty * Tx * K, m = tile, a = alpha
        let unrolled = unrolled, ac = atCols.ref
        let src = UnsafeMutablePointer<P>.allocate(capacity: m * m)
        let tmp8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: m * a), tmp1 = UnsafeMutablePointer<Float>.allocate(capacity: m * a)
        defer { src.deallocate(); tmp8.deallocate(); tmp1.deallocate() }
        for nr in 0..<count {
            let img = dy + (first + nr) * Ho * Wo * K
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                for r in 0..<m { for s in 0..<m {
                    let oy = m * ty + r, ox = m * tx + s
                    src[r * m + s] = oy < Ho && ox < Wo ? img + (oy * Wo + ox) * K : zeros
                } }
                let out = dm + t * K
                if unrolled == 2 {
                    Winograd.expand(SIMD8<Float>.self, 0, K8, src[0], src[1], src[2], src[3], out, plane)
                    Winograd.expand(Float.self, K8, K, src[0], src[1], src[2], src[3], out, plane)
                } else if unrolled == 4 {
                    Winograd.outputGradientTile4(SIMD8<Float>.self, 0, K8, src, out, plane)
                    Winograd.outputGradientTile4(Float.self, K8, K, src, out, plane)
                } else {
                    Winograd.expandGeneric(SIMD8<Float>.self, 0, K8, ac, ac, a, m, src, tmp8, out, plane)
                    Winograd.expandGeneric(Float.self, K8, K, ac, ac, a, m, src, tmp1, out, plane)
                }
            } }
        }
    }

    /// dx = depth-to-space of the sum over tiles of B dV B^T: dV [alpha^2][tiles][4C] -> dx
    /// [N, H, W, C], overwriting images first ..< first + count (the padding ring goes to `sink`).
    func transformInputGradient(dx: MP, dv: P, sink: MP, g: ConvGeometry, first: Int, count: Int, planeImages: Int? = nil) {
        let H = g.height, W = g.width, C = g.inChannels, C4 = 4 * C, C8 = C / 8 * 8
        let Ty = tileRows(g), Tx = tileCols(g), plane = (planeImages ?? count) * Ty * Tx * C4, m = tile, a = alpha
        let unrolled = unrolled, bc = btCols.ref
        let dst = UnsafeMutablePointer<MP>.allocate(capacity: a * a)
        let tmp8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: a * a), tmp1 = UnsafeMutablePointer<Float>.allocate(capacity: a * a)
        defer { dst.deallocate(); tmp8.deallocate(); tmp1.deallocate() }
        for nr in 0..<count {
            let img = dx + (first + nr) * H * W * C
            img.update(repeating: 0, count: H * W * C)
            @inline(__always) func at(_ r: Int, _ c: Int) -> MP { r >= 0 && r < H && c >= 0 && c < W ? img + (r * W + c) * C : sink }
            for ty in 0..<Ty { for tx in 0..<Tx {
                let t = (nr * Ty + ty) * Tx + tx
                for by in 0..<2 { for bx in 0..<2 {
                    let r = 2 * m * ty + by - 1, c = 2 * m * tx + bx - 1
                    let src = dv + t * C4 + (2 * by + bx) * C
                    if unrolled == 2 {
                        let d00 = at(r, c), d01 = at(r, c + 2), d02 = at(r, c + 4)
                        let d10 = at(r + 2, c), d11 = at(r + 2, c + 2), d12 = at(r + 2, c + 4)
                        let d20 = at(r + 4, c), d21 = at(r + 4, c + 2), d22 = at(r + 4, c + 4)
                        Winograd.inputGradientTile(SIMD8<Float>.self, 0, C8, src, plane, d00, d01, d02, d10, d11, d12, d20, d21, d22)
                        Winograd.inputGradientTile(Float.self, C8, C, src, plane, d00, d01, d02, d10, d11, d12, d20, d21, d22)
                    } else if unrolled == 4 {
                        for i in 0..<5 { for j in 0..<5 { dst[i * 5 + j] = at(r + 2 * i, c + 2 * j) } }
                        Winograd.inputGradientTile4(SIMD8<Float>.self, 0, C8, src, plane, dst)
                        Winograd.inputGradientTile4(Float.self, C8, C, src, plane, dst)
                    } else {
                        for i in 0..<a { for j in 0..<a { dst[i * a + j] = at(r + 2 * i, c + 2 * j) } }
                        Winograd.inputGradientTileGeneric(SIMD8<Float>.self, 0, C8, bc, a, src, plane, tmp8, dst)
                        Winograd.inputGradientTileGeneric(Float.self, C8, C, bc, a, src, plane, tmp1, dst)
                    }
                } }
            } }
        }
    }

    /// dw[k, 2ay + by, 2ax + bx, c] += (G^T dU G)[ay][ax] with dU[p][k][(by, bx, c)] = the sum of the
    /// workers' partials (in worker order), for k in `k`.
    func transformWeightGradient(dw: MP, parts: UnsafeBufferPointer<P>, g: ConvGeometry, k range: Range<Int>) {
        let C = g.inChannels, K = g.outChannels, C4 = 4 * C, C8 = C / 8 * 8, plane = K * C4, a = alpha
        let unrolled = unrolled, gc = gCols.ref
        let sum8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: a * a), sum1 = UnsafeMutablePointer<Float>.allocate(capacity: a * a)
        let tmp8 = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: 2 * a), tmp1 = UnsafeMutablePointer<Float>.allocate(capacity: 2 * a)
        let dst = UnsafeMutablePointer<MP>.allocate(capacity: 4)
        defer { sum8.deallocate(); sum1.deallocate(); tmp8.deallocate(); tmp1.deallocate(); dst.deallocate() }
        for k in range {
            for by in 0..<2 { for bx in 0..<2 {
                let off = k * C4 + (2 * by + bx) * C
                let d = dw + ((k * 4 + by) * 4 + bx) * C
                let d00 = d, d01 = d + 2 * C, d10 = d + 8 * C, d11 = d + 10 * C
                if unrolled == 2 {
                    Winograd.weightGradientTile(SIMD8<Float>.self, 0, C8, parts, off, plane, d00, d01, d10, d11)
                    Winograd.weightGradientTile(Float.self, C8, C, parts, off, plane, d00, d01, d10, d11)
                } else if unrolled == 4 {
                    Winograd.weightGradientTile4(SIMD8<Float>.self, 0, C8, parts, off, plane, d00, d01, d10, d11)
                    Winograd.weightGradientTile4(Float.self, C8, C, parts, off, plane, d00, d01, d10, d11)
                } else {
                    dst[0] = d00; dst[1] = d01; dst[2] = d10; dst[3] = d11
                    Winograd.weightGradientTileGeneric(SIMD8<Float>.self, 0, C8, gc, a, parts, off, plane, sum8, tmp8, dst)
                    Winograd.weightGradientTileGeneric(Float.self, C8, C, gc, a, parts, off, plane, sum1, tmp1, dst)
                }
            } }
        }
    }

    // MARK: generic per-tile kernels over channels lo ..< hi (L: 8 channels at a time, or 1)

    /// The workers' weight-gradient partials at element i, added in worker order (every tile size's
    /// weight-gradient transform sums them so; results do not depend on timing).
    @inline(__always)
    static func partialSum<L: WinogradLane>(_ parts: UnsafeBufferPointer<P>, _ i: Int) -> L {
        var v = L.load(parts[0] + i)
        for j in 1..<parts.count { v = v + L.load(parts[j] + i) }
        return v
    }

    /// sum_i coef_i * value(i) over row r's non-zero terms, by the rule of note 4.
    @inline(__always)
    static func combine<L: WinogradLane>(_ t: WinogradTerms.Ref, _ r: Int, _ value: (Int) -> L) -> L {
        var n = t.start[r]
        let end = t.start[r + 1], c0 = t.coef[n], v0 = value(t.index[n])
        var acc = c0 == 1 ? v0 : c0 == -1 ? -v0 : v0.scaled(c0)
        n += 1
        while n < end {
            let c = t.coef[n], v = value(t.index[n])
            acc = c == 1 ? acc + v : c == -1 ? acc - v : acc + v.scaled(c)
            n += 1
        }
        return acc
    }

    /// out[p] = (L s R^T)[p] at dst + p * plane (p = (xi, eta) in alpha x alpha) for an n x n s
    /// at `src[r * n + s]`; `left`/`right`: rows of L and R, each over n. U = G g G^T (n = 2) and
    /// dM = A dY A^T (n = m, rows of A = columns of A^T).
    @inline(__always)
    static func expandGeneric<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ left: WinogradTerms.Ref, _ right: WinogradTerms.Ref,
                                               _ a: Int, _ n: Int, _ src: UnsafeMutablePointer<P>, _ tmp: UnsafeMutablePointer<L>, _ dst: MP, _ plane: Int) {
        var c = lo
        while c < hi {
            for xi in 0..<a { for s in 0..<n { tmp[xi * n + s] = combine(left, xi) { L.load(src[$0 * n + s] + c) } } }
            for xi in 0..<a { for eta in 0..<a { combine(right, eta) { tmp[xi * n + $0] }.store(dst + (xi * a + eta) * plane + c) } }
            c += L.width
        }
    }

    /// out[p] = (B^T d B)[p] at dst + p * plane, d[i][j] at src[i * a + j].
    @inline(__always)
    static func inputTileGeneric<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ bt: WinogradTerms.Ref, _ a: Int,
                                                  _ src: UnsafeMutablePointer<P>, _ tmp: UnsafeMutablePointer<L>, _ dst: MP, _ plane: Int) {
        var c = lo
        while c < hi {
            for xi in 0..<a { for j in 0..<a { tmp[xi * a + j] = combine(bt, xi) { L.load(src[$0 * a + j] + c) } } }
            for xi in 0..<a { for eta in 0..<a { combine(bt, eta) { tmp[xi * a + $0] }.store(dst + (xi * a + eta) * plane + c) } }
            c += L.width
        }
    }

    /// d[r * m + s] = (A^T M A)[r][s], M[p] at src + p * plane.
    @inline(__always)
    static func outputTileGeneric<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ at: WinogradTerms.Ref, _ a: Int, _ m: Int,
                                                   _ src: P, _ plane: Int, _ tmp: UnsafeMutablePointer<L>, _ dst: UnsafeMutablePointer<MP>) {
        var c = lo
        while c < hi {
            for r in 0..<m { for eta in 0..<a { tmp[r * a + eta] = combine(at, r) { L.load(src + ($0 * a + eta) * plane + c) } } }
            for r in 0..<m { for s in 0..<m { combine(at, s) { tmp[r * a + $0] }.store(dst[r * m + s] + c) } }
            c += L.width
        }
    }

    /// d[i * a + j] += (B dV B^T)[i][j], dV[p] at src + p * plane; `bc`: columns of B^T (rows of B).
    @inline(__always)
    static func inputGradientTileGeneric<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ bc: WinogradTerms.Ref, _ a: Int,
                                                          _ src: P, _ plane: Int, _ tmp: UnsafeMutablePointer<L>, _ dst: UnsafeMutablePointer<MP>) {
        var c = lo
        while c < hi {
            for i in 0..<a { for eta in 0..<a { tmp[i * a + eta] = combine(bc, i) { L.load(src + ($0 * a + eta) * plane + c) } } }
            for i in 0..<a { for j in 0..<a {
                let d = dst[i * a + j] + c
                (L.load(d) + combine(bc, j) { tmp[i * a + $0] }).store(d)
            } }
            c += L.width
        }
    }

    /// d[ay * 2 + ax] += (G^T S G)[ay][ax], S[p] = the sum over the partials, in order, of
    /// part[off + p * plane + c]; `gc`: columns of G.
    @inline(__always)
    static func weightGradientTileGeneric<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ gc: WinogradTerms.Ref, _ a: Int,
                                                           _ parts: UnsafeBufferPointer<P>, _ off: Int, _ plane: Int,
                                                           _ sum: UnsafeMutablePointer<L>, _ tmp: UnsafeMutablePointer<L>, _ dst: UnsafeMutablePointer<MP>) {
        var c = lo
        while c < hi {
            for p in 0..<(a * a) { sum[p] = partialSum(parts, off + p * plane + c) }
            for ay in 0..<2 { for eta in 0..<a { tmp[ay * a + eta] = combine(gc, ay) { sum[$0 * a + eta] } } }
            for ay in 0..<2 { for ax in 0..<2 {
                let d = dst[ay * 2 + ax] + c
                (L.load(d) + combine(gc, ax) { tmp[ay * a + $0] }).store(d)
            } }
            c += L.width
        }
    }

    // MARK: F(2x2) per-tile kernels, unrolled (the rule of note 4 written out), over channels lo ..< hi

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
            @inline(__always) func s(_ ab: Int) -> L { partialSum(parts, off + ab * plane + c) }
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

    // MARK: F(4x4) per-tile kernels, unrolled (the rule of note 4 written out), over channels lo ..< hi
    //
    // The 1-D transforms below are the generic `combine` over each row of Winograd.f4's matrices,
    // term by term: the first non-zero term (+1: the value, -1: its negation, else `scaled`), then
    // the others in index order (+1: add, -1: subtract, else add the `scaled` term). Coefficients
    // are the Float values `init(tile: 4)` computes (1/2, 1/4, 1/8, 2 exact; -1/6, -1/3 and 8/3
    // rounded to the nearest Float: -0x1.555556p-3, -0x1.555556p-2, 0x1.555556p+1); testF4UnrolledKernelsMatchGenericBitForBit checks every pass.

    /// B^T x (rows of B^T): x0 - 2x1 - x2 + 2x3, -x1/2 + x2/2 + x3, -x1/6 + x2/2 - x3/3, 8x1/3 - 8x3/3, x1/2 - x2 - x3/2 + x4.
    @inline(__always)
    static func f4BT<L: WinogradLane>(_ x0: L, _ x1: L, _ x2: L, _ x3: L, _ x4: L) -> (L, L, L, L, L) {
        let h2 = x2.scaled(0.5)
        return (((x0 + x1.scaled(-2)) - x2) + x3.scaled(2),
                (x1.scaled(-0.5) + h2) + x3,
                (x1.scaled(-0x1.555556p-3) + h2) + x3.scaled(-0x1.555556p-2),
                x1.scaled(0x1.555556p+1) + x3.scaled(-0x1.555556p+1),
                ((x1.scaled(0.5) - x2) + x3.scaled(-0.5)) + x4)
    }

    /// B x (columns of B^T): x0, -2x0 - x1/2 - x2/6 + 8x3/3 + x4/2, -x0 + x1/2 + x2/2 - x4, 2x0 + x1 - x2/3 - 8x3/3 - x4/2, x4.
    @inline(__always)
    static func f4B<L: WinogradLane>(_ x0: L, _ x1: L, _ x2: L, _ x3: L, _ x4: L) -> (L, L, L, L, L) {
        (x0,
         (((x0.scaled(-2) + x1.scaled(-0.5)) + x2.scaled(-0x1.555556p-3)) + x3.scaled(0x1.555556p+1)) + x4.scaled(0.5),
         ((-x0 + x1.scaled(0.5)) + x2.scaled(0.5)) - x4,
         (((x0.scaled(2) + x1) + x2.scaled(-0x1.555556p-2)) + x3.scaled(-0x1.555556p+1)) + x4.scaled(-0.5),
         x4)
    }

    /// A^T x (rows of A^T): x0 + x1 + x2 + x3, x1 - x2 + x3/2, x1 + x2 + x3/4, x1 - x2 + x3/8 + x4.
    @inline(__always)
    static func f4AT<L: WinogradLane>(_ x0: L, _ x1: L, _ x2: L, _ x3: L, _ x4: L) -> (L, L, L, L) {
        let d = x1 - x2, s = x1 + x2
        return (((x0 + x1) + x2) + x3, d + x3.scaled(0.5), s + x3.scaled(0.25), (d + x3.scaled(0.125)) + x4)
    }

    /// A x (columns of A^T): x0, x0 + x1 + x2 + x3, x0 - x1 + x2 - x3, x0 + x1/2 + x2/4 + x3/8, x3.
    @inline(__always)
    static func f4A<L: WinogradLane>(_ x0: L, _ x1: L, _ x2: L, _ x3: L) -> (L, L, L, L, L) {
        (x0, ((x0 + x1) + x2) + x3, ((x0 - x1) + x2) - x3,
         ((x0 + x1.scaled(0.5)) + x2.scaled(0.25)) + x3.scaled(0.125), x3)
    }

    /// G x (rows of G): x0, x0 + x1, x0 - x1, x0 + x1/2, x1.
    @inline(__always)
    static func f4G<L: WinogradLane>(_ x0: L, _ x1: L) -> (L, L, L, L, L) {
        (x0, x0 + x1, x0 - x1, x0 + x1.scaled(0.5), x1)
    }

    /// G^T x (columns of G): x0 + x1 + x2 + x3, x1 - x2 + x3/2 + x4.
    @inline(__always)
    static func f4GT<L: WinogradLane>(_ x0: L, _ x1: L, _ x2: L, _ x3: L, _ x4: L) -> (L, L) {
        (((x0 + x1) + x2) + x3, ((x1 - x2) + x3.scaled(0.5)) + x4)
    }

    /// Stores the 5 values of row `r` of a 5x5 result at dst + (5r + j) * plane.
    @inline(__always)
    static func f4StoreRow<L: WinogradLane>(_ v: (L, L, L, L, L), _ dst: MP, _ r: Int, _ plane: Int) {
        let o = dst + 5 * r * plane
        v.0.store(o); v.1.store(o + plane); v.2.store(o + 2 * plane); v.3.store(o + 3 * plane); v.4.store(o + 4 * plane)
    }

    /// Loads M[5r + j] (j = 0..<5) at p + (5r + j) * plane.
    @inline(__always)
    static func f4LoadRow<L: WinogradLane>(_ p: P, _ r: Int, _ plane: Int) -> (L, L, L, L, L) {
        let q = p + 5 * r * plane
        return (L.load(q), L.load(q + plane), L.load(q + 2 * plane), L.load(q + 3 * plane), L.load(q + 4 * plane))
    }

    /// out[p] = (B^T d B)[p] at dst + p * plane, d[i][j] at s[5i + j] (25 pointers).
    @inline(__always)
    static func inputTile4<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ s: UnsafeMutablePointer<P>, _ dst: MP, _ plane: Int) {
        let s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3], s4 = s[4], s5 = s[5], s6 = s[6], s7 = s[7], s8 = s[8], s9 = s[9]
        let s10 = s[10], s11 = s[11], s12 = s[12], s13 = s[13], s14 = s[14], s15 = s[15], s16 = s[16], s17 = s[17]
        let s18 = s[18], s19 = s[19], s20 = s[20], s21 = s[21], s22 = s[22], s23 = s[23], s24 = s[24]
        var c = lo
        while c < hi {
            // rows first: column j of B^T d
            let t0 = f4BT(L.load(s0 + c), L.load(s5 + c), L.load(s10 + c), L.load(s15 + c), L.load(s20 + c))
            let t1 = f4BT(L.load(s1 + c), L.load(s6 + c), L.load(s11 + c), L.load(s16 + c), L.load(s21 + c))
            let t2 = f4BT(L.load(s2 + c), L.load(s7 + c), L.load(s12 + c), L.load(s17 + c), L.load(s22 + c))
            let t3 = f4BT(L.load(s3 + c), L.load(s8 + c), L.load(s13 + c), L.load(s18 + c), L.load(s23 + c))
            let t4 = f4BT(L.load(s4 + c), L.load(s9 + c), L.load(s14 + c), L.load(s19 + c), L.load(s24 + c))
            // then columns: row xi of (B^T d) B
            let o = dst + c
            f4StoreRow(f4BT(t0.0, t1.0, t2.0, t3.0, t4.0), o, 0, plane)
            f4StoreRow(f4BT(t0.1, t1.1, t2.1, t3.1, t4.1), o, 1, plane)
            f4StoreRow(f4BT(t0.2, t1.2, t2.2, t3.2, t4.2), o, 2, plane)
            f4StoreRow(f4BT(t0.3, t1.3, t2.3, t3.3, t4.3), o, 3, plane)
            f4StoreRow(f4BT(t0.4, t1.4, t2.4, t3.4, t4.4), o, 4, plane)
            c += L.width
        }
    }

    /// out[p] = (G g G^T)[p] at dst + p * plane for a 2x2 g (g[i][j] at s_ij).
    @inline(__always)
    static func weightTile4<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int,
                                             _ s00: P, _ s01: P, _ s10: P, _ s11: P, _ dst: MP, _ plane: Int) {
        var c = lo
        while c < hi {
            let t0 = f4G(L.load(s00 + c), L.load(s10 + c)), t1 = f4G(L.load(s01 + c), L.load(s11 + c))
            let o = dst + c
            f4StoreRow(f4G(t0.0, t1.0), o, 0, plane)
            f4StoreRow(f4G(t0.1, t1.1), o, 1, plane)
            f4StoreRow(f4G(t0.2, t1.2), o, 2, plane)
            f4StoreRow(f4G(t0.3, t1.3), o, 3, plane)
            f4StoreRow(f4G(t0.4, t1.4), o, 4, plane)
            c += L.width
        }
    }

    /// out[p] = (A dY A^T)[p] at dst + p * plane, dY[r][s] at s[4r + s] (16 pointers).
    @inline(__always)
    static func outputGradientTile4<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ s: UnsafeMutablePointer<P>, _ dst: MP, _ plane: Int) {
        let s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3], s4 = s[4], s5 = s[5], s6 = s[6], s7 = s[7]
        let s8 = s[8], s9 = s[9], s10 = s[10], s11 = s[11], s12 = s[12], s13 = s[13], s14 = s[14], s15 = s[15]
        var c = lo
        while c < hi {
            let t0 = f4A(L.load(s0 + c), L.load(s4 + c), L.load(s8 + c), L.load(s12 + c))
            let t1 = f4A(L.load(s1 + c), L.load(s5 + c), L.load(s9 + c), L.load(s13 + c))
            let t2 = f4A(L.load(s2 + c), L.load(s6 + c), L.load(s10 + c), L.load(s14 + c))
            let t3 = f4A(L.load(s3 + c), L.load(s7 + c), L.load(s11 + c), L.load(s15 + c))
            let o = dst + c
            f4StoreRow(f4A(t0.0, t1.0, t2.0, t3.0), o, 0, plane)
            f4StoreRow(f4A(t0.1, t1.1, t2.1, t3.1), o, 1, plane)
            f4StoreRow(f4A(t0.2, t1.2, t2.2, t3.2), o, 2, plane)
            f4StoreRow(f4A(t0.3, t1.3, t2.3, t3.3), o, 3, plane)
            f4StoreRow(f4A(t0.4, t1.4, t2.4, t3.4), o, 4, plane)
            c += L.width
        }
    }

    /// d[4r + s] = (A^T M A)[r][s] (16 pointers), M[p] at src + p * plane.
    @inline(__always)
    static func outputTile4<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ src: P, _ plane: Int, _ d: UnsafeMutablePointer<MP>) {
        let d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3], d4 = d[4], d5 = d[5], d6 = d[6], d7 = d[7]
        let d8 = d[8], d9 = d[9], d10 = d[10], d11 = d[11], d12 = d[12], d13 = d[13], d14 = d[14], d15 = d[15]
        var c = lo
        while c < hi {
            let p = src + c
            // rows first: column eta of A^T M
            let m0: (L, L, L, L, L) = f4LoadRow(p, 0, plane), m1: (L, L, L, L, L) = f4LoadRow(p, 1, plane)
            let m2: (L, L, L, L, L) = f4LoadRow(p, 2, plane), m3: (L, L, L, L, L) = f4LoadRow(p, 3, plane)
            let m4: (L, L, L, L, L) = f4LoadRow(p, 4, plane)
            let t0 = f4AT(m0.0, m1.0, m2.0, m3.0, m4.0), t1 = f4AT(m0.1, m1.1, m2.1, m3.1, m4.1)
            let t2 = f4AT(m0.2, m1.2, m2.2, m3.2, m4.2), t3 = f4AT(m0.3, m1.3, m2.3, m3.3, m4.3)
            let t4 = f4AT(m0.4, m1.4, m2.4, m3.4, m4.4)
            // then columns: row r of (A^T M) A
            let r0 = f4AT(t0.0, t1.0, t2.0, t3.0, t4.0)
            r0.0.store(d0 + c); r0.1.store(d1 + c); r0.2.store(d2 + c); r0.3.store(d3 + c)
            let r1 = f4AT(t0.1, t1.1, t2.1, t3.1, t4.1)
            r1.0.store(d4 + c); r1.1.store(d5 + c); r1.2.store(d6 + c); r1.3.store(d7 + c)
            let r2 = f4AT(t0.2, t1.2, t2.2, t3.2, t4.2)
            r2.0.store(d8 + c); r2.1.store(d9 + c); r2.2.store(d10 + c); r2.3.store(d11 + c)
            let r3 = f4AT(t0.3, t1.3, t2.3, t3.3, t4.3)
            r3.0.store(d12 + c); r3.1.store(d13 + c); r3.2.store(d14 + c); r3.3.store(d15 + c)
            c += L.width
        }
    }

    /// d[5i + j] += (B dV B^T)[i][j] (25 pointers), dV[p] at src + p * plane.
    @inline(__always)
    static func inputGradientTile4<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ src: P, _ plane: Int, _ d: UnsafeMutablePointer<MP>) {
        let d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3], d4 = d[4], d5 = d[5], d6 = d[6], d7 = d[7], d8 = d[8], d9 = d[9]
        let d10 = d[10], d11 = d[11], d12 = d[12], d13 = d[13], d14 = d[14], d15 = d[15], d16 = d[16], d17 = d[17]
        let d18 = d[18], d19 = d[19], d20 = d[20], d21 = d[21], d22 = d[22], d23 = d[23], d24 = d[24]
        @inline(__always) func add(_ v: L, _ q: MP) { (L.load(q) + v).store(q) }
        @inline(__always) func addRow(_ v: (L, L, L, L, L), _ q0: MP, _ q1: MP, _ q2: MP, _ q3: MP, _ q4: MP) {
            add(v.0, q0); add(v.1, q1); add(v.2, q2); add(v.3, q3); add(v.4, q4)
        }
        var c = lo
        while c < hi {
            let p = src + c
            let v0: (L, L, L, L, L) = f4LoadRow(p, 0, plane), v1: (L, L, L, L, L) = f4LoadRow(p, 1, plane)
            let v2: (L, L, L, L, L) = f4LoadRow(p, 2, plane), v3: (L, L, L, L, L) = f4LoadRow(p, 3, plane)
            let v4: (L, L, L, L, L) = f4LoadRow(p, 4, plane)
            // rows first: column eta of B dV
            let t0 = f4B(v0.0, v1.0, v2.0, v3.0, v4.0), t1 = f4B(v0.1, v1.1, v2.1, v3.1, v4.1)
            let t2 = f4B(v0.2, v1.2, v2.2, v3.2, v4.2), t3 = f4B(v0.3, v1.3, v2.3, v3.3, v4.3)
            let t4 = f4B(v0.4, v1.4, v2.4, v3.4, v4.4)
            // then columns: row i of (B dV) B^T, added into dx
            addRow(f4B(t0.0, t1.0, t2.0, t3.0, t4.0), d0 + c, d1 + c, d2 + c, d3 + c, d4 + c)
            addRow(f4B(t0.1, t1.1, t2.1, t3.1, t4.1), d5 + c, d6 + c, d7 + c, d8 + c, d9 + c)
            addRow(f4B(t0.2, t1.2, t2.2, t3.2, t4.2), d10 + c, d11 + c, d12 + c, d13 + c, d14 + c)
            addRow(f4B(t0.3, t1.3, t2.3, t3.3, t4.3), d15 + c, d16 + c, d17 + c, d18 + c, d19 + c)
            addRow(f4B(t0.4, t1.4, t2.4, t3.4, t4.4), d20 + c, d21 + c, d22 + c, d23 + c, d24 + c)
            c += L.width
        }
    }

    /// d_ij += (G^T S G)[i][j], S[p] = the sum over the partials, in order, of part[off + p * plane + c].
    @inline(__always)
    static func weightGradientTile4<L: WinogradLane>(_: L.Type, _ lo: Int, _ hi: Int, _ parts: UnsafeBufferPointer<P>,
                                                     _ off: Int, _ plane: Int, _ d00: MP, _ d01: MP, _ d10: MP, _ d11: MP) {
        var c = lo
        while c < hi {
            @inline(__always) func s(_ p: Int) -> L { partialSum(parts, off + p * plane + c) }
            let t0 = f4GT(s(0), s(5), s(10), s(15), s(20)), t1 = f4GT(s(1), s(6), s(11), s(16), s(21))
            let t2 = f4GT(s(2), s(7), s(12), s(17), s(22)), t3 = f4GT(s(3), s(8), s(13), s(18), s(23))
            let t4 = f4GT(s(4), s(9), s(14), s(19), s(24))
            let r0 = f4GT(t0.0, t1.0, t2.0, t3.0, t4.0), r1 = f4GT(t0.1, t1.1, t2.1, t3.1, t4.1)
            (L.load(d00 + c) + r0.0).store(d00 + c); (L.load(d01 + c) + r0.1).store(d01 + c)
            (L.load(d10 + c) + r1.0).store(d10 + c); (L.load(d11 + c) + r1.1).store(d11 + c)
            c += L.width
        }
    }
}

/// The non-zero coefficients (index, value) of each row of a transform matrix, in index order,
/// flat in memory (row r: entries start[r] ..< start[r + 1]), so the generic kernels read them
/// through plain pointers. Made once per tile size (`Winograd.f2`, `.f4`).
final class WinogradTerms: @unchecked Sendable {
    struct Ref { let index: UnsafePointer<Int>, coef: UnsafePointer<Float>, start: UnsafePointer<Int> }
    private let index: UnsafeMutablePointer<Int>, coef: UnsafeMutablePointer<Float>, start: UnsafeMutablePointer<Int>
    var ref: Ref { Ref(index: index, coef: coef, start: start) }

    init(_ rows: [[(Int, Float)]]) {
        let n = rows.reduce(0) { $0 + $1.count }
        precondition(rows.allSatisfy { !$0.isEmpty }, "WinogradTerms: a transform row without non-zero terms")
        index = .allocate(capacity: n); coef = .allocate(capacity: n); start = .allocate(capacity: rows.count + 1)
        var k = 0
        for (r, row) in rows.enumerated() {
            start[r] = k
            for (i, c) in row { index[k] = i; coef[k] = c; k += 1 }
        }
        start[rows.count] = k
    }
    deinit { index.deallocate(); coef.deallocate(); start.deallocate() }
}

/// What the per-tile kernels compute with: 8 floats (SIMD8) or one.
protocol WinogradLane {
    static var width: Int { get }
    static prefix func - (a: Self) -> Self
    static func load(_ p: UnsafePointer<Float>) -> Self
    func store(_ p: UnsafeMutablePointer<Float>)
    func scaled(_ c: Float) -> Self
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
}

extension Float: WinogradLane {
    @inline(__always) static var width: Int { 1 }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Float { p.pointee }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { p.pointee = self }
    @inline(__always) func scaled(_ c: Float) -> Float { c * self }
}

extension SIMD8: WinogradLane where Scalar == Float {
    @inline(__always) static var width: Int { 8 }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self)
    }
    @inline(__always) func scaled(_ c: Float) -> SIMD8<Float> { c * self }
}
