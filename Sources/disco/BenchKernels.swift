import ArgumentParser
import DiscoCore
import DiscoGAN

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Effective GFLOP/s of every convolution and transposed convolution of the reference networks (forward, input gradient, weight gradient), beside sgemm.",
        discussion: """
        Conv figures are effective GFLOP/s: the direct convolution's FLOPs (2 * N * Ho * Wo * K * kh * kw * C per pass) \
        over the time taken, whatever the algorithm; Winograd does fewer real FLOPs, so its effective figure can exceed sgemm's.
        --compare times every kernel that can run each pass (i = im2col, w = Winograd F(2x2), W = F(4x4), \
        d = direct small-channel kernels) in alternation, --rounds times each, and prints each one's \
        time relative to im2col's, the fastest, the one auto uses, and how much the rounds spread.
        """)

    @Option(help: "Batch size.") var batch = 64
    @OptionGroup var shape: ModelShapeOptions
    @OptionGroup var gemm: GEMMOptions
    @Option(help: "Timed repeats per pass (best is kept).") var repeats = 3
    @Option(help: "sgemm size n for the n^3 reference (0: skip).") var sgemmSize = 4096
    @Option(help: "Algorithm for the 4x4 stride-2 pad-1 convolutions: \(ConvAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")) (default: DISCO_CONV, else auto).")
    var conv: String?
    @Flag(help: "Compare every kernel of every pass, alternated.") var compare = false
    @Option(help: "Only these layers, by name (comma-separated: e1,c1,d4 or G.e1,D.c1).") var layers: String?
    @Option(help: "With --compare: alternated rounds (each kernel's best is kept).") var rounds = 5
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        if let c = conv, ConvAlgorithm(rawValue: c) == nil {
            throw ValidationError("--conv must be one of \(ConvAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")), got \(c)")
        }
        guard batch >= 1, repeats >= 1, rounds >= 1, sgemmSize >= 0 else {
            throw ValidationError("--batch, --repeats and --rounds must be positive, --sgemm-size at least 0")
        }
    }

    func run() throws {
        gemm.apply()
        let blas = try loadBLASOrExplain(applyingGEMMPrecision: true)
        if let c = conv { Conv.algorithm = ConvAlgorithm(rawValue: c)! }
        let wanted = layers.map { Set($0.split(separator: ",").map(String.init)) }
        let layers = KernelBench.layers(batch: batch, size: shape.size, channels: shape.channels).filter { l in
            wanted.map { $0.contains(l.spec.name) || $0.contains(l.net + "." + l.spec.name) } ?? true
        }
        if layers.isEmpty { throw CLIError("--layers \(self.layers ?? ""): no such layer in the \(shape.size)x\(shape.size) networks") }
        let load0 = Benchmark.loadAverage()
        if compare { return printComparison(KernelBench.compare(layers, rounds: rounds), load0, blas) }
        // The layers first: OpenBLAS's threads spin for a while after the multi-threaded sgemm
        // reference and would take a core from the first layer timed (e1's forward read half).
        let measured = KernelBench.measure(layers, repeats: repeats)
        let sgemm = sgemmSize > 0 ? Benchmark.sgemmGFLOPS(n: sgemmSize) : 0
        var rows: [[String: Any]] = []
        for (l, m) in zip(layers, measured) {
            let names = KernelBench.passes(l.spec.kind).map(\.name)
            var row: [String: Any] = ["net": l.net, "layer": l.spec.name, "kind": l.spec.kind.rawValue,
                                      "in": [l.spec.inChannels, l.spec.outChannels], "gflop": l.gflop,
                                      "algo": names.map { m.kernels[$0]!.letter }.joined()]
            for n in names { row[n] = l.gflop / m.seconds[n]! }
            rows.append(row)
        }
        if json {
            print(jsonString(["sgemm_gflops": sgemm, "sgemm_n": sgemmSize, "blas_core": blas.coreName, "conv": Conv.algorithm.rawValue,
                              "threads": Parallel.threads, "batch": batch, "size": shape.size, "layers": rows]))
            return
        }
        print("sgemm \(sgemmSize)^3: \(fmt(sgemm)) GFLOP/s (OpenBLAS \(blas.coreName), \(Parallel.threads) threads); batch \(batch), \(shape.size)x\(shape.size)x\(shape.channels); conv \(Conv.algorithm.rawValue)")
        print("layer  kind     channels     GFLOP   forward  in-grad  w-grad   algo (effective GFLOP/s: direct-conv FLOPs / time; % of sgemm; algo per pass: i = im2col, w = Winograd F(2x2), W = F(4x4), d = direct)")
        for r in rows {
            let ch = r["in"] as! [Int]
            let cells = ["forward", "input_grad", "weight_grad"].map { k -> String in
                let v = r[k] as! Double
                return sgemm > 0 ? "\(fmt(v))(\(Int((100 * v / sgemm).rounded()))%)" : fmt(v)
            }
            print("\(pad(r["net"] as! String + "." + (r["layer"] as! String), 6)) \(pad(r["kind"] as! String, 7)) \(pad("\(ch[0])->\(ch[1])", 11)) \(pad(String(format: "%.2f", r["gflop"] as! Double), 7)) \(cells.map { pad($0, 9) }.joined(separator: " ")) \(r["algo"] as! String)")
        }
    }

    func printComparison(_ results: [KernelBench.Comparison], _ load0: [Double], _ blas: BLAS) {
        let load1 = Benchmark.loadAverage()
        if json {
            let rows: [[String: Any]] = results.map { c in
                ["net": c.layer.net, "layer": c.layer.spec.name, "pass": c.pass, "auto": c.auto.description, "fastest": c.fastest.description,
                 "gflop": c.layer.gflop,
                 "kernels": Dictionary(uniqueKeysWithValues: c.results.map { ($0.kernel.description, ["seconds": $0.best, "spread": $0.spread]) })]
            }
            print(jsonString(["blas_core": blas.coreName, "threads": Parallel.threads, "batch": batch, "size": shape.size,
                              "channels": shape.channels, "rounds": rounds, "loadavg_start": load0, "loadavg_end": load1, "passes": rows]))
            return
        }
        print("batch \(batch), \(shape.size)x\(shape.size)x\(shape.channels), OpenBLAS \(blas.coreName), \(Parallel.threads) threads, \(rounds) alternated rounds; load \(load0.map { String(format: "%.2f", $0) }.joined(separator: " ")) -> \(load1.map { String(format: "%.2f", $0) }.joined(separator: " "))")
        print("layer  pass         im2col ms   time relative to im2col (spread of the rounds)          fastest  auto")
        for c in results {
            let base = c.best(.im2col)!
            let cells = c.results.map { r in "\(r.kernel.letter) \(String(format: "%.2f", r.best / base)) (\(Int((100 * r.spread).rounded()))%)" }
            print("\(pad(c.layer.net + "." + c.layer.spec.name, 6)) \(pad(c.pass, 12)) \(pad(String(format: "%8.2f", 1e3 * base), 11)) \(pad(cells.joined(separator: "  "), 55)) \(pad(c.fastest.letter, 8)) \(c.auto.letter)")
        }
    }
}

func fmt(_ v: Double) -> String { String(format: "%.0f", v) }
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
