// Batch normalisation over NHWC activations, seen as x [M, C] with M = N*H*W rows.
// Per channel c: mean[c], var[c] = biased batch variance, invstd[c] = 1 / sqrt(var[c] + eps),
// xhat = (x - mean) * invstd, y = gamma * xhat + beta. Running statistics follow PyTorch:
// running = (1 - momentum) * running + momentum * batch, with the unbiased variance var * M / (M - 1).

public enum BatchNormKernel {
    /// Per-channel sums over rows: `addRow(acc, m)` adds row m's contribution to acc [C].
    @inline(__always)
    static func channelSums(rows M: Int, channels C: Int,
                            _ addRow: (UnsafeMutablePointer<Float>, Int) -> Void) -> [Double] {
        channelSums(rows: M, channels: C, sets: 1) { acc, m in addRow(acc, m) }[0]
    }

    /// `sets` independent per-channel sums in one pass: `addRow(acc, m)` adds row m's
    /// contributions to acc [sets, C]. Rows are split across threads; each thread sums blocks of
    /// 64 rows in Float, then adds them in Double, so the order is fixed for a given thread count.
    @inline(__always)
    static func channelSums(rows M: Int, channels C: Int, sets: Int,
                            _ addRow: (UnsafeMutablePointer<Float>, Int) -> Void) -> [[Double]] {
        let workers = min(Parallel.threads, max(1, M / 256)), width = sets * C
        var partial = [Double](repeating: 0, count: workers * width)
        partial.withUnsafeMutableBufferPointer { pp in
            let base = pp.baseAddress!
            Parallel.forRanges(workers, grain: 1) { wr in
                let acc = UnsafeMutablePointer<Float>.allocate(capacity: width)
                defer { acc.deallocate() }
                for w in wr {
                    let lo = M * w / workers, hi = M * (w + 1) / workers
                    var row = lo
                    while row < hi {
                        let end = min(hi, row + 64)
                        acc.initialize(repeating: 0, count: width)
                        for m in row..<end { addRow(acc, m) }
                        for i in 0..<width { base[w * width + i] += Double(acc[i]) }
                        row = end
                    }
                }
            }
        }
        var totals = [[Double]](repeating: [Double](repeating: 0, count: C), count: sets)
        for w in 0..<workers { for k in 0..<sets { for c in 0..<C { totals[k][c] += partial[w * width + k * C + c] } } }
        return totals
    }

    /// Training forward. y, xhat [M, C] are distinct buffers (xhat may alias x); gamma, beta [C].
    /// Returns the batch mean and biased variance per channel, and writes invstd [C].
    public static func forwardTraining(y: UnsafeMutablePointer<Float>, xhat: UnsafeMutablePointer<Float>,
                                       invstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                                       gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                       rows M: Int, channels C: Int, eps: Float) -> (mean: [Float], variance: [Float]) {
        forwardTraining(y: y, xhat: xhat, invstd: invstd, x: x, gamma: gamma, beta: beta, rows: M, channels: C,
                        eps: eps, activation: .identity)
    }

    /// Training forward followed by `activation` (y = activation(gamma * xhat + beta)) in the same
    /// pass over y: one pass fewer than batch norm and a separate activation, same values.
    /// xhat nil: not kept (nothing will run backward), and y may then be x (in place).
    public static func forwardTraining(y: UnsafeMutablePointer<Float>, xhat: UnsafeMutablePointer<Float>?,
                                       invstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                                       gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                       rows M: Int, channels C: Int, eps: Float,
                                       activation: Activation, sync: Communicator? = nil) -> (mean: [Float], variance: [Float]) {
        // Synchronised batch norm: the rows of every rank make one batch of M * size rows (each
        // rank holds M of them); its per-channel sums are the all-reduced sums of the ranks'.
        let sync = sync.flatMap { $0.size > 1 ? $0 : nil }
        let total = M * (sync?.size ?? 1)
        var sums = channelSums(rows: M, channels: C) { acc, m in
            let xr = x + m * C
            for c in 0..<C { acc[c] += xr[c] }
        }
        sync?.allReduceSum(&sums)
        let mean = sums.map { Float($0 / Double(total)) }
        let variance: [Float] = mean.withUnsafeBufferPointer { mp in
            let mb = mp.baseAddress!
            var squares = channelSums(rows: M, channels: C) { acc, m in
                let xr = x + m * C
                for c in 0..<C { let d = xr[c] - mb[c]; acc[c] += d * d }
            }
            sync?.allReduceSum(&squares)
            return squares.map { Float($0 / Double(total)) }
        }
        for c in 0..<C { invstd[c] = 1 / (variance[c] + eps).squareRoot() }
        mean.withUnsafeBufferPointer { mp in
            let mb = mp.baseAddress!
            let slope = Activation.leakySlope
            Parallel.forRanges(M, grain: 512) { r in
                guard let xhat else {
                    // One pointer per loop when in place (two that alias would defeat the vectorizer).
                    if UnsafePointer(y) == x {
                        for m in r { normalizeRow(y: y + m * C, x: UnsafePointer(y + m * C), mb, invstd, gamma, beta, C, activation, slope) }
                    } else {
                        for m in r { normalizeRow(y: y + m * C, x: x + m * C, mb, invstd, gamma, beta, C, activation, slope) }
                    }
                    return
                }
                for m in r {
                    let xr = x + m * C, hr = xhat + m * C, yr = y + m * C
                    switch activation {
                    case .relu:
                        for c in 0..<C {
                            let h = (xr[c] - mb[c]) * invstd[c]
                            hr[c] = h
                            yr[c] = max(affine(h, gamma[c], beta[c]), 0)
                        }
                    case .leakyReLU:
                        for c in 0..<C {
                            let h = (xr[c] - mb[c]) * invstd[c]
                            hr[c] = h
                            let v = affine(h, gamma[c], beta[c])
                            yr[c] = v > 0 ? v : v * slope
                        }
                    default:
                        for c in 0..<C {
                            let h = (xr[c] - mb[c]) * invstd[c]
                            hr[c] = h
                            yr[c] = affine(h, gamma[c], beta[c])
                        }
                    }
                }
            }
        }
        switch activation {
        case .identity, .relu, .leakyReLU: break
        default: activation.forward(y: y, x: y, count: M * C)
        }
        return (mean, variance)
    }

    /// One row of the training forward without xhat: y = activation(gamma * ((x - mean) invstd) +
    /// beta), the values the forward with xhat writes. y may be x.
    @inline(__always)
    static func normalizeRow(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, _ mb: UnsafePointer<Float>,
                             _ invstd: UnsafeMutablePointer<Float>, _ gamma: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
                             _ C: Int, _ activation: Activation, _ slope: Float) {
        switch activation {
        case .relu: for c in 0..<C { y[c] = max(affine((x[c] - mb[c]) * invstd[c], gamma[c], beta[c]), 0) }
        case .leakyReLU:
            for c in 0..<C { let v = affine((x[c] - mb[c]) * invstd[c], gamma[c], beta[c]); y[c] = v > 0 ? v : v * slope }
        default: for c in 0..<C { y[c] = affine((x[c] - mb[c]) * invstd[c], gamma[c], beta[c]) }
        }
    }

    /// gamma * xhat + beta: the one expression the training forward and `recomputeOutput` share,
    /// so a recomputed output is bit-identical to the forward's.
    @inline(__always)
    static func affine(_ h: Float, _ gamma: Float, _ beta: Float) -> Float { gamma * h + beta }

    /// Whether backward can take the activation's derivative from xhat, gamma and beta instead
    /// of the stored output y (so the forward need not keep y): true for the piecewise-linear ones.
    public static func canRecompute(_ activation: Activation) -> Bool {
        switch activation { case .identity, .relu, .leakyReLU: return true; default: return false }
    }

    /// y = activation(gamma * xhat + beta), the same values `forwardTraining` wrote (bit for bit):
    /// the output of a block whose forward dropped it, rebuilt for a weight gradient.
    public static func recomputeOutput(y: UnsafeMutablePointer<Float>, xhat: UnsafePointer<Float>,
                                       gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                       rows M: Int, channels C: Int, activation: Activation) {
        precondition(canRecompute(activation), "BatchNormKernel.recomputeOutput: \(activation) is not piecewise linear")
        let slope = Activation.leakySlope
        Parallel.forRanges(M, grain: 512) { r in
            for m in r {
                let hr = xhat + m * C, yr = y + m * C
                switch activation {
                case .relu: for c in 0..<C { yr[c] = max(affine(hr[c], gamma[c], beta[c]), 0) }
                case .leakyReLU:
                    for c in 0..<C { let v = affine(hr[c], gamma[c], beta[c]); yr[c] = v > 0 ? v : v * slope }
                default: for c in 0..<C { yr[c] = affine(hr[c], gamma[c], beta[c]) }
                }
            }
        }
    }

    public static func updateRunning(runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
                                     mean: [Float], variance: [Float], rows M: Int, momentum: Float) {
        let unbias = M > 1 ? Float(M) / Float(M - 1) : 1
        for c in 0..<mean.count {
            runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean[c]
            runningVar[c] = (1 - momentum) * runningVar[c] + momentum * variance[c] * unbias
        }
    }

    /// Evaluation forward with running statistics. y may alias x.
    public static func forwardInference(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                                        gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                        runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>,
                                        rows M: Int, channels C: Int, eps: Float) {
        var scale = [Float](repeating: 0, count: C), shift = [Float](repeating: 0, count: C)
        for c in 0..<C {
            scale[c] = gamma[c] / (runningVar[c] + eps).squareRoot()
            shift[c] = beta[c] - runningMean[c] * scale[c]
        }
        scale.withUnsafeBufferPointer { sp in shift.withUnsafeBufferPointer { hp in
            let s = sp.baseAddress!, h = hp.baseAddress!
            Parallel.forRanges(M, grain: 512) { r in
                for m in r {
                    let xr = x + m * C, yr = y + m * C
                    for c in 0..<C { yr[c] = xr[c] * s[c] + h[c] }
                }
            }
        } }
    }

    /// Two per-channel sums in one pass: `addRow(first, second, m)`.
    @inline(__always)
    static func channelSums2(rows M: Int, channels C: Int,
                             _ addRow: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> ([Double], [Double]) {
        let t = channelSums(rows: M, channels: C, sets: 2) { acc, m in addRow(acc, acc + C, m) }
        return (t[0], t[1])
    }

    /// Backward of `forwardTraining(..., activation:)`: dy is the gradient at the activation's
    /// output y. The activation's backward is applied while the batch-norm sums are taken (one
    /// pass), then dx written (a second): two passes instead of four. dx may alias dy; when dx is
    /// nil, the gradient at the batch-norm output is left in dy (dy is written in every case).
    /// With `y` nil (a forward that dropped its output), the activation's derivative is taken from
    /// the sign of gamma * xhat + beta (`beta` must then be given), which is the sign of y for
    /// ReLU and LeakyReLU: the same decisions, so the same gradients.
    public static func backward(dx: UnsafeMutablePointer<Float>?, dgamma: UnsafeMutablePointer<Float>?,
                                dbeta: UnsafeMutablePointer<Float>?, dy: UnsafeMutablePointer<Float>,
                                y: UnsafePointer<Float>?, activation: Activation,
                                xhat: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>? = nil,
                                invstd: UnsafePointer<Float>, rows M: Int, channels C: Int,
                                sync: Communicator? = nil) {
        let slope = Activation.leakySlope
        let (sumDy, sdx): ([Double], [Double])
        precondition(y != nil || (beta != nil && canRecompute(activation)),
                     "BatchNormKernel.backward: without y, beta and a piecewise-linear activation are needed")
        switch activation {
        case .relu, .leakyReLU, .identity:
            (sumDy, sdx) = channelSums2(rows: M, channels: C) { a1, a2, m in
                let dr = dy + m * C, hr = xhat + m * C
                if activation == .identity {
                    for c in 0..<C { let d = dr[c]; a1[c] += d; a2[c] += d * hr[c] }
                    return
                }
                // The derivative's choice: y > 0, or (y dropped) gamma * xhat + beta > 0.
                switch (activation, y) {
                case (.relu, let y?):
                    let yr = y + m * C
                    for c in 0..<C { let d = yr[c] > 0 ? dr[c] : 0; dr[c] = d; a1[c] += d; a2[c] += d * hr[c] }
                case (.relu, nil):
                    let b = beta!
                    for c in 0..<C { let d = affine(hr[c], gamma[c], b[c]) > 0 ? dr[c] : 0; dr[c] = d; a1[c] += d; a2[c] += d * hr[c] }
                case (_, let y?):
                    let yr = y + m * C
                    for c in 0..<C { let d = yr[c] > 0 ? dr[c] : dr[c] * slope; dr[c] = d; a1[c] += d; a2[c] += d * hr[c] }
                case (_, nil):
                    let b = beta!
                    for c in 0..<C {
                        let d = affine(hr[c], gamma[c], b[c]) > 0 ? dr[c] : dr[c] * slope
                        dr[c] = d; a1[c] += d; a2[c] += d * hr[c]
                    }
                }
            }
        default:
            activation.backward(dx: dy, dy: dy, y: y!, count: M * C)
            (sumDy, sdx) = channelSums2(rows: M, channels: C) { a1, a2, m in
                let dr = dy + m * C, hr = xhat + m * C
                for c in 0..<C { let d = dr[c]; a1[c] += d; a2[c] += d * hr[c] }
            }
        }
        finishBackward(dx: dx, dgamma: dgamma, dbeta: dbeta, dy: dy, xhat: xhat, gamma: gamma, invstd: invstd,
                       rows: M, channels: C, sumDy: sumDy, sdx: sdx, sync: sync)
    }

    /// Backward of the training forward. dx [M, C] may alias dy. dgamma, dbeta [C] are
    /// accumulated (+=) when given; the input gradient is written when dx is given.
    public static func backward(dx: UnsafeMutablePointer<Float>?, dgamma: UnsafeMutablePointer<Float>?,
                                dbeta: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>,
                                xhat: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
                                invstd: UnsafePointer<Float>, rows M: Int, channels C: Int) {
        let (sumDy, sdx) = channelSums2(rows: M, channels: C) { a1, a2, m in
            let dr = dy + m * C, hr = xhat + m * C
            for c in 0..<C { let d = dr[c]; a1[c] += d; a2[c] += d * hr[c] }
        }
        finishBackward(dx: dx, dgamma: dgamma, dbeta: dbeta, dy: dy, xhat: xhat, gamma: gamma, invstd: invstd,
                       rows: M, channels: C, sumDy: sumDy, sdx: sdx)
    }

    static func finishBackward(dx: UnsafeMutablePointer<Float>?, dgamma: UnsafeMutablePointer<Float>?,
                               dbeta: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>,
                               xhat: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
                               invstd: UnsafePointer<Float>, rows M: Int, channels C: Int,
                               sumDy: [Double], sdx: [Double], sync: Communicator? = nil) {
        // dgamma, dbeta: this rank's share (the parameter gradients are all-reduced later).
        if let dgamma { for c in 0..<C { dgamma[c] += Float(sdx[c]) } }
        if let dbeta { for c in 0..<C { dbeta[c] += Float(sumDy[c]) } }
        guard let dx else { return }
        // Synchronised: dx takes the means of dy and dy * xhat over every rank's rows.
        var sums = (dy: sumDy, dyXhat: sdx), total = M
        if let sync, sync.size > 1 {
            var both = sumDy + sdx
            sync.allReduceSum(&both)
            sums = (Array(both[0..<C]), Array(both[C...]))
            total = M * sync.size
        }
        var a = [Float](repeating: 0, count: C), b = [Float](repeating: 0, count: C), k = [Float](repeating: 0, count: C)
        for c in 0..<C {
            k[c] = gamma[c] * invstd[c]
            a[c] = Float(sums.dy[c] / Double(total))
            b[c] = Float(sums.dyXhat[c] / Double(total))
        }
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in k.withUnsafeBufferPointer { kp in
            let av = ap.baseAddress!, bv = bp.baseAddress!, kv = kp.baseAddress!
            Parallel.forRanges(M, grain: 512) { r in
                for m in r {
                    let dr = dy + m * C, hr = xhat + m * C, xr = dx + m * C
                    for c in 0..<C { xr[c] = kv[c] * (dr[c] - av[c] - hr[c] * bv[c]) }
                }
            }
        } } }
    }
}
