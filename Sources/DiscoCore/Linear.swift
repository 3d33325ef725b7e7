/// Fully connected layer kernels (the MLP GANs of `disco gan`), on OpenBLAS sgemm.
///
/// Layouts (row-major, PyTorch's nn.Linear): x [N, in], weight w [out, in], bias b [out],
/// y [N, out]. y = x w^T + b.
public enum Linear {
    /// y = x w^T + b (overwrites y).
    public static func forward(y: Tensor, x: Tensor, w: Tensor, b: Tensor?) {
        let (n, fin, fout) = check(x: x, w: w, y: y, "forward")
        if let b {
            precondition(b.shape == [fout], "Linear forward: bias \(b.shape), expected [\(fout)]")
            for r in 0..<n { (y.data + r * fout).update(from: b.data, count: fout) }
        }
        BLAS.shared.sgemm(transB: true, m: n, n: fout, k: fin, a: x.data, lda: fin, b: w.data, ldb: fin,
                          beta: b == nil ? 0 : 1, c: y.data, ldc: fout)
    }

    /// dx = dy w (overwrites dx). dy [N, out].
    public static func backwardInput(dx: Tensor, dy: Tensor, w: Tensor) {
        let (n, fin, fout) = check(x: dx, w: w, y: dy, "input gradient")
        BLAS.shared.sgemm(m: n, n: fin, k: fout, a: dy.data, lda: fout, b: w.data, ldb: fin, c: dx.data, ldc: fin)
    }

    /// dw += dy^T x; db += sum over rows of dy.
    public static func backwardWeight(dw: Tensor, db: Tensor?, x: Tensor, dy: Tensor) {
        let (n, fin, fout) = check(x: x, w: dw, y: dy, "weight gradient")
        BLAS.shared.sgemm(transA: true, m: fout, n: fin, k: n, a: dy.data, lda: fout, b: x.data, ldb: fin,
                          beta: 1, c: dw.data, ldc: fin)
        if let db {
            precondition(db.shape == [fout], "Linear weight gradient: bias gradient \(db.shape), expected [\(fout)]")
            for r in 0..<n { for j in 0..<fout { db.data[j] += dy.data[r * fout + j] } }
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
