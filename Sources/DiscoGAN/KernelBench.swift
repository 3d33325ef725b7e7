import DiscoCore

/// `disco bench kernels`: the convolution passes of the reference networks, timed.
public enum KernelBench {
    /// One convolution layer of G or D at a batch size: `geometry` is the convolution it runs
    /// (for a transposed convolution, the convolution it is the adjoint of).
    public struct Layer {
        public let net: String
        public let spec: BlockSpec
        public let geometry: ConvGeometry
        /// Direct-convolution GFLOP of one pass (2 * multiply-adds).
        public var gflop: Double { 2 * Double(geometry.macs) / 1e9 }
    }

    /// The layer's passes, named as the layer sees them, with the convolution pass each runs: a
    /// transposed convolution's forward is the convolution's input gradient and vice versa.
    public static func passes(_ kind: LayerKind) -> [(name: String, conv: ConvPass)] {
        kind == .conv ? [("forward", .forward), ("input_grad", .inputGradient), ("weight_grad", .weightGradient)]
                      : [("forward", .inputGradient), ("input_grad", .forward), ("weight_grad", .weightGradient)]
    }

    /// Every convolution of DiscoGAN's G and D at `size` x `size` x `channels`, batch `batch`.
    public static func layers(batch: Int, size: Int, channels: Int) -> [Layer] {
        var out: [Layer] = []
        for (net, blocks) in [("G", DiscoGANModels.generatorBlocks(size: size, channels: channels)),
                              ("D", DiscoGANModels.discriminatorBlocks(size: size, channels: channels).blocks)] {
            var h = size
            for b in blocks {
                out.append(Layer(net: net, spec: b, geometry: b.geometry(batch: batch, height: h, width: h)))
                h = b.outputSize(h)
            }
        }
        return out
    }

    /// Random tensors for one layer's passes (conv geometry: x, y = dy, w, dw).
    final class Operands {
        let x, y, w, dw: Tensor
        init(_ g: ConvGeometry, _ rng: inout Xoshiro256) {
            x = Tensor.uniform(g.inputShape, low: -1, high: 1, rng: &rng)
            y = Tensor.uniform(g.outputShape, low: -1, high: 1, rng: &rng)
            w = Tensor.uniform(g.weightShape, low: -0.1, high: 0.1, rng: &rng)
            dw = Tensor(zeros: g.weightShape)
        }
        /// Runs convolution pass `pass` of `g` through Conv (under the current `Conv.algorithm`),
        /// or by Winograd with tile `tile` (the F(4x4) forward, which no algorithm setting runs).
        func run(_ pass: ConvPass, _ g: ConvGeometry, tile: Int? = nil) {
            if let tile {
                let winograd = Winograd.tile(tile)
                switch pass {
                case .forward: winograd.forward(y: y, x: x, w: w, g: g)
                case .inputGradient: winograd.backwardInput(dx: x, dy: y, w: w, g: g)
                case .weightGradient: winograd.backwardWeight(dw: dw, x: x, dy: y, g: g)
                }
                return
            }
            switch pass {
            case .forward: Conv.forward(y: y, x: x, w: w, g: g)
            case .inputGradient: Conv.backwardInput(dx: x, dy: y, w: w, g: g)
            case .weightGradient: Conv.backwardWeight(dw: dw, x: x, dy: y, g: g)
            }
        }
    }

    /// Seconds (best of `repeats`) of each layer's three passes under the current `Conv.algorithm`,
    /// keyed by the layer's pass names, and the kernel each ran with.
    public static func measure(_ layers: [Layer], repeats: Int) -> [(seconds: [String: Double], kernels: [String: ConvKernel])] {
        var rng = Xoshiro256(seed: 3)
        return layers.map { l in
            let ops = Operands(l.geometry, &rng)
            var seconds: [String: Double] = [:], kernels: [String: ConvKernel] = [:]
            for (name, pass) in passes(l.spec.kind) {
                seconds[name] = Benchmark.timeBest(repeats: repeats) { ops.run(pass, l.geometry) }
                kernels[name] = Conv.kernel(l.geometry, pass)
            }
            return (seconds, kernels)
        }
    }

    /// One pass of one layer timed under each kernel that can run it.
    public struct Comparison {
        public let layer: Layer
        public let pass: String
        public let convPass: ConvPass
        /// Per kernel: the best time and the spread of the rounds ((slowest - fastest) / fastest).
        public let results: [(kernel: ConvKernel, best: Double, spread: Double)]
        /// The kernel `auto` runs this pass with.
        public let auto: ConvKernel
        public var fastest: ConvKernel { results.min { $0.best < $1.best }!.kernel }
        public func best(_ k: ConvKernel) -> Double? { results.first { $0.kernel == k }?.best }
    }

    /// The kernels that can run `pass` of `g`: im2col always, Winograd F(2x2) and F(4x4) on the
    /// 4x4 stride-2 layers, the direct kernels where they apply.
    public static func candidates(_ g: ConvGeometry, _ pass: ConvPass) -> [ConvKernel] {
        var c: [ConvKernel] = [.im2col]
        if Winograd.isEligible(g) { c += Winograd.tiles.map { .winograd($0) } }
        if DirectConv.applies(g, pass) { c.append(.direct) }
        return c
    }

    /// Times every candidate kernel of every pass of `layers`, alternating them: `rounds` rounds,
    /// each running every candidate once (after one warm-up call each), so that a machine shared
    /// with other work slows them alike. Leaves `Conv.algorithm` as it was.
    public static func compare(_ layers: [Layer], rounds: Int) -> [Comparison] {
        let saved = Conv.algorithm
        defer { Conv.algorithm = saved }
        var rng = Xoshiro256(seed: 3)
        var out: [Comparison] = []
        for l in layers {
            let ops = Operands(l.geometry, &rng)
            for (name, pass) in passes(l.spec.kind) {
                Conv.algorithm = saved
                let auto = Conv.kernel(l.geometry, pass)
                let kernels = candidates(l.geometry, pass)
                // Winograd runs with its tile named: DISCO_CONV=winograd4 keeps F(2x2) on the forward.
                func run(_ k: ConvKernel) {
                    switch k {
                    case .winograd(let m): ops.run(pass, l.geometry, tile: m)
                    case .im2col: Conv.algorithm = .im2col; ops.run(pass, l.geometry)
                    case .direct: Conv.algorithm = .direct; ops.run(pass, l.geometry)
                    }
                }
                var times = [[Double]](repeating: [], count: kernels.count)
                for k in kernels { run(k) }
                for _ in 0..<rounds {
                    for (i, k) in kernels.enumerated() { times[i].append(Benchmark.time { run(k) }) }
                }
                let results = kernels.enumerated().map { i, k -> (kernel: ConvKernel, best: Double, spread: Double) in
                    let best = times[i].min()!
                    return (k, best, (times[i].max()! - best) / best)
                }
                out.append(Comparison(layer: l, pass: name, convPass: pass, results: results, auto: auto))
            }
        }
        return out
    }
}
