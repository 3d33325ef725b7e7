// Convolution and transposed convolution, NHWC.
//
// Dims: N = batch, H x W = input size, C = input channels, K = output channels,
// kh x kw = kernel, s = stride, p = padding, Ho x Wo = output size,
// P = kh*kw*C (one im2col row: the receptive field of one output pixel), R = N*Ho*Wo (rows).
//
// Layouts: x [N, H, W, C], y [N, Ho, Wo, K], weight w [K, kh, kw, C] (OHWI), cols [R, P] with
// each row ordered (ky, kx, c) to match a row of w. Then
//   forward:          y[R, K]   = cols[R, P] * w[K, P]^T
//   input gradient:   dcols[R, P] = dy[R, K] * w[K, P]   then col2im(dcols) -> dx
//   weight gradient:  dw[K, P] += dy[R, K]^T * cols[R, P]
// A transposed convolution is the adjoint of the convolution with the same geometry: its forward
// is that convolution's input gradient, its input gradient is that convolution's forward, and its
// weight gradient is that convolution's weight gradient with the roles of x and dy exchanged.
// One im2col/col2im + GEMM set serves both.
// The 4x4 stride-2 pad-1 convolutions (most of DiscoGAN's FLOPs) may instead run Winograd
// F(2x2, 2x2) or F(4x4, 2x2) (Winograd.swift), or for small channel counts the direct kernels
// (DirectConv.swift), chosen per pass by `Conv.kernel`: `Conv.algorithm` (DISCO_CONV), and under
// auto `Conv.preferredKernel`; the transposed convolutions follow, as they call these passes.

/// The geometry of a convolution (for a transposed convolution: of the convolution it is the adjoint of).
public struct ConvGeometry: Equatable, Sendable, CustomStringConvertible {
    public let batch, height, width, inChannels, outChannels, kernelH, kernelW, stride, padding: Int

    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int,
                kernel: Int, stride: Int, padding: Int) {
        self.init(batch: batch, height: height, width: width, inChannels: inChannels, outChannels: outChannels,
                  kernelH: kernel, kernelW: kernel, stride: stride, padding: padding)
    }

    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int,
                kernelH: Int, kernelW: Int, stride: Int, padding: Int) {
        precondition(batch >= 0 && height > 0 && width > 0 && inChannels > 0 && outChannels > 0,
                     "ConvGeometry: sizes must be positive (N \(batch), H \(height), W \(width), C \(inChannels), K \(outChannels))")
        precondition(kernelH > 0 && kernelW > 0 && stride > 0 && padding >= 0,
                     "ConvGeometry: kernel \(kernelH)x\(kernelW), stride \(stride), padding \(padding) invalid")
        precondition(height + 2 * padding >= kernelH && width + 2 * padding >= kernelW,
                     "ConvGeometry: kernel \(kernelH)x\(kernelW) larger than padded input \(height)x\(width) (+\(padding))")
        self.batch = batch; self.height = height; self.width = width
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelH = kernelH; self.kernelW = kernelW; self.stride = stride; self.padding = padding
    }

    /// 1x1, stride 1, no padding: the input already is the im2col matrix.
    public var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 }

    public var outHeight: Int { (height + 2 * padding - kernelH) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernelW) / stride + 1 }
    /// P: elements of one im2col row.
    public var patch: Int { kernelH * kernelW * inChannels }
    public var inputShape: [Int] { [batch, height, width, inChannels] }
    public var outputShape: [Int] { [batch, outHeight, outWidth, outChannels] }
    public var weightShape: [Int] { [outChannels, kernelH, kernelW, inChannels] }
    /// Multiply-adds of one pass (forward, input gradient and weight gradient each cost this much).
    public var macs: Int { batch * outHeight * outWidth * outChannels * patch }

    public func withBatch(_ n: Int) -> ConvGeometry {
        ConvGeometry(batch: n, height: height, width: width, inChannels: inChannels, outChannels: outChannels,
                     kernelH: kernelH, kernelW: kernelW, stride: stride, padding: padding)
    }

    public var description: String {
        "conv(N \(batch), \(height)x\(width)x\(inChannels) -> \(outHeight)x\(outWidth)x\(outChannels), k \(kernelH)x\(kernelW), s \(stride), p \(padding))"
    }

    /// Images per chunk so that one chunk's im2col buffer stays within `limitBytes`.
    func imagesPerChunk(limitBytes: Int = Conv.columnBudgetBytes) -> Int {
        let perImage = outHeight * outWidth * patch * 4
        return max(1, min(batch, limitBytes / max(perImage, 1)))
    }
}

public enum Conv {
    /// Upper bound of the im2col buffer; the batch is processed in chunks that fit. 8 MB keeps a
    /// chunk's columns in the 32 MB L3 between im2col and the GEMM that reads them, and keeps the
    /// (shared) workspace small; the GEMMs still have >= 512 rows per chunk. It bounds Winograd's
    /// per-worker V and M buffers the same way for F(2x2) (measured at 64x64, batch 64: 4-16 MB
    /// alike, 1-2 MB slower on the 8x8 layers, whose chunks then hold only a few tiles); F(4x4)
    /// takes twice it (`Winograd.budgetMultiple`).
    nonisolated(unsafe) public static var columnBudgetBytes = 8 << 20

    static func check(_ t: Tensor, _ shape: [Int], _ what: String, _ op: String, _ g: ConvGeometry) {
        precondition(t.shape == shape, "\(op): \(what) has shape \(t.shape), expected \(shape) for \(g)")
    }

    // MARK: im2col / col2im

    /// Copies n floats; short runs (the 3-channel layers copy 3 or 12 floats at a time) are
    /// copied inline instead of through a memmove call.
    @inline(__always)
    static func copyRun(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        if n <= 32 { for j in 0..<n { dst[j] = src[j] } } else { dst.update(from: src, count: n) }
    }

    @inline(__always)
    static func zeroRun(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        if n <= 32 { for j in 0..<n { dst[j] = 0 } } else { dst.update(repeating: 0, count: n) }
    }

    /// cols[r, (ky, kx, c)] = x[n, oy*s - p + ky, ox*s - p + kx, c] (0 outside), for images
    /// `first ..< first + count`, rows numbered from 0 within the chunk. Runs on the calling thread.
    /// Where a kernel row lies wholly inside the image, its kw*C source elements are contiguous
    /// in NHWC and are copied as one run.
    static func im2col(cols: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, g: ConvGeometry, first: Int, count: Int) {
        let H = g.height, W = g.width, C = g.inChannels, Ho = g.outHeight, Wo = g.outWidth
        let kh = g.kernelH, kw = g.kernelW, s = g.stride, p = g.padding
        let run = kw * C
        var dst = cols
        for nr in 0..<(count * Ho) {
            let n = first + nr / Ho, oy = nr % Ho
            for ox in 0..<Wo {
                let ix0 = ox * s - p
                let inside = ix0 >= 0 && ix0 + kw <= W
                for ky in 0..<kh {
                    let iy = oy * s - p + ky
                    if iy < 0 || iy >= H {
                        zeroRun(dst, run); dst += run; continue
                    }
                    let rowBase = x + ((n * H + iy) * W) * C
                    if inside { copyRun(dst, rowBase + ix0 * C, run); dst += run; continue }
                    for kx in 0..<kw {
                        let ix = ix0 + kx
                        if ix < 0 || ix >= W { zeroRun(dst, C) } else { copyRun(dst, rowBase + ix * C, C) }
                        dst += C
                    }
                }
            }
        }
    }

    /// dx[n, iy, ix, c] = sum of dcols entries that im2col took from there, for images
    /// `first ..< first + count` (dcols rows numbered from 0 within the chunk). Overwrites those
    /// images of dx. Runs on the calling thread.
    static func col2im(dx: UnsafeMutablePointer<Float>, dcols: UnsafePointer<Float>, g: ConvGeometry, first: Int, count: Int) {
        let H = g.height, W = g.width, C = g.inChannels, Ho = g.outHeight, Wo = g.outWidth
        let kh = g.kernelH, kw = g.kernelW, s = g.stride, p = g.padding, P = g.patch
        let run = kw * C
        for nr in 0..<count {
            let n = first + nr
            let img = dx + n * H * W * C
            img.update(repeating: 0, count: H * W * C)
            for oy in 0..<Ho {
                for ox in 0..<Wo {
                    let src = dcols + ((nr * Ho + oy) * Wo + ox) * P
                    let ix0 = ox * s - p
                    let inside = ix0 >= 0 && ix0 + kw <= W
                    for ky in 0..<kh {
                        let iy = oy * s - p + ky
                        if iy < 0 || iy >= H { continue }
                        if inside {
                            let d = img + (iy * W + ix0) * C, sp = src + ky * run
                            for j in 0..<run { d[j] += sp[j] }
                            continue
                        }
                        for kx in 0..<kw {
                            let ix = ix0 + kx
                            if ix < 0 || ix >= W { continue }
                            let d = img + (iy * W + ix) * C, sp = src + (ky * kw + kx) * C
                            for c in 0..<C { d[c] += sp[c] }
                        }
                    }
                }
            }
        }
    }

    /// How a pass splits the batch: `workers` take contiguous shares of `perWorker` images and
    /// walk them in chunks of at most `chunk` images, whose column buffer fits the column budget.
    struct Plan {
        let workers, perWorker, chunk: Int
        init(_ g: ConvGeometry) { self.init(batch: g.batch, imagesPerChunk: g.imagesPerChunk()) }
        /// `fit`: the most images whose buffers fit the budget; chunks are made about equal.
        init(batch: Int, imagesPerChunk fit: Int) {
            workers = max(1, min(Parallel.threads, batch))
            perWorker = (batch + workers - 1) / workers
            let pieces = max(1, (perWorker + fit - 1) / fit)
            chunk = max(1, (perWorker + pieces - 1) / pieces)
        }
    }

    /// The batch split both algorithms (im2col here, Winograd) run on; the caller holds
    /// `workspace.lock`. Each worker gets `floatsPerWorker` floats of the workspace of its own and
    /// calls `body(worker, buffer, first, count, firstOfWorker)` for the chunks of its contiguous
    /// share, its GEMMs single-threaded on its own core. Returns the buffers of the workers that had
    /// images, in worker order (for a reduction in a fixed order: results do not depend on timing).
    static func splitBatch(_ plan: Plan, batch: Int, floatsPerWorker: Int, _ workspace: Workspace,
                           _ body: (Int, UnsafeMutablePointer<Float>, Int, Int, Bool) -> Void) -> [UnsafeMutablePointer<Float>] {
        workspace.reserveWorkers(plan.workers)
        let bases = (0..<plan.workers).map { workspace.buffer(floatsPerWorker, worker: $0) }
        Parallel.workers(plan.workers) { w in
            let start = w * plan.perWorker, end = min(batch, start + plan.perWorker)
            for first in stride(from: start, to: end, by: plan.chunk) {
                body(w, bases[w], first, min(plan.chunk, end - first), first == start)
            }
        }
        return (0..<plan.workers).filter { $0 * plan.perWorker < batch }.map { bases[$0] }
    }

    /// im2col's use of `splitBatch`, holding the workspace lock: `body(cols, reserved, first, count,
    /// firstOfWorker)` gets the worker's column buffer ([count * Ho * Wo, P]) and, before it,
    /// `reserve` floats of its own (weight-gradient partials); then `finish(reserved areas of the
    /// workers that had images, in worker order)`, still under the lock: the partials live in the
    /// workspace, which another thread's convolution reuses as soon as the lock is let go.
    static func forEachChunk(_ g: ConvGeometry, _ workspace: Workspace, reserve: Int = 0,
                             _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int, Int, Bool) -> Void,
                             finish: ([UnsafeMutablePointer<Float>]) -> Void = { _ in }) {
        workspace.lock.lock(); defer { workspace.lock.unlock() }
        let plan = Plan(g)
        let reserved = (reserve + 15) / 16 * 16
        let colCount = g.isPointwise ? 0 : plan.chunk * g.outHeight * g.outWidth * g.patch
        let used = splitBatch(plan, batch: g.batch, floatsPerWorker: reserved + colCount, workspace) { _, base, first, count, firstOfWorker in
            body(base + reserved, base, first, count, firstOfWorker)
        }
        finish(used)
    }

    // MARK: convolution

    /// y = activation(conv(x, w)). y [N, Ho, Wo, K], x [N, H, W, C], w [K, kh, kw, C]. The direct
    /// kernel applies a leaky ReLU as it stores (another activation on each image right after);
    /// Winograd and im2col, in a pass over y after.
    public static func forward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry, activation: Activation = .identity,
                               workspace: Workspace = .shared) {
        check(y, g.outputShape, "y", "conv forward", g); check(x, g.inputShape, "x", "conv forward", g)
        check(w, g.weightShape, "w", "conv forward", g)
        switch kernel(g, .forward) {
        case .direct: return DirectConv.forward(y: y, x: x, w: w, g: g, activation: activation)
        case .winograd(let m): Winograd.tile(m).forward(y: y, x: x, w: w, g: g, workspace: workspace)
        case .im2col: im2colForward(y: y, x: x, w: w, g: g, workspace: workspace)
        }
        if activation != .identity { activation.forward(y: y.data, x: y.data, count: y.count) }
    }

    /// y = conv(x, w) by im2col + GEMM.
    private static func im2colForward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry, workspace: Workspace) {
        let blas = BLAS.shared, K = g.outChannels, P = g.patch, rowsPerImage = g.outHeight * g.outWidth
        forEachChunk(g, workspace) { cols, _, first, count, _ in
            let a: UnsafePointer<Float>
            if g.isPointwise { a = UnsafePointer(x.data + first * rowsPerImage * P) } else {
                im2col(cols: cols, x: x.data, g: g, first: first, count: count); a = UnsafePointer(cols)
            }
            blas.gemm(transB: true, m: count * rowsPerImage, n: K, k: P, a: a, lda: P, b: w.data, ldb: P,
                       c: y.data + first * rowsPerImage * K, ldc: K)
        }
    }

    /// dx = conv's input gradient (overwrites dx). dx [N, H, W, C], dy [N, Ho, Wo, K], w [K, kh, kw, C].
    public static func backwardInput(dx: Tensor, dy: Tensor, w: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        check(dx, g.inputShape, "dx", "conv input gradient", g); check(dy, g.outputShape, "dy", "conv input gradient", g)
        check(w, g.weightShape, "w", "conv input gradient", g)
        switch kernel(g, .inputGradient) {
        case .winograd(let m): Winograd.tile(m).backwardInput(dx: dx, dy: dy, w: w, g: g, workspace: workspace); return
        case .direct: DirectConv.backwardInput(dx: dx, dy: dy, w: w, g: g); return
        case .im2col: break
        }
        let blas = BLAS.shared, K = g.outChannels, P = g.patch, rowsPerImage = g.outHeight * g.outWidth
        forEachChunk(g, workspace) { dcols, _, first, count, _ in
            let out = g.isPointwise ? dx.data + first * rowsPerImage * P : dcols
            blas.gemm(m: count * rowsPerImage, n: P, k: K, a: dy.data + first * rowsPerImage * K, lda: K,
                       b: w.data, ldb: P, c: out, ldc: P)
            if !g.isPointwise { col2im(dx: dx.data, dcols: dcols, g: g, first: first, count: count) }
        }
    }

    /// dw += conv's weight gradient. dw [K, kh, kw, C], x [N, H, W, C], dy [N, Ho, Wo, K].
    /// With several workers each sums its share into a partial [K, P] of its own; the partials are
    /// then added to dw in worker order (a fixed order: results do not depend on timing).
    public static func backwardWeight(dw: Tensor, x: Tensor, dy: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        check(dw, g.weightShape, "dw", "conv weight gradient", g); check(x, g.inputShape, "x", "conv weight gradient", g)
        check(dy, g.outputShape, "dy", "conv weight gradient", g)
        switch kernel(g, .weightGradient) {
        case .winograd(let m): Winograd.tile(m).backwardWeight(dw: dw, x: x, dy: dy, g: g, workspace: workspace); return
        case .direct: DirectConv.backwardWeight(dw: dw, x: x, dy: dy, g: g); return
        case .im2col: break
        }
        let blas = BLAS.shared, K = g.outChannels, P = g.patch, rowsPerImage = g.outHeight * g.outWidth
        let single = Plan(g).workers == 1
        forEachChunk(g, workspace, reserve: single ? 0 : K * P, { cols, reserved, first, count, firstOfWorker in
            let a: UnsafePointer<Float>
            if g.isPointwise { a = UnsafePointer(x.data + first * rowsPerImage * P) } else {
                im2col(cols: cols, x: x.data, g: g, first: first, count: count); a = UnsafePointer(cols)
            }
            blas.gemm(transA: true, m: K, n: P, k: count * rowsPerImage, a: dy.data + first * rowsPerImage * K, lda: K,
                       b: a, ldb: P, beta: single || !firstOfWorker ? 1 : 0, c: single ? dw.data : reserved, ldc: P)
        }, finish: { partials in
            if single { return }
            Parallel.forRanges(K * P, grain: 4096) { range in
                for part in partials { for i in range { dw.data[i] += part[i] } }
            }
        })
    }

    // MARK: transposed convolution (the adjoint of the convolution with geometry g)

    /// y = convTranspose(x, w): y [N, H, W, C] (g's input), x [N, Ho, Wo, K] (g's output), w [K, kh, kw, C].
    public static func transposedForward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        backwardInput(dx: y, dy: x, w: w, g: g, workspace: workspace)
    }

    /// dx = input gradient of convTranspose: dx [N, Ho, Wo, K], dy [N, H, W, C].
    public static func transposedBackwardInput(dx: Tensor, dy: Tensor, w: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        forward(y: dx, x: dy, w: w, g: g, workspace: workspace)
    }

    /// dw += weight gradient of convTranspose: x [N, Ho, Wo, K] (its input), dy [N, H, W, C] (its output gradient).
    public static func transposedBackwardWeight(dw: Tensor, x: Tensor, dy: Tensor, g: ConvGeometry, workspace: Workspace = .shared) {
        backwardWeight(dw: dw, x: dy, dy: x, g: g, workspace: workspace)
    }

    // MARK: naive reference (the oracle the tests compare the fast path with)

    /// Direct 7-loop convolution, same layouts as `forward`.
    public static func naiveForward(x: Tensor, w: Tensor, g: ConvGeometry) -> Tensor {
        let y = Tensor(zeros: g.outputShape)
        for n in 0..<g.batch { for oy in 0..<g.outHeight { for ox in 0..<g.outWidth { for k in 0..<g.outChannels {
            var acc: Double = 0
            for ky in 0..<g.kernelH { for kx in 0..<g.kernelW {
                let iy = oy * g.stride - g.padding + ky, ix = ox * g.stride - g.padding + kx
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                for c in 0..<g.inChannels {
                    acc += Double(x[((n * g.height + iy) * g.width + ix) * g.inChannels + c])
                        * Double(w[((k * g.kernelH + ky) * g.kernelW + kx) * g.inChannels + c])
                }
            } }
            y[((n * g.outHeight + oy) * g.outWidth + ox) * g.outChannels + k] = Float(acc)
        } } } }
        return y
    }

    /// Direct input and weight gradients, same layouts.
    public static func naiveBackward(x: Tensor, w: Tensor, dy: Tensor, g: ConvGeometry) -> (dx: Tensor, dw: Tensor) {
        var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
        for n in 0..<g.batch { for oy in 0..<g.outHeight { for ox in 0..<g.outWidth { for k in 0..<g.outChannels {
            let d = Double(dy[((n * g.outHeight + oy) * g.outWidth + ox) * g.outChannels + k])
            for ky in 0..<g.kernelH { for kx in 0..<g.kernelW {
                let iy = oy * g.stride - g.padding + ky, ix = ox * g.stride - g.padding + kx
                if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                for c in 0..<g.inChannels {
                    let xi = ((n * g.height + iy) * g.width + ix) * g.inChannels + c
                    let wi = ((k * g.kernelH + ky) * g.kernelW + kx) * g.inChannels + c
                    dx[xi] += d * Double(w[wi]); dw[wi] += d * Double(x[xi])
                }
            } }
        } } } }
        return (Tensor(shape: x.shape, values: dx.map(Float.init)), Tensor(shape: w.shape, values: dw.map(Float.init)))
    }
}
