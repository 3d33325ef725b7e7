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
    /// Each layer is one `Linear.forward` with its activation fused in (split between workers).
    public func forward(_ x: Tensor) -> (output: Tensor, trace: [Tensor]) {
        precondition(x.shape.count == 2 && x.shape[1] == sizes[0], "MLP forward: x \(x.shape), expected [N, \(sizes[0])]")
        var trace = [x], h = x
        for l in 0..<weights.count {
            let y = Tensor(uninitialized: [x.shape[0], sizes[l + 1]])
            Linear.forward(y: y, x: h, w: weights[l], b: biases[l], activation: l == weights.count - 1 ? output : hidden)
            trace.append(y); h = y
        }
        return (h, trace)
    }

    /// Accumulates the parameter gradients for output gradient `dOutput` and returns the input's.
    @discardableResult
    public func backward(_ trace: [Tensor], dOutput: Tensor) -> Tensor {
        backward(trace, dOutput: dOutput, parameterGradients: true, inputGradient: true)!
    }

    /// The same, doing only what is asked for: without `parameterGradients` the parameter
    /// gradients are left as they are (a G step only needs D's input gradient); without
    /// `inputGradient` the first layer's input gradient is not computed (nil is returned: a D step
    /// does not need it). `dOutput` is not modified.
    public func backward(_ trace: [Tensor], dOutput: Tensor, parameterGradients: Bool, inputGradient: Bool) -> Tensor? {
        let last = weights.count
        precondition(trace.count == last + 1 && dOutput.shape == trace[last].shape,
                     "MLP backward: dOutput \(dOutput.shape), output \(trace.last?.shape ?? [])")
        var dy = dOutput
        if output != .identity {
            dy = Tensor(uninitialized: dOutput.shape)
            output.backward(dx: dy.data, dy: dOutput.data, y: trace[last].data, count: dy.count)
        }
        for l in stride(from: last - 1, through: 0, by: -1) {
            if parameterGradients { Linear.backwardWeight(dw: weightGrads[l], db: biasGrads[l], x: trace[l], dy: dy) }
            if l == 0 && !inputGradient { return nil }
            // Layer l's input gradient, times the derivative of the hidden activation that made its input.
            let dx = Tensor(uninitialized: trace[l].shape)
            Linear.backwardInput(dx: dx, dy: dy, w: weights[l], inputActivation: l > 0 ? (hidden, trace[l]) : nil)
            dy = dx
        }
        return dy
    }

    public func zeroGradients() { grads.data.update(repeating: 0, count: grads.count) }
}
