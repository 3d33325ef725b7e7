/// The conditional GAN's label input (Mirza and Osindero): a one-hot label joined to the features
/// (the MLP's z or image vector, the DCGAN's z) or to the image as constant planes (the DCGAN's D).
///
/// Dims: N = batch, F = features per row (the last axis; H, W the image size for planes),
/// K = classes. Layouts, channels innermost as everywhere in disco:
///   rows:   x [N, F]           -> y [N, F + K],        y[n, F + k] = (k == label[n])
///   planes: x [N, H, W, C]     -> y [N, H, W, C + K],  y[n, h, w, C + k] = (k == label[n])
/// Both are one operation on the last axis: x [..., F] -> y [..., F + K] with each row of image n
/// followed by image n's one-hot. The labels are constants, so the backward is the slice
/// dx[..., f] = dy[..., f] for f < F (the one-hot columns' gradient is dropped).
public enum LabelConcat {
    /// y [..., F + K] from x [..., F] (first axis N) and one label in 0..<K per image.
    public static func forward(_ x: Tensor, labels: [Int], classes K: Int) -> Tensor {
        let n = x.shape[0], F = x.shape[x.shape.count - 1]
        precondition(labels.count == n, "LabelConcat: \(labels.count) labels for a batch of \(n)")
        precondition(labels.allSatisfy { (0..<K).contains($0) }, "LabelConcat: labels outside 0..<\(K): \(labels)")
        let rowsPerImage = x.count / max(n * F, 1)
        var shape = x.shape
        shape[shape.count - 1] = F + K
        let y = Tensor(uninitialized: shape)
        let W = F + K
        for i in 0..<n {
            for r in 0..<rowsPerImage {
                let row = i * rowsPerImage + r
                let src = x.data + row * F, dst = y.data + row * W
                dst.update(from: src, count: F)
                (dst + F).update(repeating: 0, count: K)
                dst[F + labels[i]] = 1
            }
        }
        return y
    }

    /// dx [..., F]: the first F entries of each row of dy [..., F + K].
    public static func backward(_ dy: Tensor, features F: Int) -> Tensor {
        let W = dy.shape[dy.shape.count - 1]
        precondition(W > F, "LabelConcat backward: gradient's last axis \(W) is not F + K for F = \(F)")
        var shape = dy.shape
        shape[shape.count - 1] = F
        let dx = Tensor(uninitialized: shape)
        for row in 0..<(dy.count / W) { (dx.data + row * F).update(from: dy.data + row * W, count: F) }
        return dx
    }
}
