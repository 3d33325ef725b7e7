#if canImport(Glibc)
import Glibc
#endif

// Losses: each returns the scalar loss (mean reduction, as PyTorch's defaults) and the gradient
// of that scalar with respect to the prediction (and, where it depends on it, the other input).
// Sums are accumulated in Double.

/// Binary cross-entropy on logits, numerically stable for any logit:
/// l = max(x, 0) - x * t + log(1 + exp(-|x|)), dl/dx = (sigmoid(x) - t) / n.
public func bceWithLogitsLoss(logits: Tensor, targets: Tensor) -> (loss: Float, grad: Tensor) {
    precondition(logits.shape == targets.shape, "bceWithLogitsLoss: logits \(logits.shape) vs targets \(targets.shape)")
    let n = logits.count, grad = Tensor(uninitialized: logits.shape)
    var sum: Double = 0
    for i in 0..<n {
        let x = logits[i], t = targets[i]
        sum += Double(max(x, 0) - x * t) + Double(log1pf(expf(-abs(x))))
        grad[i] = (stableSigmoid(x) - t) / Float(n)
    }
    return (Float(sum / Double(n)), grad)
}

/// BCE on logits against one target value for every element (1 = real, 0 = fake).
public func bceWithLogitsLoss(logits: Tensor, target: Float) -> (loss: Float, grad: Tensor) {
    bceWithLogitsLoss(logits: logits, targets: Tensor(filling: target, shape: logits.shape))
}

/// Mean squared error: mean((p - t)^2). Gradient with respect to p (that w.r.t. t is its negative).
public func mseLoss(predictions p: Tensor, targets t: Tensor) -> (loss: Float, grad: Tensor) {
    precondition(p.shape == t.shape, "mseLoss: predictions \(p.shape) vs targets \(t.shape)")
    let n = p.count, grad = Tensor(uninitialized: p.shape), scale = 2 / Float(n)
    var sum: Double = 0
    for i in 0..<n {
        let d = p[i] - t[i]
        sum += Double(d * d)
        grad[i] = scale * d
    }
    return (Float(sum / Double(n)), grad)
}

/// Mean absolute error: mean(|p - t|); gradient sign(p - t) / n (0 at ties, as PyTorch).
public func l1Loss(predictions p: Tensor, targets t: Tensor) -> (loss: Float, grad: Tensor) {
    precondition(p.shape == t.shape, "l1Loss: predictions \(p.shape) vs targets \(t.shape)")
    let n = p.count, grad = Tensor(uninitialized: p.shape), g = 1 / Float(n)
    var sum: Double = 0
    for i in 0..<n {
        let d = p[i] - t[i]
        sum += Double(abs(d))
        grad[i] = d > 0 ? g : (d < 0 ? -g : 0)
    }
    return (Float(sum / Double(n)), grad)
}

/// Least-squares GAN loss on discriminator outputs: mean((x - target)^2).
public func lsganLoss(outputs: Tensor, target: Float) -> (loss: Float, grad: Tensor) {
    mseLoss(predictions: outputs, targets: Tensor(filling: target, shape: outputs.shape))
}

/// DiscoGAN's feature-matching loss: for each feature pair (real_i, fake_i), both [N, ...],
/// the mean over the batch of each, then the mean of their squared difference; summed over i.
/// Returns the gradients with respect to the fake and to the real features (`dReal` is empty when
/// `realGradient` is false: the generator step needs only dFake, and this saves their memory).
/// With `sync` (data-parallel training), the batch is the union of every rank's: the batch means
/// are taken over all ranks' features (their sums all-reduced), so the loss is the whole batch's;
/// the gradients are those of this rank's features, scaled as the other losses' are (by this
/// rank's batch, so that averaging the ranks' parameter gradients gives the whole batch's).
public func featureMatchingLoss(real: [Tensor], fake: [Tensor], realGradient: Bool = true,
                                sync: Communicator? = nil) -> (loss: Float, dReal: [Tensor], dFake: [Tensor]) {
    let ranks = sync?.size ?? 1
    precondition(real.count == fake.count, "featureMatchingLoss: \(real.count) real vs \(fake.count) fake features")
    var total: Float = 0
    var dReal: [Tensor] = [], dFake: [Tensor] = []
    // Per feature pair, the sum over the batch of fake - real; all pairs' in one buffer, so that
    // ranks exchange them in one all-reduce.
    let pers = real.map { $0.count / max($0.shape[0], 1) }
    var sums = [Float](repeating: 0, count: pers.reduce(0, +))
    var start = 0
    for ((r, f), per) in zip(zip(real, fake), pers) {
        precondition(r.shape == f.shape, "featureMatchingLoss: real \(r.shape) vs fake \(f.shape)")
        for b in 0..<r.shape[0] {
            let rp = r.data + b * per, fp = f.data + b * per
            for j in 0..<per { sums[start + j] += fp[j] - rp[j] }
        }
        start += per
    }
    if let sync, ranks > 1 { sync.allReduceSum(&sums) }
    start = 0
    for ((r, f), per) in zip(zip(real, fake), pers) {
        let n = r.shape[0]
        var diff = Array(sums[start..<(start + per)])
        start += per
        var sum: Double = 0
        for j in 0..<per { diff[j] /= Float(n * ranks); sum += Double(diff[j] * diff[j]) }
        total += Float(sum / Double(per))
        let df = Tensor(uninitialized: f.shape)
        let dr: Tensor? = realGradient ? Tensor(uninitialized: r.shape) : nil
        let scale = 2 / (Float(per) * Float(n))
        for b in 0..<n {
            let dfp = df.data + b * per
            for j in 0..<per { dfp[j] = scale * diff[j] }
            if let dr { let drp = dr.data + b * per; for j in 0..<per { drp[j] = -dfp[j] } }
        }
        if let dr { dReal.append(dr) }
        dFake.append(df)
    }
    return (total, dReal, dFake)
}

/// Softmax cross-entropy, PyTorch's F.cross_entropy with mean reduction: logits [N, K] (row n
/// the unnormalised log-probabilities of image n), labels N class indices in 0..<K.
/// l = mean_n (logsumexp(x_n) - x_n[y_n]), stable for any logits (the row max is subtracted);
/// dl/dx_nk = (softmax(x_n)_k - [k == y_n]) / N.
public func softmaxCrossEntropyLoss(logits: Tensor, labels: [Int]) -> (loss: Float, grad: Tensor) {
    precondition(logits.shape.count == 2 && logits.shape[0] == labels.count,
                 "softmaxCrossEntropyLoss: logits \(logits.shape) vs \(labels.count) labels")
    let n = logits.shape[0], k = logits.shape[1], grad = Tensor(uninitialized: logits.shape)
    var sum: Double = 0
    for r in 0..<n {
        let x = logits.data + r * k, g = grad.data + r * k, y = labels[r]
        precondition(y >= 0 && y < k, "softmaxCrossEntropyLoss: label \(y) of row \(r) is not in 0..<\(k)")
        var m = x[0]
        for j in 1..<max(k, 1) { m = max(m, x[j]) }
        var z: Double = 0
        for j in 0..<k { let e = exp(Double(x[j] - m)); g[j] = Float(e); z += e }
        sum += log(z) + Double(m) - Double(x[y])
        let scale = 1 / (z * Double(n))
        for j in 0..<k { g[j] = Float(Double(g[j]) * scale) }
        g[y] -= 1 / Float(n)
    }
    return (Float(sum / Double(n)), grad)
}
