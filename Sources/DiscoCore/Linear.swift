/// Fully connected layer kernels (the MLP GANs of `disco gan`), on OpenBLAS sgemm.
///
/// Layouts (row-major, PyTorch's nn.Linear): x [N, in], weight w [out, in], bias b [out],
/// y [N, out]. y = x w^T + b.
///
/// Threads: as the convolutions do (Conv.swift), each product is split between disco's workers
/// (`Parallel`), each calling the single-threaded sgemm on its share. Here the shares are disjoint
/// blocks of the output (rows of y and dx: images; rows or columns of dw), so no partial sums are
/// added up: every output element is computed by one sgemm call over the whole inner dimension,
/// its value fixed by the split (which depends on the shapes and `Parallel.threads` only, never on
/// timing). Products below `macsPerWorker` multiply-adds a worker run on the calling thread.
public enum Linear {
    /// Multiply-adds worth a worker of their own (about 20 us of one core's sgemm; starting the
    /// workers costs a few us).
    public static let macsPerWorker = 1 << 20
    /// Shares are multiples of this many rows or columns (the sgemm kernels' register blocks).
    static let align = 16

    /// Workers for a product of `macs` multiply-adds whose split dimension has `extent` entries.
    @inline(__always)
    static func workers(macs: Int, extent: Int) -> Int {
        min(Parallel.threads, max(1, macs / macsPerWorker), max(1, (extent + align - 1) / align))
    }

    /// y = activation(x w^T + b) (overwrites y). Each worker fills its rows of y with b, runs the
    /// sgemm on them, then `activation` on them while they are in cache.
    public static func forward(y: Tensor, x: Tensor, w: Tensor, b: Tensor?, activation: Activation = .identity) {
        let (n, fin, fout) = check(x: x, w: w, y: y, "forward")
        if let b { precondition(b.shape == [fout], "Linear forward: bias \(b.shape), expected [\(fout)]") }
        let blas = BLAS.shared, yp = y.data, xp = x.data, wp = w.data, bp = b?.data
        Parallel.forRanges(n, workers: workers(macs: n * fin * fout, extent: n), align: align) { rows in
            guard !rows.isEmpty else { return }
            let yr = yp + rows.lowerBound * fout
            if let bp { for r in 0..<rows.count { (yr + r * fout).update(from: bp, count: fout) } }
            blas.sgemm(transB: true, m: rows.count, n: fout, k: fin, a: xp + rows.lowerBound * fin, lda: fin, b: wp, ldb: fin,
                       beta: bp == nil ? 0 : 1, c: yr, ldc: fout)
            activation.forwardSerial(y: yr, x: yr, count: rows.count * fout)
        }
    }

    /// dx = dy w (overwrites dx). dy [N, out]. With `inputActivation` (the activation that made
    /// this layer's input x, and x itself), dx is then multiplied by its derivative: the previous
    /// layer's activation backward, done by each worker on its rows while they are in cache.
    public static func backwardInput(dx: Tensor, dy: Tensor, w: Tensor, inputActivation: (Activation, x: Tensor)? = nil) {
        let (n, fin, fout) = check(x: dx, w: w, y: dy, "input gradient")
        if let (_, x) = inputActivation { precondition(x.shape == dx.shape, "Linear input gradient: x \(x.shape), dx \(dx.shape)") }
        let blas = BLAS.shared, dxp = dx.data, dyp = dy.data, wp = w.data
        let act = inputActivation?.0, xp = inputActivation?.x.data
        Parallel.forRanges(n, workers: workers(macs: n * fin * fout, extent: n), align: align) { rows in
            guard !rows.isEmpty else { return }
            let o = rows.lowerBound * fin
            blas.sgemm(m: rows.count, n: fin, k: fout, a: dyp + rows.lowerBound * fout, lda: fout, b: wp, ldb: fin, c: dxp + o, ldc: fin)
            if let act, let xp { act.backwardSerial(dx: dxp + o, dy: dxp + o, y: xp + o, count: rows.count * fin) }
        }
    }

    /// dw += dy^T x; db += sum over rows of dy. The workers split dw's longer side (its rows, out,
    /// or its columns, in) and db's entries; each db entry adds the rows of dy in order.
    public static func backwardWeight(dw: Tensor, db: Tensor?, x: Tensor, dy: Tensor) {
        let (n, fin, fout) = check(x: x, w: dw, y: dy, "weight gradient")
        if let db { precondition(db.shape == [fout], "Linear weight gradient: bias gradient \(db.shape), expected [\(fout)]") }
        let blas = BLAS.shared, dwp = dw.data, dbp = db?.data, xp = x.data, dyp = dy.data
        let byRows = fout >= fin
        let nw = workers(macs: n * fin * fout, extent: byRows ? fout : fin)
        Parallel.workers(nw) { w in
            let part = Parallel.range(w, of: nw, count: byRows ? fout : fin, align: align)
            if !part.isEmpty {
                if byRows {
                    blas.sgemm(transA: true, m: part.count, n: fin, k: n, a: dyp + part.lowerBound, lda: fout, b: xp, ldb: fin,
                               beta: 1, c: dwp + part.lowerBound * fin, ldc: fin)
                } else {
                    blas.sgemm(transA: true, m: fout, n: part.count, k: n, a: dyp, lda: fout, b: xp + part.lowerBound, ldb: fin,
                               beta: 1, c: dwp + part.lowerBound, ldc: fin)
                }
            }
            if let dbp {
                let js = Parallel.range(w, of: nw, count: fout, align: align)
                for r in 0..<n {
                    let row = dyp + r * fout
                    for j in js { dbp[j] += row[j] }
                }
            }
        }
    }

    /// Direct triple loop in Double, same layouts: the oracle the tests compare with.
    public static func naiveForward(x: Tensor, w: Tensor, b: Tensor?) -> Tensor {
        let n = x.shape[0], fin = x.shape[1], fout = w.shape[0]
        let y = Tensor(zeros: [n, fout])
        for r in 0..<n { for j in 0..<fout {
            var acc = Double(b?[j] ?? 0)
            for i in 0..<fin { acc += Double(x[r * fin + i]) * Double(w[j * fin + i]) }
            y[r * fout + j] = Float(acc)
        } }
        return y
    }

    @inline(__always)
    static func check(x: Tensor, w: Tensor, y: Tensor, _ what: String) -> (Int, Int, Int) {
        precondition(x.shape.count == 2 && w.shape.count == 2 && y.shape.count == 2,
                     "Linear \(what): x \(x.shape), w \(w.shape), y \(y.shape) must be 2-D")
        let n = x.shape[0], fin = x.shape[1], fout = w.shape[0]
        precondition(w.shape[1] == fin && y.shape == [n, fout],
                     "Linear \(what): x \(x.shape), w \(w.shape), y \(y.shape): expected w [out, \(fin)], y [\(n), out]")
        return (n, fin, fout)
    }
}
