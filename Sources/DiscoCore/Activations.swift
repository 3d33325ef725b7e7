#if canImport(Glibc)
import Glibc
#endif
import _CKernels

/// Elementwise activations. Each backward takes the forward's *output* y (enough for all four,
/// so a layer keeps one tensor), and may run in place (dx may alias dy, y may alias x).
public enum Activation: String, Codable, Sendable, CaseIterable {
    case identity, relu, leakyReLU, sigmoid, tanh

    /// LeakyReLU's negative slope (DiscoGAN: 0.2).
    public static let leakySlope: Float = 0.2

    public func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
        switch self {
        case .identity: if UnsafePointer(y) != x { y.update(from: x, count: n) }
        case .relu, .leakyReLU: Parallel.forRanges(n, grain: 1 << 15) { r in forwardSerial(y: y + r.lowerBound, x: x + r.lowerBound, count: r.count) }
        case .sigmoid, .tanh: Parallel.forRanges(n, grain: 1 << 13) { r in forwardSerial(y: y + r.lowerBound, x: x + r.lowerBound, count: r.count) }
        }
    }

    /// `forward` on the calling thread (for kernels that already split the work between workers).
    /// Each element's value does not depend on how the elements are split.
    public func forwardSerial(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
        // In place (y == x) the loops read and write one pointer: with two that alias, the
        // vectorizer's overlap check fails and the scalar loop runs.
        switch self {
        case .identity: if UnsafePointer(y) != x { y.update(from: x, count: n) }
        case .relu:
            if UnsafePointer(y) == x { for i in 0..<n { y[i] = max(y[i], 0) } } else { for i in 0..<n { y[i] = max(x[i], 0) } }
        case .leakyReLU:
            let s = Activation.leakySlope
            if UnsafePointer(y) == x { for i in 0..<n { let v = y[i]; y[i] = v > 0 ? v : v * s } }
            else { for i in 0..<n { let v = x[i]; y[i] = v > 0 ? v : v * s } }
        case .sigmoid: sigmoidArray(y: y, x: x, count: n)
        case .tanh: for i in 0..<n { y[i] = tanhf(x[i]) }
        }
    }

    /// dx = dy * f'(x), with f' written in terms of y = f(x).
    public func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, y: UnsafePointer<Float>, count n: Int) {
        switch self {
        case .identity: if UnsafePointer(dx) != dy { dx.update(from: dy, count: n) }
        default:
            Parallel.forRanges(n, grain: 1 << 15) { r in
                let o = r.lowerBound
                backwardSerial(dx: dx + o, dy: dy + o, y: y + o, count: r.count)
            }
        }
    }

    /// `backward` on the calling thread.
    public func backwardSerial(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, y: UnsafePointer<Float>, count n: Int) {
        // In place (dx == dy): loops over dx and y only, which the vectorizer can check (see forwardSerial).
        if UnsafePointer(dx) == dy {
            switch self {
            case .identity: return
            case .relu: for i in 0..<n { dx[i] = y[i] > 0 ? dx[i] : 0 }
            case .leakyReLU:
                let s = Activation.leakySlope
                for i in 0..<n { dx[i] = y[i] > 0 ? dx[i] : dx[i] * s }
            case .sigmoid: for i in 0..<n { dx[i] = dx[i] * y[i] * (1 - y[i]) }
            case .tanh: for i in 0..<n { dx[i] = dx[i] * (1 - y[i] * y[i]) }
            }
            return
        }
        switch self {
        case .identity: dx.update(from: dy, count: n)
        case .relu: for i in 0..<n { dx[i] = y[i] > 0 ? dy[i] : 0 }
        case .leakyReLU:
            let s = Activation.leakySlope
            for i in 0..<n { dx[i] = y[i] > 0 ? dy[i] : dy[i] * s }
        case .sigmoid: for i in 0..<n { dx[i] = dy[i] * y[i] * (1 - y[i]) }
        case .tanh: for i in 0..<n { dx[i] = dy[i] * (1 - y[i] * y[i]) }
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

/// y = sigmoid(x) for n floats (y may be x): `dc_sigmoid` (Sources/_CKernels: vectorized, within a
/// few ulp of the exact value; an element's value does not depend on its position or the CPU).
@inline(__always)
public func sigmoidArray(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
    dc_sigmoid(y, x, n)
}
