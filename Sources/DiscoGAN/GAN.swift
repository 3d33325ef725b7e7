import Foundation
import DiscoCore

// `disco gan train`: the GAN family on 28x28 gray images (Fashion-MNIST), as written down in
// notes/gan-spec.md: the MLP GAN (Goodfellow et al.), DCGAN (Radford et al.), the conditional
// GAN (Mirza and Osindero) and LSGAN (Mao et al.).
//
// Images handed in and out are NHWC [N, 28, 28, 1] in [0, 1]. Inside, each architecture sees them
// in its own space ("model images"):
//   mlp:   [N, 784] in [0, 1] (rows of the 28x28 image);
//   dcgan: [N, 32, 32, 1] in [-1, 1]: the 28x28 image zero-padded by 2 on each side in [0, 1]
//          (black, as Fashion-MNIST's background), then mapped 2p - 1 (so the border is -1).
// z ~ N(0, 1): mlp [N, 64], dcgan [N, 1, 1, 100]. Conditional models join a one-hot label of K
// classes to z and to D's input (`LabelConcat`: columns for the MLP, planes for the DCGAN's D).

public enum GANArch: String, Codable, CaseIterable, Sendable { case mlp, dcgan }
public enum GANLoss: String, Codable, CaseIterable, Sendable { case bce, lsgan }
public enum GANGeneratorLoss: String, Codable, CaseIterable, Sendable { case nonsaturating, minimax }

/// A GAN run's settings (saved as RUN/config.json and in every checkpoint).
public struct GANConfig: Codable, Equatable, Sendable {
    public var arch: GANArch = .mlp
    /// Class names (label folder names, sorted) of a conditional model; nil: unconditional.
    public var classNames: [String]? = nil
    public var loss: GANLoss = .bce
    public var generatorLoss: GANGeneratorLoss = .nonsaturating
    public var epochs = 1
    public var batch = 500
    public var learningRate: Float = 2e-4
    /// DCGAN width w (channels of the first D layer); the MLP's hidden units are fixed at 128.
    public var width = 32
    public var seed: UInt64 = 0
    /// Append to log.jsonl every this many iterations.
    public var logEvery = 1
    /// Checkpoints kept, the newest (0: all).
    public var keep = 2
    public var format = GANConfig.formatVersion

    public static let formatVersion = "disco-gan-1"
    public static let imageSize = 28

    public init() {}

    /// Spec defaults per architecture: batch 500 for the MLP, 64 for the DCGAN; lr 2e-4 for both.
    public static func defaultBatch(_ arch: GANArch) -> Int { arch == .mlp ? 500 : 64 }

    public var conditional: Bool { classNames != nil }
    public var classes: Int { classNames?.count ?? 0 }
    /// Length of z: 64 for the MLP, 100 for the DCGAN.
    public var noiseSize: Int { arch == .mlp ? 64 : 100 }
    public var hidden: Int { 128 }

    /// "mlp", "conditional dcgan, lsgan", ...
    public var summary: String {
        var s = (conditional ? "conditional " : "") + arch.rawValue
        if loss == .lsgan { s += ", lsgan" }
        if generatorLoss == .minimax { s += ", minimax G loss" }
        return s
    }

    /// Settings that must be the same to resume a run, by option name, with their values.
    public func resumeKeys() -> [(option: String, value: String)] {
        [("--arch", arch.rawValue), ("--conditional", conditional ? "on (\(classes) labels: \(classNames!.joined(separator: ", ")))" : "off"),
         ("--loss", loss.rawValue), ("--g-loss", generatorLoss.rawValue), ("--batch", String(batch)),
         ("--lr", String(learningRate)), ("--width", String(width)), ("--seed", String(seed))]
    }

    /// Problems of the settings themselves, each naming its option.
    public func problems() -> [String] {
        var p: [String] = []
        if epochs < 1 { p.append("--epochs must be at least 1, got \(epochs)") }
        if batch < 2 { p.append("--batch must be at least 2 (batch norm and the mean losses need two images), got \(batch)") }
        if !(learningRate > 0 && learningRate < 1) { p.append("--lr must be in (0, 1), got \(learningRate)") }
        if !(1...1024).contains(width) { p.append("--width must be in 1...1024, got \(width)") }
        if logEvery < 1 { p.append("--log-every must be at least 1, got \(logEvery)") }
        if keep < 0 { p.append("--keep must be >= 0 (0 keeps every checkpoint), got \(keep)") }
        if loss == .lsgan && generatorLoss == .minimax {
            p.append("--g-loss minimax is the BCE game's log(1 - D(G(z))); with --loss lsgan G's loss is least squares: drop --g-loss")
        }
        if let names = classNames, names.count < 2 { p.append("--conditional needs at least 2 labels (label folders), got \(names.count)") }
        return p
    }
}

/// One of the two networks of a GAN: an MLP or a conv network, its Adam state, and the same few
/// operations on both (forward, backward, named state in PyTorch's layout).
public final class GANNetwork {
    public enum Body { case mlp(MLP), conv(Network) }
    public enum Trace { case mlp([Tensor]), conv(DiscoCore.Trace) }

    public let body: Body
    public let optimizer: Adam

    init(_ body: Body, learningRate: Float) {
        self.body = body
        let count: Int
        switch body {
        case .mlp(let m): count = m.parameters.count
        case .conv(let n): count = n.parameters.count
        }
        optimizer = Adam(parameterCount: count, hyperparameters: .init(learningRate: learningRate, beta1: 0.5, beta2: 0.999, weightDecay: 0))
    }

    /// All trainable parameters, flat, and their gradients.
    public var values: Tensor {
        switch body { case .mlp(let m): return m.parameters; case .conv(let n): return n.parameters.values }
    }
    public var grads: Tensor {
        switch body { case .mlp(let m): return m.grads; case .conv(let n): return n.parameters.grads }
    }

    public func zeroGradients() {
        switch body { case .mlp(let m): m.zeroGradients(); case .conv(let n): n.zeroGradients() }
    }

    /// `.train` uses (and updates) batch statistics; `.eval` the running ones. The MLP has no batch norm.
    func forward(_ x: Tensor, mode: Mode, record: Bool) -> (output: Tensor, trace: Trace?) {
        switch body {
        case .mlp(let m):
            let r = m.forward(x)
            return (r.output, record ? .mlp(r.trace) : nil)
        case .conv(let n):
            let r = n.forward(x, mode: mode, record: record)
            return (r.output, record ? .conv(r.trace) : nil)
        }
    }

    /// The input gradient; parameter gradients are added when `parameterGradients`. Without
    /// `inputGradient` the MLP skips its first layer's input gradient and returns nil (the conv
    /// network computes and returns it anyway).
    @discardableResult
    func backward(_ trace: Trace, dOutput: Tensor, parameterGradients: Bool, inputGradient: Bool = true) -> Tensor? {
        switch (body, trace) {
        case (.mlp(let m), .mlp(let t)):
            return m.backward(t, dOutput: dOutput, parameterGradients: parameterGradients, inputGradient: inputGradient)
        case (.conv(let n), .conv(let t)):
            return n.backward(t, dOutput: dOutput.copy(), parameterGradients: parameterGradients)!
        default: preconditionFailure("GANNetwork.backward: trace of another kind of network")
        }
    }

    /// Parameters and batch-norm statistics by name, PyTorch's layout (nn.Linear [out, in] as
    /// `fc1.weight`, `fc1.bias`, ...; conv layers as `Network.stateDict`).
    public func stateDict() -> [(String, Tensor)] {
        switch body {
        case .mlp(let m):
            var out: [(String, Tensor)] = []
            for l in 0..<m.weights.count { out.append(("fc\(l + 1).weight", m.weights[l].copy())); out.append(("fc\(l + 1).bias", m.biases[l].copy())) }
            return out
        case .conv(let n): return n.stateDict()
        }
    }

    public func load(stateDict: [String: Tensor]) throws {
        switch body {
        case .mlp(let m):
            for (name, t) in self.stateDict() {
                guard let src = stateDict[name] else { throw GANModel.ModelError(description: "missing tensor '\(name)'") }
                guard src.shape == t.shape else { throw GANModel.ModelError(description: "tensor '\(name)' has shape \(src.shape), the model needs \(t.shape)") }
            }
            for l in 0..<m.weights.count {
                m.weights[l].copy(from: stateDict["fc\(l + 1).weight"]!); m.biases[l].copy(from: stateDict["fc\(l + 1).bias"]!)
            }
        case .conv(let n): try n.load(stateDict: stateDict)
        }
    }

    /// Non-trainable state (batch-norm running statistics), flat; empty for the MLP.
    var buffers: Tensor? {
        if case .conv(let n) = body, n.buffers.count > 0 { return n.buffers.values }
        return nil
    }
}

/// What one iteration reports: the losses as defined by the config, and D's mean output on the
/// real batch and on G's batch (in the D step, before D's update). For `--loss bce` D's outputs
/// are probabilities sigmoid(logit); for `--loss lsgan` the raw outputs (LSGAN's D has no sigmoid).
public struct GANStepStats: Equatable, Sendable {
    public var lossD: Float, lossG: Float
    public var dReal: Float, dFake: Float
}

/// A GAN: G and D for a `GANConfig`, one training iteration, and sampling.
public final class GANModel {
    public let config: GANConfig
    public let G: GANNetwork, D: GANNetwork

    public init(config: GANConfig) {
        self.config = config
        let k = config.classes, lr = config.learningRate
        switch config.arch {
        case .mlp:
            G = GANNetwork(.mlp(MLP(sizes: [config.noiseSize + k, config.hidden, 784], hidden: .relu, output: .sigmoid)), learningRate: lr)
            D = GANNetwork(.mlp(MLP(sizes: [784 + k, config.hidden, 1], hidden: .relu, output: .identity)), learningRate: lr)
        case .dcgan:
            G = GANNetwork(.conv(Network(blocks: GANModel.dcganGenerator(noise: config.noiseSize + k, width: config.width))), learningRate: lr)
            D = GANNetwork(.conv(Network(blocks: GANModel.dcganDiscriminator(channels: 1 + k, width: config.width))), learningRate: lr)
        }
    }

    /// G: z [N, 1, 1, nz] -> [N, 32, 32, 1] in [-1, 1] (spatial sizes 1 -> 4 -> 8 -> 16 -> 32).
    public static func dcganGenerator(noise: Int, width w: Int) -> [BlockSpec] {
        [BlockSpec("ct1", .deconv, noise, 4 * w, kernel: 4, stride: 1, padding: 0, batchNorm: true, activation: .relu),
         BlockSpec("ct2", .deconv, 4 * w, 2 * w, batchNorm: true, activation: .relu),
         BlockSpec("ct3", .deconv, 2 * w, w, batchNorm: true, activation: .relu),
         BlockSpec("ct4", .deconv, w, 1, batchNorm: false, activation: .tanh, bias: true)]
    }

    /// D: [N, 32, 32, C] -> logits [N, 1, 1, 1] (spatial sizes 32 -> 16 -> 8 -> 4 -> 1).
    public static func dcganDiscriminator(channels: Int, width w: Int) -> [BlockSpec] {
        [BlockSpec("c1", .conv, channels, w, batchNorm: false, activation: .leakyReLU),
         BlockSpec("c2", .conv, w, 2 * w, batchNorm: true, activation: .leakyReLU),
         BlockSpec("c3", .conv, 2 * w, 4 * w, batchNorm: true, activation: .leakyReLU),
         BlockSpec("c4", .conv, 4 * w, 1, kernel: 4, stride: 1, padding: 0, batchNorm: false, activation: .identity, bias: true)]
    }

    /// Fresh weights from `seed`. MLP: PyTorch's nn.Linear default (as `MLPGAN`). DCGAN (Radford
    /// et al.): conv weights N(0, 0.02), BN gamma N(1, 0.02), beta 0; the last layers' biases 0
    /// (as scripts/torch_gan.py).
    public func initialize(seed: UInt64) {
        var rng = Xoshiro256(seed: seed)
        for net in [G, D] {
            switch net.body {
            case .mlp(let m): m.initialize(rng: &rng)
            case .conv(let n):
                n.initializeWeights(rng: &rng)  // BN statistics reset; the weights are drawn again below
                for s in n.blocks {
                    let w = n.parameters.value("\(s.name).weight")
                    for i in 0..<w.count { w[i] = 0.02 * rng.nextNormal() }
                    if s.bias { n.parameters.value("\(s.name).bias").zero() }
                    if s.batchNorm {
                        let g = n.parameters.value("\(s.name).bn.weight")
                        for i in 0..<g.count { g[i] = 1 + 0.02 * rng.nextNormal() }
                    }
                }
            }
        }
    }

    // MARK: the model's spaces

    /// Model images from images [N, 28, 28, 1] in [0, 1] (see the top of this file).
    public func modelImages(_ x: Tensor) -> Tensor {
        let s = GANConfig.imageSize
        precondition(x.shape.count == 4 && x.shape[1] == s && x.shape[2] == s && x.shape[3] == 1,
                     "GANModel: images \(x.shape), expected [N, 28, 28, 1]")
        let n = x.shape[0]
        switch config.arch {
        case .mlp: return x.copy().reshaped([n, s * s])
        case .dcgan:
            let y = Tensor(filling: -1, shape: [n, 32, 32, 1])
            for i in 0..<n { for r in 0..<s {
                let src = x.data + (i * s + r) * s, dst = y.data + (i * 32 + r + 2) * 32 + 2
                for c in 0..<s { dst[c] = 2 * src[c] - 1 }
            } }
            return y
        }
    }

    /// Images [N, 28, 28, 1] in [0, 1] from G's outputs: the MLP's reshaped, the DCGAN's central
    /// 28x28 mapped (y + 1) / 2.
    public func images(fromModel y: Tensor) -> Tensor {
        let n = y.shape[0], s = GANConfig.imageSize
        switch config.arch {
        case .mlp: return y.copy().reshaped([n, s, s, 1])
        case .dcgan:
            let x = Tensor(uninitialized: [n, s, s, 1])
            for i in 0..<n { for r in 0..<s {
                let src = y.data + (i * 32 + r + 2) * 32 + 2, dst = x.data + (i * s + r) * s
                for c in 0..<s { dst[c] = (src[c] + 1) / 2 }
            } }
            return x
        }
    }

    /// z ~ N(0, 1), [count, nz] (the DCGAN reads it as [count, 1, 1, nz]).
    public func noise(_ count: Int, rng: inout Xoshiro256) -> Tensor {
        Tensor.normal([count, config.noiseSize], rng: &rng)
    }

    func generatorInput(_ z: Tensor, labels: [Int]?) -> Tensor {
        let x = labels.map { LabelConcat.forward(z, labels: $0, classes: config.classes) } ?? z
        return config.arch == .mlp ? x : x.reshaped([x.shape[0], 1, 1, x.shape[1]])
    }

    func discriminatorInput(_ x: Tensor, labels: [Int]?) -> Tensor {
        labels.map { LabelConcat.forward(x, labels: $0, classes: config.classes) } ?? x
    }

    // MARK: training

    /// D's adversarial loss on outputs `d` (flattened) against target 1 (real) or 0 (fake):
    /// BCE on logits, or LSGAN's 0.5 * mean((d - target)^2).
    func discriminatorLoss(_ d: Tensor, target: Float) -> (loss: Float, grad: Tensor) {
        let flat = d.reshaped([d.count])
        switch config.loss {
        case .bce: return bceWithLogitsLoss(logits: flat, target: target)
        case .lsgan:
            let l = lsganLoss(outputs: flat, target: target)
            for i in 0..<l.grad.count { l.grad[i] *= 0.5 }
            return (0.5 * l.loss, l.grad)
        }
    }

    /// G's loss on D(G(z)): non-saturating BCE(d, 1) = -mean log D(G(z)); minimax mean log(1 - D(G(z)))
    /// = -BCE(d, 0); LSGAN 0.5 * mean((d - 1)^2).
    func generatorLoss(_ d: Tensor) -> (loss: Float, grad: Tensor) {
        switch (config.loss, config.generatorLoss) {
        case (.lsgan, _): return discriminatorLoss(d, target: 1)
        case (.bce, .nonsaturating): return discriminatorLoss(d, target: 1)
        case (.bce, .minimax):
            let l = discriminatorLoss(d, target: 0)
            for i in 0..<l.grad.count { l.grad[i] = -l.grad[i] }
            return (-l.loss, l.grad)
        }
    }

    /// Mean of D's outputs as logged: sigmoid probabilities for BCE, raw values for LSGAN.
    func meanOutput(_ d: Tensor) -> Float {
        var s = 0.0
        for i in 0..<d.count { s += Double(config.loss == .bce ? stableSigmoid(d[i]) : d[i]) }
        return Float(s / Double(max(d.count, 1)))
    }

    /// One iteration (as PyTorch's DCGAN example): fake = G(z) once, in train mode; a D step on
    /// the real batch and the fake (detached), then a G step through the updated D on the same fake.
    /// `real` is a batch of model images; `labels` (conditional only) the real batch's labels, also
    /// given to the fakes. Adam updates both networks.
    public func step(real: Tensor, labels: [Int]?, z: Tensor) -> GANStepStats {
        precondition(config.conditional == (labels != nil), "GANModel.step: labels \(labels == nil ? "missing" : "given") for a\(config.conditional ? " conditional" : "n unconditional") model")
        let g = G.forward(generatorInput(z, labels: labels), mode: .train, record: true)
        let fake = g.output
        // D step.
        D.zeroGradients()
        let dr = D.forward(discriminatorInput(real, labels: labels), mode: .train, record: true)
        let lr = discriminatorLoss(dr.output, target: 1)
        D.backward(dr.trace!, dOutput: lr.grad.reshaped(dr.output.shape), parameterGradients: true, inputGradient: false)
        let df = D.forward(discriminatorInput(fake, labels: labels), mode: .train, record: true)
        let lf = discriminatorLoss(df.output, target: 0)
        D.backward(df.trace!, dOutput: lf.grad.reshaped(df.output.shape), parameterGradients: true, inputGradient: false)
        D.optimizer.update(params: D.values, grads: D.grads)
        let stats = (dReal: meanOutput(dr.output), dFake: meanOutput(df.output), lossD: lr.loss + lf.loss)
        // G step, through the updated D (D's parameter gradients are not needed).
        G.zeroGradients()
        let dg = D.forward(discriminatorInput(fake, labels: labels), mode: .train, record: true)
        let lg = generatorLoss(dg.output)
        var dx = D.backward(dg.trace!, dOutput: lg.grad.reshaped(dg.output.shape), parameterGradients: false)!
        if labels != nil { dx = LabelConcat.backward(dx, features: fake.shape[fake.shape.count - 1]) }
        G.backward(g.trace!, dOutput: dx, parameterGradients: true, inputGradient: false)
        G.optimizer.update(params: G.values, grads: G.grads)
        return GANStepStats(lossD: stats.lossD, lossG: lg.loss, dReal: stats.dReal, dFake: stats.dFake)
    }

    // MARK: inference

    /// G's images for `z` (and labels), [N, 28, 28, 1] in [0, 1]; eval mode (running statistics),
    /// in chunks of 500.
    public func generate(z: Tensor, labels: [Int]?) -> Tensor {
        let n = z.shape[0], s = GANConfig.imageSize
        let out = Tensor(uninitialized: [n, s, s, 1])
        for lo in stride(from: 0, to: n, by: 500) {
            let m = min(500, n - lo)
            let zc = Tensor(viewOf: z, offset: lo * config.noiseSize, shape: [m, config.noiseSize]).copy()
            let y = G.forward(generatorInput(zc, labels: labels.map { Array($0[lo..<(lo + m)]) }), mode: .eval, record: false).output
            let chunk = images(fromModel: y)
            withExtendedLifetime(chunk) { (out.data + lo * s * s).update(from: chunk.data, count: m * s * s) }
        }
        return out
    }

    /// D's outputs (logits, or LSGAN's raw values) on images [N, 28, 28, 1] in [0, 1]; eval mode.
    public func discriminate(_ x: Tensor, labels: [Int]?) -> [Float] {
        let n = x.shape[0], per = x.count / max(n, 1)
        var out: [Float] = []
        for lo in stride(from: 0, to: n, by: 500) {
            let m = min(500, n - lo)
            let xc = Tensor(viewOf: x, offset: lo * per, shape: [m] + Array(x.shape.dropFirst())).copy()
            let d = D.forward(discriminatorInput(modelImages(xc), labels: labels.map { Array($0[lo..<(lo + m)]) }), mode: .eval, record: false).output
            out += d.array
        }
        return out
    }

    public struct ModelError: Error, CustomStringConvertible { public let description: String }

    /// `count` images of G, NHWC [count, 28, 28, 1] in [0, 1], from z drawn with `seed` (the same
    /// seed gives the same images). Conditional models take one label per image (nil: labels
    /// 0, 1, ..., K-1, 0, ... in turn); unconditional ones take none.
    public func sample(count: Int, labels: [Int]?, seed: UInt64) throws -> Tensor {
        guard count >= 1 else { throw ModelError(description: "--count must be at least 1, got \(count)") }
        var chosen = labels
        if config.conditional {
            if chosen == nil { chosen = (0..<count).map { $0 % config.classes } }
            guard chosen!.count == count else { throw ModelError(description: "\(chosen!.count) labels for \(count) images") }
            if let bad = chosen!.first(where: { !(0..<config.classes).contains($0) }) {
                throw ModelError(description: "label \(bad) is not one of the model's labels 0...\(config.classes - 1) (\(config.classNames!.joined(separator: ", ")))")
            }
        } else if labels != nil {
            throw ModelError(description: "this model is unconditional (trained without --conditional): it takes no label")
        }
        var rng = Xoshiro256(seed: seed)
        return generate(z: noise(count, rng: &rng), labels: chosen)
    }

    /// Class names (folder names) of a conditional model, else nil.
    public var classNames: [String]? { config.classNames }

    /// The first non-finite tensor of the networks or their Adam moments, by name.
    func firstNonFiniteTensor() -> String? {
        for (name, net) in [("G", G), ("D", D)] {
            for (k, t) in net.stateDict() where !UnsafeBufferPointer(start: t.data, count: t.count).allSatisfy(\.isFinite) { return "\(name).\(k)" }
            for (k, t) in [("Adam first moment", net.optimizer.m), ("Adam second moment", net.optimizer.v)]
            where !UnsafeBufferPointer(start: t.data, count: t.count).allSatisfy(\.isFinite) { return "\(name) \(k)" }
        }
        return nil
    }
}

/// A trained model is what `disco gan eval` scores: `sample(count:labels:seed:)` and `classNames`
/// are GANModel's own.
extension GANModel: GANSampler {}
