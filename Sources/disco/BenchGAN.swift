import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

struct BenchGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Time disco gan train's iteration for the MLP GAN and the conditional DCGAN on Fashion-MNIST-shaped data; seconds per epoch extrapolated.",
        discussion: """
        Random 28x28 images and labels (10 classes), the spec's models and default batches (MLP 500, \
        DCGAN 64). Seconds per epoch = the mean seconds per iteration x floor(60000 / batch), the \
        iterations of an epoch of Fashion-MNIST's training split: extrapolated, and labelled so. \
        A whole epoch, with data: disco gan train DIR/train --arch ... --epochs 1 (its progress line \
        and log.jsonl's time). The PyTorch script of the same models, for the side-by-side, is printed \
        at the end (scripts/torch_gan.py).
        """)

    @Option(help: "Timed iterations of the MLP GAN.") var mlpIterations = 20
    @Option(help: "Timed iterations of the DCGAN.") var dcganIterations = 10
    @Option(help: "Warm-up iterations, not timed.") var warmup = 2
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard mlpIterations >= 1, dcganIterations >= 1, warmup >= 0 else {
            throw ValidationError("--mlp-iterations and --dcgan-iterations must be at least 1, --warmup at least 0")
        }
    }

    func measure(_ arch: GANArch, iterations: Int) -> [String: Any] {
        var config = GANConfig()
        config.arch = arch; config.batch = GANConfig.defaultBatch(arch)
        config.classNames = arch == .dcgan ? (0..<10).map { "\($0)" } : nil
        let model = GANModel(config: config)
        model.initialize(seed: 0)
        var rng = Xoshiro256(seed: 1)
        let b = config.batch
        let real = model.modelImages(Tensor.uniform([b, 28, 28, 1], low: 0, high: 1, rng: &rng))
        let labels = config.conditional ? (0..<b).map { $0 % 10 } : nil
        var times: [Double] = []
        for i in 0..<(warmup + iterations) {
            let z = model.noise(b, rng: &rng)
            let t = Benchmark.now()
            _ = model.step(real: real, labels: labels, z: z)
            if i >= warmup { times.append(Benchmark.now() - t) }
        }
        let mean = times.reduce(0, +) / Double(times.count), perEpoch = 60_000 / b
        return ["arch": (config.conditional ? "conditional " : "") + arch.rawValue, "batch": b, "sec_per_iter": mean,
                "best_sec_per_iter": times.min()!, "iterations_per_epoch": perEpoch,
                "sec_per_epoch_extrapolated": mean * Double(perEpoch), "iterations_timed": times.count]
    }

    func run() throws {
        threadOptions.apply()
        let blas = try loadBLASOrExplain()
        let results = [measure(.mlp, iterations: mlpIterations), measure(.dcgan, iterations: dcganIterations)]
        let torch = [
            "/tmp/torchenv/bin/python scripts/torch_gan.py --data DIR --arch mlp --epochs 1 --threads \(Parallel.threads) --json",
            "/tmp/torchenv/bin/python scripts/torch_gan.py --data DIR --arch dcgan --conditional --epochs 1 --threads \(Parallel.threads) --json",
        ]
        if json {
            print(jsonString(["results": results, "threads": Parallel.threads, "blas_core": blas.coreName,
                              "pytorch_side_by_side": torch]))
            return
        }
        for r in results {
            print(String(format: "gan %@ batch=%d sec_per_iter=%.4f best=%.4f sec_per_epoch=%.1f (extrapolated: %d iterations of Fashion-MNIST's 60000 images)",
                         r["arch"] as! String, r["batch"] as! Int, r["sec_per_iter"] as! Double, r["best_sec_per_iter"] as! Double,
                         r["sec_per_epoch_extrapolated"] as! Double, r["iterations_per_epoch"] as! Int))
        }
        print("threads=\(Parallel.threads) blas=\(blas.coreName)")
        print("PyTorch, the same models (DIR from: disco data fashion-mnist classes --out DIR; it prints seconds per epoch, measured over whole epochs):")
        for t in torch { print("  " + t) }
    }
}
