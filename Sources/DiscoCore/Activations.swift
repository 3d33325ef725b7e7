#if canImport(Glibc)
import Glibc
#endif

/// Elementwise activations. Each backward takes the forward's *output* y (enough for all four,
/// so a layer keeps one tensor), and may run in place (dx may alias dy, y may alias x).
public enum Activation: String, Codable, Sendable, CaseIterable {
    case identity, relu, leakyReLU, sigmoid, tanh

    /// LeakyReLU's negative slope (DiscoGAN: 0.2).
    public static let leakySlope: Float = 0.2

    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
        switch self {
        case .identity: if UnsafePointer(y) != x { y.update(from: x, count: n) }
        case .relu: Parallel.forRanges(n, grain: 1 << 15) { r in for i in r { y[i] = max(x[i], 0) } }
        case .leakyReLU:
            let s = Activation.leakySlope
            Parallel.forRanges(n, grain: 1 << 15) { r in for i in r { let v = x[i]; y[i] = v > 0 ? v : v * s } }
        case .sigmoid: Parallel.forRanges(n, grain: 1 << 13) { r in for i in r { y[i] = stableSigmoid(x[i]) } }
        case .tanh: Parallel.forRanges(n, grain: 1 << 13) { r in for i in r { y[i] = tanhf(x[i]) } }
        }
    }

    /// dx = dy * f'(x), with f' written in terms of y = f(x).
    public func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, y: UnsafePointer<Float>, count n: Int) {
        switch self {
        case .identity: if UnsafePointer(dx) != dy { dx.update(from: dy, count: n) }
        case .relu: Parallel.forRanges(n, grain: 1 << 15) { r in for i in r { dx[i] = y[i] > 0 ? dy[i] : 0 } }
        case .leakyReLU:
            let s = Activation.leakySlope
            Parallel.forRanges(n, grain: 1 << 15) { r in for i in r { dx[i] = y[i] > 0 ? dy[i] : dy[i] * s } }
        case .sigmoid: Parallel.forRanges(n, grain: 1 << 15) { r in for i in r { dx[i] = dy[i] * y[i] * (1 - y[i]) } }
        case .tanh: Parallel.forRanges(n, grain: 1 << 15) { r in for i in r { dx[i] = dy[i] * (1 - y[i] * y[i]) } }
        }
    }

    public func forward(_ x: Tensor) -> Tensor {
        let y = Tensor(uninitialized: x.shape)
        forward(y: y.data, x: x.data, count: x.count)
        return y
    }

    public func backward(dy: Tensor, y: Tensor) -> Tensor {
        precondition(dy.shape == y.shape, "\(self) backward: dy \(dy.shape) vs y \(y.shape)")
        let dx = Tensor(uninitialized: y.shape)
        backward(dx: dx.data, dy: dy.data, y: y.data, count: y.count)
        return dx
    }
}

/// 1 / (1 + e^-x) without overflow for large |x|.
@inline(__always)
public func stableSigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}
