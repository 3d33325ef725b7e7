import ArgumentParser
import DiscoCore
import DiscoGAN

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Effective GFLOP/s of every convolution and transposed convolution of the reference networks (forward, input gradient, weight gradient), beside sgemm.",
        discussion: "Conv figures are effective GFLOP/s: the direct convolution's FLOPs (2 * N * Ho * Wo * K * kh * kw * C per pass) over the time taken, whatever the algorithm; Winograd does fewer real FLOPs, so its effective figure can exceed sgemm's.")

    @Option(help: "Batch size.") var batch = 64
    @OptionGroup var shape: ModelShapeOptions
    var size: Int { shape.size }
    var channels: Int { shape.channels }
    @Option(help: "Timed repeats per pass (best is kept).") var repeats = 3
    @Option(help: "sgemm size n for the n^3 reference.") var sgemmSize = 4096
    @Option(help: "Algorithm for the 4x4 stride-2 pad-1 convolutions: im2col, winograd or auto (default: DISCO_CONV, else auto).")
    var conv: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        if let c = conv, ConvAlgorithm(rawValue: c) == nil {
            throw ValidationError("--conv must be one of \(ConvAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")), got \(c)")
        }
    }

    func run() throws {
        let blas = try loadBLASOrExplain()
        if let c = conv { Conv.algorithm = ConvAlgorithm(rawValue: c)! }
        let sgemm = measureSgemm(n: sgemmSize)
        var rows: [[String: Any]] = []
        var rng = Xoshiro256(seed: 3)
        let g = DiscoGANModels.generatorBlocks(size: size, channels: channels)
        let d = DiscoGANModels.discriminatorBlocks(size: size, channels: channels).blocks
        for (net, blocks) in [("G", g), ("D", d)] {
            var h = size
            for b in blocks {
                let geo = b.geometry(batch: batch, height: h, width: h)
                h = b.outputSize(h)
                let x = Tensor.uniform(geo.inputShape, low: -1, high: 1, rng: &rng)
                let y = Tensor.uniform(geo.outputShape, low: -1, high: 1, rng: &rng)
                let w = Tensor.uniform(geo.weightShape, low: -0.1, high: 0.1, rng: &rng)
                let dw = Tensor(zeros: geo.weightShape)
                let flop = 2 * Double(geo.macs) / 1e9
                var passes: [String: Double] = [:]
                if b.kind == .conv {
                    passes["forward"] = flop / timeBest(repeats: repeats) { Conv.forward(y: y, x: x, w: w, g: geo) }
                    passes["input_grad"] = flop / timeBest(repeats: repeats) { Conv.backwardInput(dx: x, dy: y, w: w, g: geo) }
                    passes["weight_grad"] = flop / timeBest(repeats: repeats) { Conv.backwardWeight(dw: dw, x: x, dy: y, g: geo) }
                } else {
                    passes["forward"] = flop / timeBest(repeats: repeats) { Conv.transposedForward(y: x, x: y, w: w, g: geo) }
                    passes["input_grad"] = flop / timeBest(repeats: repeats) { Conv.transposedBackwardInput(dx: y, dy: x, w: w, g: geo) }
                    passes["weight_grad"] = flop / timeBest(repeats: repeats) { Conv.transposedBackwardWeight(dw: dw, x: y, dy: x, g: geo) }
                }
                // A transposed conv's forward is the conv's input gradient and vice versa.
                let order: [ConvPass] = b.kind == .conv ? [.forward, .inputGradient, .weightGradient] : [.inputGradient, .forward, .weightGradient]
                let algos = order.map { Conv.usesWinograd(geo, $0) ? "w" : "i" }.joined()
                rows.append(["net": net, "layer": b.name, "kind": b.kind.rawValue, "in": [b.inChannels, b.outChannels], "algo": algos,
                             "gflop": flop, "forward": passes["forward"]!, "input_grad": passes["input_grad"]!,
                             "weight_grad": passes["weight_grad"]!])
            }
        }
        if json {
            print(jsonString(["sgemm_gflops": sgemm, "sgemm_n": sgemmSize, "blas_core": blas.coreName, "conv": Conv.algorithm.rawValue,
                              "threads": Parallel.threads, "batch": batch, "size": size, "layers": rows]))
            return
        }
        print("sgemm \(sgemmSize)^3: \(fmt(sgemm)) GFLOP/s (OpenBLAS \(blas.coreName), \(Parallel.threads) threads); batch \(batch), \(size)x\(size)x\(channels); conv \(Conv.algorithm.rawValue)")
        print("layer  kind     channels     GFLOP   forward  in-grad  w-grad   algo (effective GFLOP/s: direct-conv FLOPs / time; % of sgemm; algo per pass: i = im2col, w = Winograd)")
        for r in rows {
            let ch = r["in"] as! [Int]
            let cells = ["forward", "input_grad", "weight_grad"].map { k -> String in
                let v = r[k] as! Double
                return "\(fmt(v))(\(Int((100 * v / sgemm).rounded()))%)"
            }
            print("\(pad(r["net"] as! String + "." + (r["layer"] as! String), 6)) \(pad(r["kind"] as! String, 7)) \(pad("\(ch[0])->\(ch[1])", 11)) \(pad(String(format: "%.2f", r["gflop"] as! Double), 7)) \(cells.map { pad($0, 9) }.joined(separator: " ")) \(r["algo"] as! String)")
        }
    }
}

func fmt(_ v: Double) -> String { String(format: "%.0f", v) }
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
