// Layers composed into networks, with explicit forward/backward and per-call saved contexts.
//
// A network is a chain of blocks; a block is one convolution or transposed convolution (4x4 in
// DiscoGAN, no bias), an optional BatchNorm2d and an activation. Activations are NHWC.
// Because every forward call returns its own `Trace`, one network can be applied several times in
// one training step (G_BA on x_B and on x_AB): each backward adds (+=) into the shared gradients,
// so the gradients of all uses add up. Gradients are zeroed once per step (`zeroGradients`).

/// All trainable parameters of a network in one allocation (and their gradients in another), so the
/// optimizer is one flat loop. Entries are views with stable dotted names (`e2.weight`, `e2.bn.bias`).
public final class ParameterSet {
    public struct Entry { public let name: String; public let offset: Int; public let shape: [Int] }
    public let entries: [Entry]
    public let values: Tensor
    public let grads: Tensor

    init(specs: [(String, [Int])]) {
        var offset = 0
        var entries: [Entry] = []
        for (name, shape) in specs {
            entries.append(Entry(name: name, offset: offset, shape: shape))
            offset += shape.reduce(1, *)
        }
        self.entries = entries
        values = Tensor(zeros: [offset])
        grads = Tensor(zeros: [offset])
    }

    public var count: Int { values.count }
    public func value(_ name: String) -> Tensor { view(values, name) }
    public func grad(_ name: String) -> Tensor { view(grads, name) }
    public func contains(_ name: String) -> Bool { entries.contains { $0.name == name } }

    func view(_ base: Tensor, _ name: String) -> Tensor {
        guard let e = entries.first(where: { $0.name == name }) else {
            preconditionFailure("ParameterSet: no entry '\(name)' (have \(entries.map(\.name)))")
        }
        return Tensor(viewOf: base, offset: e.offset, shape: e.shape)
    }
}

public enum LayerKind: String, Codable, Sendable { case conv, deconv }

/// One conv (or transposed conv) + optional BatchNorm2d + activation.
public struct BlockSpec: Codable, Equatable, Sendable {
    public var name: String
    public var kind: LayerKind
    public var inChannels: Int, outChannels: Int
    public var kernel: Int, stride: Int, padding: Int
    public var batchNorm: Bool
    public var activation: Activation
    /// A per-channel bias `name.bias` [outChannels] added to the convolution's output before the
    /// activation (the last layers of the DCGAN, as PyTorch's `bias=True`). Not with batch norm,
    /// whose beta takes its place. DiscoGAN's blocks have none.
    public var bias: Bool = false

    public init(_ name: String, _ kind: LayerKind, _ inChannels: Int, _ outChannels: Int,
                kernel: Int = 4, stride: Int = 2, padding: Int = 1, batchNorm: Bool, activation: Activation, bias: Bool = false) {
        precondition(!(bias && batchNorm), "BlockSpec \(name): a bias and batch norm together (batch norm's beta is the bias)")
        self.name = name; self.kind = kind; self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
        self.batchNorm = batchNorm; self.activation = activation; self.bias = bias
    }

    enum CodingKeys: String, CodingKey { case name, kind, inChannels, outChannels, kernel, stride, padding, batchNorm, activation, bias }

    /// Reads `bias` as false when absent (blocks written before it existed).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(try c.decode(String.self, forKey: .name), try c.decode(LayerKind.self, forKey: .kind),
                  try c.decode(Int.self, forKey: .inChannels), try c.decode(Int.self, forKey: .outChannels),
                  kernel: try c.decode(Int.self, forKey: .kernel), stride: try c.decode(Int.self, forKey: .stride),
                  padding: try c.decode(Int.self, forKey: .padding), batchNorm: try c.decode(Bool.self, forKey: .batchNorm),
                  activation: try c.decode(Activation.self, forKey: .activation),
                  bias: try c.decodeIfPresent(Bool.self, forKey: .bias) ?? false)
    }

    /// Output spatial size for an input of size `h`.
    public func outputSize(_ h: Int) -> Int {
        switch kind {
        case .conv: return (h + 2 * padding - kernel) / stride + 1
        case .deconv: return (h - 1) * stride - 2 * padding + kernel
        }
    }

    /// The convolution this block runs (for deconv: the convolution it is the adjoint of).
    public func geometry(batch: Int, height: Int, width: Int) -> ConvGeometry {
        switch kind {
        case .conv:
            return ConvGeometry(batch: batch, height: height, width: width, inChannels: inChannels,
                                outChannels: outChannels, kernel: kernel, stride: stride, padding: padding)
        case .deconv:
            return ConvGeometry(batch: batch, height: outputSize(height), width: outputSize(width),
                                inChannels: outChannels, outChannels: inChannels, kernel: kernel, stride: stride, padding: padding)
        }
    }

    /// Weight shape in disco's layout (OHWI of the convolution; see Conv.swift).
    public var weightShape: [Int] {
        kind == .conv ? [outChannels, kernel, kernel, inChannels] : [inChannels, kernel, kernel, outChannels]
    }
    /// PyTorch's fan_in for its default init: weight.size(1) * k * k in PyTorch's layout.
    public var torchFanIn: Int { (kind == .conv ? inChannels : outChannels) * kernel * kernel }
}

public enum Mode: Sendable { case train, eval }

/// Saved values of one block's forward call, needed by its backward. A train-mode batch-norm
/// block with a piecewise-linear activation keeps only xhat: its output (the next block's input)
/// is rebuilt from xhat when a weight gradient needs it (`BatchNormKernel.recomputeOutput`), so
/// a trace holds one tensor per such block instead of two. Then `output` (and the next block's
/// `input`) is nil, and `outputShape` says its shape.
public struct BlockContext {
    let input: Tensor?
    let xhat: Tensor?
    let invstd: [Float]
    let output: Tensor?
    let outputShape: [Int]
}

/// Everything one forward call saved; consumed by `backward`.
public struct Trace {
    var blocks: [BlockContext] = []
    var inputShape: [Int] = []
}

public final class Network {
    public let blocks: [BlockSpec]
    /// Indices of blocks whose outputs are returned as features (DiscoGAN's D: c2, c3, c4).
    public let featureTaps: [Int]
    public let parameters: ParameterSet
    /// Non-trainable state: BatchNorm running statistics (`e2.bn.running_mean`, `e2.bn.running_var`).
    public let buffers: ParameterSet
    public var bnMomentum: Float = 0.1
    public var bnEps: Float = 1e-5
    /// im2col scratch. All networks share one (they run one at a time; Conv takes its lock), so
    /// four networks hold one 32 MB buffer instead of four.
    public let workspace = Workspace.shared
    /// Keep every block's output in the trace instead of rebuilding the droppable ones in
    /// backward (see `BlockContext`). Same gradients either way; keeping costs memory.
    public var keepsBlockOutputs = false
    /// Synchronised batch norm (`disco train --sync-bn` under mpirun): train-mode batch
    /// statistics, and the two channel sums of their backward, are taken over the batches of
    /// every rank of this group together, as one process would over the whole batch. nil: this
    /// process's batch alone. Every rank must then run the same forwards and backwards.
    public var batchNormSync: Communicator?

    public init(blocks: [BlockSpec], featureTaps: [Int] = []) {
        self.blocks = blocks
        self.featureTaps = featureTaps
        var p: [(String, [Int])] = [], b: [(String, [Int])] = []
        for s in blocks {
            p.append(("\(s.name).weight", s.weightShape))
            if s.bias { p.append(("\(s.name).bias", [s.outChannels])) }
            if s.batchNorm {
                p.append(("\(s.name).bn.weight", [s.outChannels]))
                p.append(("\(s.name).bn.bias", [s.outChannels]))
                b.append(("\(s.name).bn.running_mean", [s.outChannels]))
                b.append(("\(s.name).bn.running_var", [s.outChannels]))
            }
        }
        parameters = ParameterSet(specs: p)
        buffers = ParameterSet(specs: b)
        resetBatchNorm()
    }

    /// BN weight 1, bias 0, running mean 0, running variance 1 (PyTorch's defaults).
    public func resetBatchNorm() {
        for s in blocks where s.batchNorm {
            parameters.value("\(s.name).bn.weight").fill(1)
            parameters.value("\(s.name).bn.bias").fill(0)
            buffers.value("\(s.name).bn.running_mean").fill(0)
            buffers.value("\(s.name).bn.running_var").fill(1)
        }
    }

    /// PyTorch's default conv initialisation for every weight (see `Tensor.torchConvInit`); a bias
    /// after its weight, uniform in +-1/sqrt(fan_in) as PyTorch's.
    public func initializeWeights(rng: inout Xoshiro256) {
        for s in blocks {
            let w = parameters.value("\(s.name).weight")
            w.copy(from: Tensor.torchConvInit(w.shape, fanIn: s.torchFanIn, rng: &rng))
            if s.bias {
                let b = parameters.value("\(s.name).bias")
                b.copy(from: Tensor.torchConvInit(b.shape, fanIn: s.torchFanIn, rng: &rng))
            }
        }
        resetBatchNorm()
    }

    public func zeroGradients() { parameters.grads.zero() }

    /// Output shape for an NHWC input shape.
    public func outputShape(for input: [Int]) -> [Int] {
        var h = input[1], w = input[2]
        for s in blocks { h = s.outputSize(h); w = s.outputSize(w) }
        return [input[0], h, w, blocks.last!.outChannels]
    }

    /// Runs the network on x [N, H, W, C]. `.train` uses batch statistics and updates the running
    /// ones (as PyTorch's train mode); `.eval` uses the running ones. With `record`, the returned
    /// trace holds what `backward` needs; without, intermediate tensors are freed as it goes.
    public func forward(_ x: Tensor, mode: Mode = .train, record: Bool = true) -> (output: Tensor, features: [Tensor], trace: Trace) {
        precondition(x.shape.count == 4 && x.shape[3] == blocks[0].inChannels,
                     "Network.forward: input \(x.shape) is not [N, H, W, \(blocks[0].inChannels)]")
        var trace = Trace()
        trace.inputShape = x.shape
        var features: [Tensor] = []
        var h = x
        var inputDropped = false
        for (i, s) in blocks.enumerated() {
            let g = s.geometry(batch: h.shape[0], height: h.shape[1], width: h.shape[2])
            let outShape = s.kind == .conv ? g.outputShape : g.inputShape
            let y = Tensor(uninitialized: outShape)
            let w = parameters.value("\(s.name).weight")
            // A plain convolution (no bias, no batch norm) applies its activation itself.
            let fused = s.kind == .conv && !s.bias && !s.batchNorm
            switch s.kind {
            case .conv: Conv.forward(y: y, x: h, w: w, g: g, activation: fused ? s.activation : .identity, workspace: workspace)
            case .deconv: Conv.transposedForward(y: y, x: h, w: w, g: g, workspace: workspace)
            }
            if s.bias { Network.addBias(y, parameters.value("\(s.name).bias")) }
            var xhat: Tensor? = nil
            var invstd: [Float] = []
            let out: Tensor
            let rows = y.count / s.outChannels
            if s.batchNorm {
                let gamma = parameters.value("\(s.name).bn.weight"), beta = parameters.value("\(s.name).bn.bias")
                let rm = buffers.value("\(s.name).bn.running_mean"), rv = buffers.value("\(s.name).bn.running_var")
                // Unrecorded (no backward will read xhat), the training forward writes its output
                // over the convolution's: one buffer less and one store stream less.
                let inPlace = mode == .train && !record
                out = inPlace ? y : Tensor(uninitialized: outShape)
                switch mode {
                case .train:
                    invstd = [Float](repeating: 0, count: s.outChannels)
                    let stats = invstd.withUnsafeMutableBufferPointer { ip in
                        BatchNormKernel.forwardTraining(y: out.data, xhat: inPlace ? nil : y.data, invstd: ip.baseAddress!, x: y.data,
                                                        gamma: gamma.data, beta: beta.data, rows: rows,
                                                        channels: s.outChannels, eps: bnEps, activation: s.activation,
                                                        sync: batchNormSync)
                    }
                    BatchNormKernel.updateRunning(runningMean: rm.data, runningVar: rv.data, mean: stats.mean,
                                                  variance: stats.variance, rows: rows * (batchNormSync?.size ?? 1),
                                                  momentum: bnMomentum)
                    xhat = inPlace ? nil : y
                case .eval:
                    BatchNormKernel.forwardInference(y: out.data, x: y.data, gamma: gamma.data, beta: beta.data,
                                                     runningMean: rm.data, runningVar: rv.data, rows: rows,
                                                     channels: s.outChannels, eps: bnEps)
                }
            } else {
                out = y
            }
            // Train-mode batch norm applied the activation in its last pass, a plain convolution its own.
            if !(s.batchNorm && mode == .train) && !fused { s.activation.forward(y: out.data, x: out.data, count: out.count) }
            if record {
                // Droppable: rebuilt from xhat in backward. Feature taps and the last output are
                // handed to the caller anyway, so they are kept.
                let drop = !keepsBlockOutputs && xhat != nil && BatchNormKernel.canRecompute(s.activation)
                    && !featureTaps.contains(i) && i + 1 < blocks.count
                trace.blocks.append(BlockContext(input: inputDropped ? nil : h, xhat: xhat, invstd: invstd,
                                                 output: drop ? nil : out, outputShape: out.shape))
                inputDropped = drop
            }
            if featureTaps.contains(i) { features.append(out) }
            h = out
        }
        return (h, features, trace)
    }

    /// Backward through a recorded forward call. `dOutput` is the gradient at the output;
    /// `dFeatures[j]`, if given, the gradient at feature tap j. Parameter gradients are added to
    /// `parameters.grads` when `parameterGradients` is set (a frozen network skips those GEMMs);
    /// the input gradient is returned when `inputGradient` is set.
    /// The gradient tensors passed in are used as scratch and overwritten.
    @discardableResult
    public func backward(_ trace: Trace, dOutput: Tensor?, dFeatures: [Tensor?] = [],
                         inputGradient: Bool = true, parameterGradients: Bool = true) -> Tensor? {
        precondition(trace.blocks.count == blocks.count, "Network.backward: trace was not recorded (forward with record: true)")
        var grad: Tensor? = dOutput
        for i in stride(from: blocks.count - 1, through: 0, by: -1) {
            let s = blocks[i], ctx = trace.blocks[i]
            if let tap = featureTaps.firstIndex(of: i), tap < dFeatures.count, let df = dFeatures[tap] {
                precondition(df.shape == ctx.outputShape, "Network.backward: feature \(tap) gradient \(df.shape) vs \(ctx.outputShape)")
                if let g = grad {
                    let gp = g.data, dp = df.data
                    Parallel.forRanges(g.count, grain: 1 << 15) { r in for j in r { gp[j] += dp[j] } }
                } else { grad = df }
            }
            guard let dy = grad else { continue }  // nothing flows back from here yet
            precondition(dy.shape == ctx.outputShape, "Network.backward: block \(s.name) gradient \(dy.shape) vs output \(ctx.outputShape)")
            let rows = dy.count / s.outChannels
            if s.batchNorm, let xhat = ctx.xhat {
                // Activation backward fused into batch norm's backward.
                let gamma = parameters.value("\(s.name).bn.weight"), beta = parameters.value("\(s.name).bn.bias")
                let dgamma = parameterGradients ? parameters.grad("\(s.name).bn.weight") : nil
                let dbeta = parameterGradients ? parameters.grad("\(s.name).bn.bias") : nil
                ctx.invstd.withUnsafeBufferPointer { ip in
                    BatchNormKernel.backward(dx: dy.data, dgamma: dgamma?.data, dbeta: dbeta?.data, dy: dy.data,
                                             y: ctx.output.map { UnsafePointer($0.data) }, activation: s.activation,
                                             xhat: xhat.data, gamma: gamma.data, beta: beta.data, invstd: ip.baseAddress!,
                                             rows: rows, channels: s.outChannels, sync: batchNormSync)
                }
            } else {
                precondition(!s.batchNorm, "Network.backward: block \(s.name) ran in eval mode; backward needs train mode")
                s.activation.backward(dx: dy.data, dy: dy.data, y: ctx.output!.data, count: dy.count)
                if s.bias && parameterGradients { Network.addBiasGradient(parameters.grad("\(s.name).bias"), dy) }
            }
            let xShape = i == 0 ? trace.inputShape : trace.blocks[i - 1].outputShape
            let g = s.geometry(batch: xShape[0], height: xShape[1], width: xShape[2])
            let w = parameters.value("\(s.name).weight")
            if parameterGradients {
                let x = ctx.input ?? rebuildOutput(of: i - 1, trace)
                let dw = parameters.grad("\(s.name).weight")
                switch s.kind {
                case .conv: Conv.backwardWeight(dw: dw, x: x, dy: dy, g: g, workspace: workspace)
                case .deconv: Conv.transposedBackwardWeight(dw: dw, x: x, dy: dy, g: g, workspace: workspace)
                }
            }
            if i == 0 && !inputGradient { return nil }
            let dx = Tensor(uninitialized: xShape)
            switch s.kind {
            case .conv: Conv.backwardInput(dx: dx, dy: dy, w: w, g: g, workspace: workspace)
            case .deconv: Conv.transposedBackwardInput(dx: dx, dy: dy, w: w, g: g, workspace: workspace)
            }
            grad = dx
        }
        return inputGradient ? grad : nil
    }

    /// y[..., k] += b[k] over the rows of y [N, H, W, K]; b [K].
    static func addBias(_ y: Tensor, _ b: Tensor) {
        let K = b.count, bp = b.data, yp = y.data
        Parallel.forRanges(y.count / K, grain: 1024) { r in for m in r { let row = yp + m * K; for k in 0..<K { row[k] += bp[k] } } }
    }

    /// db[k] += sum over the rows of dy [N, H, W, K] of dy[..., k] (summed in Double, in row order).
    static func addBiasGradient(_ db: Tensor, _ dy: Tensor) {
        let K = db.count
        var acc = [Double](repeating: 0, count: K)
        for m in 0..<(dy.count / K) { let row = dy.data + m * K; for k in 0..<K { acc[k] += Double(row[k]) } }
        for k in 0..<K { db.data[k] += Float(acc[k]) }
    }

    /// Block i's output, which its forward dropped, rebuilt from its xhat (bit-identical).
    func rebuildOutput(of i: Int, _ trace: Trace) -> Tensor {
        let s = blocks[i], ctx = trace.blocks[i]
        let y = Tensor(uninitialized: ctx.outputShape)
        BatchNormKernel.recomputeOutput(y: y.data, xhat: ctx.xhat!.data, gamma: parameters.value("\(s.name).bn.weight").data,
                                        beta: parameters.value("\(s.name).bn.bias").data, rows: y.count / s.outChannels,
                                        channels: s.outChannels, activation: s.activation)
        return y
    }

    // MARK: named state in PyTorch's layout

    /// Every parameter and buffer by name, weights converted to PyTorch's layout
    /// (Conv2d [out, in, kh, kw]; ConvTranspose2d [in, out, kh, kw]).
    public func stateDict() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for s in blocks {
            out.append(("\(s.name).weight", parameters.value("\(s.name).weight").nhwcToNCHW()))
            if s.bias { out.append(("\(s.name).bias", parameters.value("\(s.name).bias").copy())) }
            if s.batchNorm {
                for n in ["bn.weight", "bn.bias"] { out.append(("\(s.name).\(n)", parameters.value("\(s.name).\(n)").copy())) }
                for n in ["bn.running_mean", "bn.running_var"] { out.append(("\(s.name).\(n)", buffers.value("\(s.name).\(n)").copy())) }
            }
        }
        return out
    }

    public struct StateError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Loads tensors named as in `stateDict()` (PyTorch layout). Every name must be present with its shape.
    public func load(stateDict: [String: Tensor]) throws {
        for (name, t) in self.stateDict() {
            guard let src = stateDict[name] else { throw StateError(description: "missing tensor '\(name)'") }
            guard src.shape == t.shape else {
                throw StateError(description: "tensor '\(name)' has shape \(src.shape), the model needs \(t.shape)")
            }
        }
        for s in blocks {
            parameters.value("\(s.name).weight").copy(from: stateDict["\(s.name).weight"]!.nchwToNHWC())
            if s.bias { parameters.value("\(s.name).bias").copy(from: stateDict["\(s.name).bias"]!) }
            if s.batchNorm {
                for n in ["bn.weight", "bn.bias"] { parameters.value("\(s.name).\(n)").copy(from: stateDict["\(s.name).\(n)"]!) }
                for n in ["bn.running_mean", "bn.running_var"] { buffers.value("\(s.name).\(n)").copy(from: stateDict["\(s.name).\(n)"]!) }
            }
        }
    }
}
