import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

/// `disco gan eval`: scores generated images with disco's own Fashion-MNIST classifier.
struct GanEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a GAN's samples with disco's Fashion-MNIST classifier: Fréchet distance, label accuracy, class histogram.",
        discussion: """
        The Fréchet distance is measured on the 128 penultimate features of disco's own small CNN \
        classifier (`disco gan classifier`), between the images in --real and the samples. It is not \
        Inception FID and is not comparable with published FIDs; compare it only with other runs \
        scored by the same classifier. Conditional models (or --samples folders with one subfolder per \
        class) also get label accuracy: the share of samples drawn for label k that the classifier \
        calls k. Every evaluation reports the class histogram of the samples and its entropy (nats, \
        and as a fraction of log K): a low fraction shows mode collapse.

        --samples DIR scores a folder of PNGs, e.g. written by scripts/torch_gan.py: DIR/<label>-<name>/*.png \
        (intended labels by folder name, matched to the classifier's classes) or images directly in DIR \
        (unconditional). All of its images are used (--count applies to --checkpoint).

        The classifier is read from --classifier (default checkpoints/fashion-classifier); when it is \
        missing and --real is DATA/test with a DATA/train beside it, it is trained first (a few minutes) \
        and cached there.
        """)

    @Option(help: "A `disco gan train` run folder.") var checkpoint: String?
    @Option(help: "A folder of generated images: DIR/<label>-<name>/*.png (conditional) or DIR/*.png.") var samples: String?
    @Option(help: "Real labelled images: DIR/test of `disco data fashion-mnist classes`.") var real: String
    @Option(help: "Samples to draw from --checkpoint (conditional: the same number per class).") var count = 10000
    @Option(help: "Random seed of the samples drawn from --checkpoint.") var seed: UInt64 = 0
    @Option(help: "The classifier's folder.") var classifier = FashionClassifier.defaultDirectory
    @Flag(help: "Print one JSON object.") var json = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard (checkpoint == nil) != (samples == nil) else { throw ValidationError("give one of --checkpoint RUN or --samples DIR") }
        guard (2...100_000).contains(count) else { throw ValidationError("--count must be in 2...100000, got \(count)") }
    }

    func run() throws {
        threadOptions.apply()
        _ = try loadBLASOrExplain()
        let model = try FashionClassifier.loadOrBuild(directory: classifier, real: real)
        let result: GANEvaluationResult
        do {
            if let samples {
                result = try GANEvaluation.evaluate(samplesFolder: samples, real: real, classifier: model)
            } else {
                let sampler = try GANCheckpoint.loadModel(checkpoint: try GANCheckpoint.resolve(checkpoint!))
                result = try evaluate(sampler: sampler, classifier: model)
            }
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
        report(result)
    }

    /// Scores `count` samples of `sampler` against --real.
    func evaluate(sampler: GANSampler, classifier model: FashionClassifier) throws -> GANEvaluationResult {
        try GANEvaluation.evaluate(sampler: sampler, real: real, count: count, seed: seed, classifier: model)
    }

    func report(_ result: GANEvaluationResult) {
        if json {
            var obj = result.json
            obj["classifier"] = classifier
            obj["real"] = real
            if let samples { obj["samples"] = samples }
            if let checkpoint { obj["checkpoint"] = checkpoint; obj["seed"] = seed }
            print(jsonString(obj))
        } else {
            for line in result.lines { print(line) }
        }
    }
}

/// `disco gan classifier`: trains the evaluation's classifier and caches it.
struct GanClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classifier",
        abstract: "Train the Fashion-MNIST classifier `disco gan eval` scores with, and cache it.",
        discussion: """
        A small CNN on disco's kernels: conv 1->32 (4x4, stride 2) LeakyReLU, conv 32->64 BN LeakyReLU, \
        linear 3136->128 ReLU (the features the Fréchet distance uses), linear 128->10. Trained with \
        softmax cross-entropy and Adam on DATA/train, measured on DATA/test, written to --out as \
        classifier.safetensors and classifier.json (test accuracy, data, settings). DATA is the output \
        of `disco data fashion-mnist classes --out DATA`.
        """)

    @Option(help: "Labelled data: DATA/train/<label>-<name>/*.png and DATA/test/...") var data: String
    @Option(help: "Folder to write the classifier to.") var out = FashionClassifier.defaultDirectory
    @Option(help: "Training epochs.") var epochs = FashionClassifier.Settings().epochs
    @Option(help: "Batch size.") var batch = FashionClassifier.Settings().batch
    @Option(help: "Adam learning rate (cosine-annealed to 0).") var lr = FashionClassifier.Settings().learningRate
    @Option(help: "Random seed (initialisation and data order).") var seed: UInt64 = 0
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        try requirePath(out, "--out")
        guard (1...1000).contains(epochs) else { throw ValidationError("--epochs must be in 1...1000, got \(epochs)") }
        guard (2...4096).contains(batch) else { throw ValidationError("--batch must be in 2...4096, got \(batch)") }
        guard lr > 0 && lr < 1 else { throw ValidationError("--lr must be in (0, 1), got \(lr)") }
    }

    func run() throws {
        threadOptions.apply()
        _ = try loadBLASOrExplain()
        let settings = FashionClassifier.Settings(epochs: epochs, batch: batch, learningRate: lr, seed: seed)
        let model = try FashionClassifier.build(data: data, out: out, settings: settings) { print($0); fflush(stdout) }
        print(String(format: "test accuracy %.2f%% on %d images; wrote %@", 100 * (model.info?.testAccuracy ?? 0),
                     model.info?.testCount ?? 0, out))
    }
}
