import DiscoCore

/// Loss values of one step, named as in the reference (`recon_A` = MSE(x_ABA, x_A), `gan_B` = the
/// generator's adversarial loss on D_B(x_AB), `fm_B` = feature matching of D_B between x_B and x_AB).

/// The four networks of DiscoGAN, their optimizers, and one D step / one G step of training.
///
/// Naming follows the paper: G_AB maps domain A to B, D_B judges domain B; x_AB = G_AB(x_A),
/// x_ABA = G_BA(x_AB). Each step computes only the gradients it needs (see discogan.md):
/// - D step: G forward twice without recording, D forward 4 times, D backward 4 times.
/// - G step: G forward 4 times; D forward on real images without recording (features only),
///   on fakes recorded; input gradient only back through D; G backward 4 times.
/// All forwards run in train mode (batch statistics; running statistics updated), as in PyTorch.
public final class DiscoGAN {
    public let config: TrainConfig
    public let G_AB: Network, G_BA: Network, D_A: Network, D_B: Network
    public let optG_AB: Adam, optG_BA: Adam, optD_A: Adam, optD_B: Adam
    /// The histories of generated images D_A (of x_BA) and D_B (of x_AB) are trained on
    /// (`config.poolSize`; with 0 D sees the current batch only).
    public let poolA: ImagePool, poolB: ImagePool
    /// The processes this model is trained over (data parallel, `distribute(over:syncBatchNorm:)`):
    /// each runs the same steps on its share of every batch, and their parameter gradients are
    /// all-reduced (averaged) before every Adam step, so every rank takes the same step.
    public private(set) var communicator: Communicator = SingleProcess()
    public private(set) var syncsBatchNorm = false

    public init(config: TrainConfig) {
        self.config = config
        G_AB = DiscoGANModels.generator(size: config.size, channels: config.channels)
        G_BA = DiscoGANModels.generator(size: config.size, channels: config.channels)
        D_A = DiscoGANModels.discriminator(size: config.size, channels: config.channels)
        D_B = DiscoGANModels.discriminator(size: config.size, channels: config.channels)
        optG_AB = Adam(parameterCount: G_AB.parameters.count, hyperparameters: config.adam)
        optG_BA = Adam(parameterCount: G_BA.parameters.count, hyperparameters: config.adam)
        optD_A = Adam(parameterCount: D_A.parameters.count, hyperparameters: config.adam)
        optD_B = Adam(parameterCount: D_B.parameters.count, hyperparameters: config.adam)
        // Their own generators, apart from the weights' (`initialize`), from the run's seed.
        poolA = ImagePool(capacity: config.poolSize, seed: config.seed ^ 0x706F_6F6C_5F41)
        poolB = ImagePool(capacity: config.poolSize, seed: config.seed ^ 0x706F_6F6C_5F42)
    }

    /// Fresh weights (PyTorch's default init) from the run's seed.
    public func initialize(seed: UInt64) {
        var rng = Xoshiro256(seed: seed)
        for n in networks.map(\.net) { n.initializeWeights(rng: &rng) }
    }

    /// The networks with their names, in checkpoint order.
    public var networks: [(name: String, net: Network, opt: Adam)] {
        [("G_AB", G_AB, optG_AB), ("G_BA", G_BA, optG_BA), ("D_A", D_A, optD_A), ("D_B", D_B, optD_B)]
    }

    /// Trains over `communicator`'s ranks: each step's input is this rank's share of the batch.
    /// With `syncBatchNorm`, every network's train-mode batch statistics are those of the whole
    /// batch (all ranks'), so N ranks compute what one process computes on the whole batch; without
    /// it each rank normalises its own share (as PyTorch's DistributedDataParallel by default).
    /// Feature matching always compares the whole batch's mean features.
    public func distribute(over communicator: Communicator, syncBatchNorm: Bool) {
        self.communicator = communicator
        syncsBatchNorm = syncBatchNorm && communicator.size > 1
        for n in networks.map(\.net) { n.batchNormSync = syncsBatchNorm ? communicator : nil }
    }

    /// The gradients of `nets` summed over the ranks and divided by their number: each rank's
    /// losses are means over its share, so the mean of the ranks' gradients is the gradient of
    /// the whole batch's mean loss. One all-reduce per network (its flat gradient buffer).
    func allReduceGradients(_ nets: [Network]) {
        let ranks = communicator.size
        guard ranks > 1 else { return }
        for n in nets {
            communicator.allReduceSum(n.parameters.grads.data, count: n.parameters.count)
            scale(n.parameters.grads, 1 / Float(ranks))
        }
    }

    var usesA: Bool { config.model == .discogan }        // D_A and the B -> A direction
    var usesG_BA: Bool { config.model != .gan }

    // MARK: losses

    func adversarial(_ logits: Tensor, target: Float) -> (loss: Float, grad: Tensor) {
        let flat = logits.reshaped([logits.count])
        switch config.loss {
        case .bce: return bceWithLogitsLoss(logits: flat, target: target)
        case .lsgan: return lsganLoss(outputs: flat, target: target)
        }
    }

    func reconstruction(_ x: Tensor, _ target: Tensor) -> (loss: Float, grad: Tensor) {
        switch config.recon {
        case .mse: return mseLoss(predictions: x, targets: target)
        case .l1: return l1Loss(predictions: x, targets: target)
        }
    }

    static func meanSigmoid(_ logits: Tensor) -> Float {
        var s: Float = 0
        for i in 0..<logits.count { s += stableSigmoid(logits[i]) }
        return s / Float(max(logits.count, 1))
    }

    // MARK: steps

    /// One discriminator update on batches xA, xB [N, size, size, channels].
    @discardableResult
    public func discriminatorStep(xA: Tensor, xB: Tensor) -> StepLosses {
        var out = StepLosses()
        D_B.zeroGradients()
        let xAB = G_AB.forward(xA, record: false).output
        var xBA: Tensor? = nil
        if usesA {
            D_A.zeroGradients()
            xBA = G_BA.forward(xB, record: false).output
        }
        func update(_ d: Network, real: Tensor, fake: Tensor, domain: String) -> Float {
            let r = d.forward(real), f = d.forward(fake)
            let lr = adversarial(r.output, target: 1), lf = adversarial(f.output, target: 0)
            scale(lr.grad, 0.5); scale(lf.grad, 0.5)
            d.backward(r.trace, dOutput: lr.grad.reshaped(r.output.shape), inputGradient: false)
            d.backward(f.trace, dOutput: lf.grad.reshaped(f.output.shape), inputGradient: false)
            out[.dOutput(domain, real: true)] = DiscoGAN.meanSigmoid(r.output)
            out[.dOutput(domain, real: false)] = DiscoGAN.meanSigmoid(f.output)
            let loss = 0.5 * lr.loss + 0.5 * lf.loss
            out[.discriminator(domain)] = loss
            return loss
        }
        var total: Float = 0
        if let xBA { total += update(D_A, real: xA, fake: poolA.query(xBA), domain: "A") }
        total += update(D_B, real: xB, fake: poolB.query(xAB), domain: "B")
        out[.disTotal] = total
        allReduceGradients(usesA ? [D_A, D_B] : [D_B])
        if usesA { optD_A.update(params: D_A.parameters.values, grads: D_A.parameters.grads) }
        optD_B.update(params: D_B.parameters.values, grads: D_B.parameters.grads)
        return out
    }

    /// One generator update with reconstruction weight `rate`.
    @discardableResult
    public func generatorStep(xA: Tensor, xB: Tensor, rate: Float) -> StepLosses {
        var out = StepLosses()
        out[.rate] = rate
        let advScale = 1 - rate
        G_AB.zeroGradients(); G_BA.zeroGradients()

        // Forwards, in the reference's order: x_AB, x_BA, x_ABA, x_BAB.
        let xAB = G_AB.forward(xA)
        let xBA = usesA ? G_BA.forward(xB) : nil
        let xABA = usesG_BA ? G_BA.forward(xAB.output) : nil
        let xBAB = usesA ? G_AB.forward(xBA!.output) : nil
        // Real features need no gradient; fakes are recorded for the input gradient through D.
        let realA = usesA ? D_A.forward(xA, record: false).features : []
        let realB = D_B.forward(xB, record: false).features
        let dAOnXBA = usesA ? D_A.forward(xBA!.output) : nil
        let dBOnXAB = D_B.forward(xAB.output)

        // Adversarial + feature matching through a frozen D: gradient at the fake image.
        func throughD(_ d: Network, fake: (output: Tensor, features: [Tensor], trace: Trace),
                      real: [Tensor], domain: String) -> Tensor {
            let gan = adversarial(fake.output, target: 1)
            let fm = featureMatchingLoss(real: real, fake: fake.features, realGradient: false,
                                         sync: communicator.size > 1 ? communicator : nil)
            out[.adversarial(domain)] = gan.loss
            out[.featureMatching(domain)] = fm.loss
            scale(gan.grad, config.ganWeight * advScale)
            for t in fm.dFake { scale(t, config.fmWeight * advScale) }
            return d.backward(fake.trace, dOutput: gan.grad.reshaped(fake.output.shape),
                              dFeatures: fm.dFake, inputGradient: true, parameterGradients: false)!
        }
        let dAB = throughD(D_B, fake: dBOnXAB, real: realB, domain: "B")
        let dBA = dAOnXBA.map { throughD(D_A, fake: $0, real: realA, domain: "A") }

        var total = out[.ganB]! * config.ganWeight * advScale + out[.fmB]! * config.fmWeight * advScale
        if usesA { total += (out[.ganA]! * config.ganWeight + out[.fmA]! * config.fmWeight) * advScale }

        // Reconstructions: x_ABA through G_BA back into x_AB; x_BAB through G_AB back into x_BA.
        if let xABA {
            let r = reconstruction(xABA.output, xA)
            out[.reconA] = r.loss; total += rate * r.loss
            scale(r.grad, rate)
            let dFromRecon = G_BA.backward(xABA.trace, dOutput: r.grad)!
            add(into: dAB, dFromRecon)
        }
        if let xBAB, let dBA {
            let r = reconstruction(xBAB.output, xB)
            out[.reconB] = r.loss; total += rate * r.loss
            scale(r.grad, rate)
            let dFromRecon = G_AB.backward(xBAB.trace, dOutput: r.grad)!
            add(into: dBA, dFromRecon)
        }
        G_AB.backward(xAB.trace, dOutput: dAB, inputGradient: false)
        if let xBA, let dBA { G_BA.backward(xBA.trace, dOutput: dBA, inputGradient: false) }
        // Identity (--identity W): W * L1(G_AB(x_B), x_B) as idt_B, and its mirror as idt_A.
        if config.identityWeight > 0 {
            total += identity(G_AB, xB, domain: "B", into: &out)
            if usesG_BA { total += identity(G_BA, xA, domain: "A", into: &out) }
        }
        out[.genTotal] = total

        allReduceGradients(usesG_BA ? [G_AB, G_BA] : [G_AB])
        optG_AB.update(params: G_AB.parameters.values, grads: G_AB.parameters.grads)
        if usesG_BA { optG_BA.update(params: G_BA.parameters.values, grads: G_BA.parameters.grads) }
        return out
    }

    /// W * L1(g(x), x) with W = `config.identityWeight`, its gradient added to g's; logs the
    /// unweighted L1 as `idt_DOMAIN` and returns the weighted term.
    func identity(_ g: Network, _ x: Tensor, domain: String, into out: inout StepLosses) -> Float {
        let f = g.forward(x)
        let l = l1Loss(predictions: f.output, targets: x)
        out[.identity(domain)] = l.loss
        scale(l.grad, config.identityWeight)
        g.backward(f.trace, dOutput: l.grad, inputGradient: false)
        return config.identityWeight * l.loss
    }

    /// The step of iteration i of the schedule.
    @discardableResult
    /// Adam uses the learning rate of iteration i (`TrainConfig.learningRate(at:)`), logged as `lr`.
    public func step(iteration: Int, xA: Tensor, xB: Tensor) -> (kind: String, losses: StepLosses) {
        let lr = config.learningRate(at: iteration)
        for (_, _, opt) in networks { opt.hp.learningRate = lr }
        var result: (kind: String, losses: StepLosses)
        if config.isDiscriminatorStep(iteration) {
            result = ("D", discriminatorStep(xA: xA, xB: xB))
        } else {
            result = ("G", generatorStep(xA: xA, xB: xB, rate: config.rate(at: iteration)))
        }
        result.losses[.lr] = lr
        return result
    }

    // MARK: inference

    /// Translates x [N, size, size, channels] in eval mode (running statistics), with the
    /// generator's batch norms folded into its weights (`InferenceNetwork`).
    public func translate(_ x: Tensor, direction: Direction) -> Tensor {
        InferenceNetwork(direction == .aToB ? G_AB : G_BA).forward(x)
    }
}

public enum Direction: String, Codable, Sendable, CaseIterable {
    case aToB = "a2b", bToA = "b2a"
}

@inline(__always) func scale(_ t: Tensor, _ k: Float) {
    let p = t.data
    Parallel.forRanges(t.count, grain: 1 << 15) { r in for i in r { p[i] *= k } }
}

@inline(__always) func add(into a: Tensor, _ b: Tensor) {
    precondition(a.shape == b.shape, "add: \(a.shape) vs \(b.shape)")
    let ap = a.data, bp = b.data
    Parallel.forRanges(a.count, grain: 1 << 15) { r in for i in r { ap[i] += bp[i] } }
}
