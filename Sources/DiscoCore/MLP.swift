/// A multilayer perceptron of `Linear` layers: the vanilla GAN's generator and discriminator.
///
/// Layout: activations [N, features]; layer l has weight [sizes[l+1], sizes[l]] and bias
/// [sizes[l+1]] (PyTorch's nn.Linear), all held in one flat parameter tensor (for Adam) in the
/// order weight 0, bias 0, weight 1, ... `hidden` follows every layer but the last, `output` the
/// last.
public final class MLP {
    public let sizes: [Int]
    public let hidden: Activation, output: Activation
    public let parameters: Tensor, grads: Tensor
    public let weights: [Tensor], biases: [Tensor], weightGrads: [Tensor], biasGrads: [Tensor]

    public init(sizes: [Int], hidden: Activation, output: Activation) {
        precondition(sizes.count >= 2 && sizes.allSatisfy { $0 > 0 }, "MLP: sizes \(sizes)")
        self.sizes = sizes; self.hidden = hidden; self.output = output
        let count = zip(sizes, sizes.dropFirst()).reduce(0) { $0 + $1.1 * $1.0 + $1.1 }
        parameters = Tensor(zeros: [count]); grads = Tensor(zeros: [count])
        var w: [Tensor] = [], b: [Tensor] = [], gw: [Tensor] = [], gb: [Tensor] = [], offset = 0
        for (fin, fout) in zip(sizes, sizes.dropFirst()) {
            w.append(Tensor(viewOf: parameters, offset: offset, shape: [fout, fin]))
            gw.append(Tensor(viewOf: grads, offset: offset, shape: [fout, fin]))
            offset += fout * fin
            b.append(Tensor(viewOf: parameters, offset: offset, shape: [fout]))
            gb.append(Tensor(viewOf: grads, offset: offset, shape: [fout]))
            offset += fout
        }
        weights = w; biases = b; weightGrads = gw; biasGrads = gb
    }

    /// PyTorch's nn.Linear default: weight and bias uniform in +-1/sqrt(fan_in).
    public func initialize(rng: inout Xoshiro256) {
        for (l, fin) in sizes.dropLast().enumerated() {
            let k = 1 / Float(fin).squareRoot()
            for t in [weights[l], biases[l]] { for i in 0..<t.count { t[i] = -k + 2 * k * rng.nextUniform() } }
        }
    }

    /// The output, and the trace backward needs: the input and every layer's activated output.
    public func forward(_ x: Tensor) -> (output: Tensor, trace: [Tensor]) {
        precondition(x.shape.count == 2 && x.shape[1] == sizes[0], "MLP forward: x \(x.shape), expected [N, \(sizes[0])]")
        var trace = [x], h = x
        for l in 0..<weights.count {
            let y = Tensor(uninitialized: [x.shape[0], sizes[l + 1]])
            Linear.forward(y: y, x: h, w: weights[l], b: biases[l])
            let act = l == weights.count - 1 ? output : hidden
            act.forward(y: y.data, x: y.data, count: y.count)
            trace.append(y); h = y
        }
        return (h, trace)
    }

    /// Accumulates the parameter gradients for output gradient `dOutput` and returns the input's.
    @discardableResult
    public func backward(_ trace: [Tensor], dOutput: Tensor) -> Tensor {
        var dy = dOutput.copy()
        for l in stride(from: weights.count - 1, through: 0, by: -1) {
            let act = l == weights.count - 1 ? output : hidden
            act.backward(dx: dy.data, dy: dy.data, y: trace[l + 1].data, count: dy.count)
            Linear.backwardWeight(dw: weightGrads[l], db: biasGrads[l], x: trace[l], dy: dy)
            let dx = Tensor(uninitialized: trace[l].shape)
            Linear.backwardInput(dx: dx, dy: dy, w: weights[l])
            dy = dx
        }
        return dy
    }

    public func zeroGradients() { for i in 0..<grads.count { grads[i] = 0 } }
}
