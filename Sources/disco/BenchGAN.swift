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

    func run() throws {
        threadOptions.apply()
        _ = try loadBLASOrExplain()
        let r = GANBench.run(mlpIterations: mlpIterations, dcganIterations: dcganIterations, warmup: warmup)
        if json { print(jsonString(r)); return }
        for m in r["results"] as! [[String: Any]] {
            print(String(format: "gan %@ batch=%d sec_per_iter=%.4f best=%.4f sec_per_epoch=%.1f (extrapolated: %d iterations of Fashion-MNIST's 60000 images)",
                         m["arch"] as! String, m["batch"] as! Int, m["sec_per_iter"] as! Double, m["best_sec_per_iter"] as! Double,
                         m["sec_per_epoch_extrapolated"] as! Double, m["iterations_per_epoch"] as! Int))
        }
        print("threads=\(r["threads"] as! Int) blas=\(r["blas_core"] as! String)")
        print("PyTorch, the same models (DIR from: disco data fashion-mnist classes --out DIR; it prints seconds per epoch, measured over whole epochs):")
        for t in r["pytorch_side_by_side"] as! [String] { print("  " + t) }
    }
}
