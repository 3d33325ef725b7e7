import _CKernels

/// Adam with PyTorch's semantics (torch.optim.Adam, amsgrad off): weight decay is added to the
/// gradient (L2, not decoupled), bias correction on both moments, and the update computed in
/// PyTorch's order: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
/// Works on one flat parameter buffer and its gradient buffer (see `ParameterSet`).
public final class Adam {
    public struct Hyperparameters: Codable, Equatable, Sendable {
        public var learningRate: Float = 2e-4
        public var beta1: Float = 0.5
        public var beta2: Float = 0.999
        public var eps: Float = 1e-8
        public var weightDecay: Float = 1e-5
        public init(learningRate: Float = 2e-4, beta1: Float = 0.5, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 1e-5) {
            self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        }
    }

    public var hp: Hyperparameters
    /// Steps taken so far.
    public var step: Int = 0
    /// First and second moment estimates, the same size as the parameters.
    public let m: Tensor, v: Tensor

    public init(parameterCount: Int, hyperparameters: Hyperparameters = .init()) {
        hp = hyperparameters
        m = Tensor(zeros: [parameterCount]); v = Tensor(zeros: [parameterCount])
    }

    /// One update of `params` from `grads` (both flat, `m.count` elements).
    public func update(params: Tensor, grads: Tensor) {
        precondition(params.count == m.count && grads.count == m.count,
                     "Adam.update: params \(params.count), grads \(grads.count), state \(m.count)")
        step += 1
        let b1 = hp.beta1, b2 = hp.beta2, wd = hp.weightDecay, eps = hp.eps
        // Scalars in Double, as PyTorch computes them in Python floats.
        let bc1 = 1 - Double(b1).power(step), bc2 = 1 - Double(b2).power(step)
        let stepSize = Float(Double(hp.learningRate) / bc1), bc2Sqrt = Float(bc2.squareRoot())
        let p = params.data, g = grads.data, mp = m.data, vp = v.data
        // dc_adam (Sources/_CKernels): vectorized, the same IEEE operations on every element, so
        // the split between workers does not change any value.
        Parallel.forRanges(m.count, grain: 1 << 15) { r in
            let o = r.lowerBound
            dc_adam(p + o, g + o, mp + o, vp + o, r.count, 1 - b1, b2, wd, stepSize, bc2Sqrt, eps)
        }
    }
}

extension Double {
    func power(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= self }
        return r
    }
}
