import DiscoCore

/// `disco bench gan`: the training iteration of `disco gan train` timed for the MLP GAN and the
/// conditional DCGAN on random Fashion-MNIST-shaped data (28x28x1 images in [0, 1], 10 labels).
public enum GANBench {
    /// Images of Fashion-MNIST's training split: seconds per epoch are extrapolated from it.
    public static let epochImages = 60_000

    /// Times both models (the spec's default batches: MLP 500, DCGAN 64) and returns what
    /// `disco bench gan --json` prints: "results" (one object per model), "threads", "blas_core",
    /// and "pytorch_side_by_side", the scripts/torch_gan.py commands of the same models.
    /// OpenBLAS must be loaded.
    public static func run(mlpIterations: Int, dcganIterations: Int, warmup: Int) -> [String: Any] {
        let results = [measure(.mlp, iterations: mlpIterations, warmup: warmup),
                       measure(.dcgan, iterations: dcganIterations, warmup: warmup)]
        let torch = [
            "/tmp/torchenv/bin/python scripts/torch_gan.py --data DIR --arch mlp --epochs 1 --threads \(Parallel.threads) --json",
            "/tmp/torchenv/bin/python scripts/torch_gan.py --data DIR --arch dcgan --conditional --epochs 1 --threads \(Parallel.threads) --json",
        ]
        return ["results": results, "threads": Parallel.threads, "blas_core": BLAS.shared.coreName, "pytorch_side_by_side": torch]
    }

    /// `warmup` untimed, then `iterations` timed steps of a fixed-seed model (conditional for the
    /// DCGAN) on one fixed random batch, fresh z each step. Seconds per epoch = the mean seconds
    /// per iteration x floor(`epochImages` / batch): extrapolated, and labelled so.
    public static func measure(_ arch: GANArch, iterations: Int, warmup: Int) -> [String: Any] {
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
        let mean = times.reduce(0, +) / Double(times.count), perEpoch = epochImages / b
        return ["arch": (config.conditional ? "conditional " : "") + arch.rawValue, "batch": b, "sec_per_iter": mean,
                "best_sec_per_iter": times.min()!, "iterations_per_epoch": perEpoch,
                "sec_per_epoch_extrapolated": mean * Double(perEpoch), "iterations_timed": times.count]
    }
}
