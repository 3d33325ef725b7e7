import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

extension ToyData: ExpressibleByArgument {}
extension GANArch: ExpressibleByArgument {}
extension GANLoss: ExpressibleByArgument {}
extension GANGeneratorLoss: ExpressibleByArgument {}

struct Gan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The GAN family DiscoGAN descends from.",
        subcommands: [GanTrain.self, GanSample.self, GanEval.self, GanClassifier.self, GanToy.self])
}

struct GanToy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "toy",
        abstract: "Goodfellow et al.'s minimax game on 1-D data, made visible: p_data, p_g, D and the optimal D* as training goes.",
        discussion: """
        G and D are small MLPs (1 -> h -> h -> 1); D maximises V(D, G) = E log D(x) + E log(1 - D(G(z))), \
        G takes the non-saturating step. For a fixed G the best D is D* = p_data / (p_data + p_g); at \
        p_g = p_data, D* = 1/2 and V = -log 4. Writes RUN/toy.html (a plot per snapshot and V over \
        training) and RUN/log.jsonl (step, V, E|D - D*| under (p_data + p_g) / 2).
        """)

    @Option(help: "The run folder to write.") var out: String
    @Option(help: "Data: gaussian (N(2, 0.5^2)) or mixture (two Gaussians at -2 and 2).") var data = ToyData.gaussian
    @Option(help: "Training steps (one D step and one G step each).") var steps = 3000
    @Option(help: "Snapshots (plots), the first before training.") var snapshots = 6
    @Option(help: "Hidden units per layer.") var hidden = 32
    @Option(help: "Adam learning rate.") var lr: Float = 1e-3
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        try requirePath(out, "--out")
        guard steps >= 1 else { throw ValidationError("--steps must be positive, got \(steps)") }
        guard (2...50).contains(snapshots) else { throw ValidationError("--snapshots must be in 2...50, got \(snapshots)") }
        guard (1...1024).contains(hidden) else { throw ValidationError("--hidden must be in 1...1024, got \(hidden)") }
        guard lr > 0 && lr < 1 else { throw ValidationError("--lr must be in (0, 1), got \(lr)") }
    }

    func run() throws {
        threadOptions.apply()
        _ = try loadBLASOrExplain()
        var settings = ToyGAN.Settings()
        settings.data = data; settings.steps = steps; settings.snapshots = snapshots
        settings.hidden = hidden; settings.learningRate = lr; settings.seed = seed
        try ToyGAN.writeRun(settings: settings, out: out) { s in
            print(String(format: "step %6d  V %.4f (-log 4 = %.4f)  E|D - D*| %.3f", s.step, s.value, -Foundation.log(4.0), s.meanGap))
        }
        print("wrote \(out)/toy.html")
    }
}

struct GanTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train an MLP GAN or a DCGAN (conditional, LSGAN) on a folder of 28x28 gray images.",
        discussion: """
        FOLDER holds one subfolder of images per label (disco data fashion-mnist classes --out DIR \
        writes DIR/train/0-tshirt/ ...: give DIR/train), or images only (unconditional models). \
        Images are converted to gray and resized to 28x28.
        --arch mlp: G z(64) -> 128 ReLU -> 784 sigmoid, D 784 -> 128 ReLU -> 1 (batch 500). \
        --arch dcgan: transposed-conv G with BN and ReLU, strided-conv D with LeakyReLU 0.2, 32x32 \
        (batch 64). --conditional joins the one-hot label to z and to D's input (planes for the DCGAN). \
        Adam (lr 2e-4, betas 0.5, 0.999). The run folder (--out) receives log.jsonl, samples/epoch-N.png \
        (fixed z; one row per label when conditional), report.html and a checkpoint per epoch. \
        Ctrl-C saves a checkpoint and exits; --resume continues exactly.
        """)

    @Argument(help: "Folder of label subfolders of images (or of images only).") var folder: String
    @Option(help: "Architecture: mlp or dcgan.") var arch = GANArch.mlp
    @Flag(help: "Condition G and D on the label (the folder's subfolders).") var conditional = false
    @Option(help: "Adversarial loss: bce or lsgan (least squares, Mao et al.).") var loss = GANLoss.bce
    @Option(help: "G's loss with --loss bce: nonsaturating (-log D(G(z))) or minimax (log(1 - D(G(z))), which stalls).")
    var gLoss = GANGeneratorLoss.nonsaturating
    @Option(help: "Epochs (passes over the images; the last partial batch is dropped).") var epochs: Int
    @Option(help: "Batch size (default: 500 for mlp, 64 for dcgan).") var batch: Int?
    @Option(help: "Adam learning rate.") var lr: Float = 2e-4
    @Option(help: "DCGAN width w (D's first layer; G's last hidden layer; default 32).") var width: Int?
    @Option(help: "The run folder.") var out: String
    @Flag(help: "Continue the run in --out from its latest checkpoint (--epochs may grow).") var resume = false
    @Option(help: "Random seed (weights, shuffling, z).") var seed: UInt64 = 0
    @Option(help: "Append to log.jsonl every N iterations.") var logEvery = 1
    @Option(help: "Checkpoints to keep, the newest (0 keeps all).") var keep = 2
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws { try requirePath(out, "--out") }

    func run() throws {
        threadOptions.apply()
        var config = GANConfig()
        config.arch = arch; config.loss = loss; config.generatorLoss = gLoss; config.epochs = epochs
        config.batch = batch ?? GANConfig.defaultBatch(arch); config.learningRate = lr; config.width = width ?? 32
        config.seed = seed; config.logEvery = logEvery; config.keep = keep
        // Settings first, before seconds of decoding.
        if arch == .mlp, let width {
            throw CLIError("--width \(width) sets the DCGAN's width; the MLP GAN's hidden layer is 128 units: drop --width, or add --arch dcgan")
        }
        let problems = config.problems()
        guard problems.isEmpty else { throw CLIError(problems.joined(separator: "; ")) }
        _ = try loadBLASOrExplain()
        let t0 = Date()
        let data: LabelledImages
        do { data = try LabelledImages.load(folder: folder) } catch { throw CLIError("\(error)") }
        if !data.failures.isEmpty {
            FileWriter.printError("disco: \(data.failures.count) image(s) of \(folder) do not decode and are left out (first: \(data.failures[0].1))")
        }
        if conditional {
            guard let names = data.classNames else {
                throw CLIError("--conditional: \(folder) has no label subfolders (images only); give a folder with one subfolder of images per label, or drop --conditional")
            }
            config.classNames = names
        }
        let trainer: GANTrainer
        do { trainer = try GANTrainer(config: config, run: out, data: data) } catch { throw CLIError("\(error)") }
        let labels = data.classNames.map { "\($0.count) labels" } ?? "no labels"
        print("read \(data.count) images (\(labels)) of \(folder) in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s")
        var warned = false
        func refreshReport() {
            do { try writeGANReport(runDirectory: out) } catch {
                if !warned { warned = true; FileWriter.printError("warning: \(error) (the report is not updated)") }
            }
        }
        do { try trainer.prepare(resume: resume) } catch { throw CLIError("\(error)") }
        var progress = ProgressLine(total: trainer.totalIterations, start: trainer.iteration)
        trainer.progress = { it, _, s in
            var l = StepLosses()
            l[.genTotal] = s.lossG; l[.disTotal] = s.lossD
            progress.update(iter: it, losses: l)
        }
        trainer.afterEpoch = { refreshReport() }
        refreshReport()
        StopSignal.install()
        print("training \(config.summary) on \(folder), \(trainer.iterationsPerEpoch) iterations per epoch of batch \(config.batch), \(epochs) epoch(s), into \(out)")
        let stopped: Bool
        do { stopped = try trainer.train() } catch { progress.finish(); throw CLIError("\(error)") }
        progress.finish()
        refreshReport()
        if !stopped {
            print("done: \(epochs) epoch(s), \(trainer.iteration) iterations; report: \(out)/report.html; samples: disco gan sample --checkpoint \(out) --count 64 --output grid.png")
        }
    }
}

struct GanSample: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Images of a trained GAN: a grid (--output NAME.png) or a folder of PNGs (--output DIR/).",
        discussion: """
        The generator runs in eval mode (batch-norm running statistics) on z drawn from --seed: the \
        same seed gives the same images. A conditional model draws every --label K image, or without \
        --label the labels in turn (a grid then has one row per label).
        """)

    @Option(help: "A run folder of disco gan train (its latest checkpoint) or one checkpoints/iter-* folder.") var checkpoint: String
    @Option(help: "Images to draw.") var count = 64
    @Option(help: "Label (conditional models): its index or its folder name.") var label: String?
    @Option(help: "Random seed for z.") var seed: UInt64 = 0
    @Option(help: "A .png file (a grid) or a folder (ending in /, or existing) of PNGs.") var output: String
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        try requirePath(output, "--output")
        guard (1...100_000).contains(count) else { throw ValidationError("--count must be in 1...100000, got \(count)") }
    }

    func run() throws {
        threadOptions.apply()
        var isDir: ObjCBool = false
        let toFolder = output.hasSuffix("/") || (FileManager.default.fileExists(atPath: output, isDirectory: &isDir) && isDir.boolValue)
        if !toFolder && !output.lowercased().hasSuffix(".png") {
            throw CLIError("--output \(output): give a .png file for a grid, or a folder ending in / for one PNG per image")
        }
        _ = try loadBLASOrExplain()
        let model: GANModel
        do { model = try GANCheckpoint.loadModel(checkpoint: try GANCheckpoint.resolve(checkpoint)) } catch { throw CLIError("\(error)") }
        var labels: [Int]? = nil
        let names = model.classNames
        if let label {
            guard let names else { throw CLIError("--label \(label): the model in \(checkpoint) is unconditional (trained without --conditional); drop --label") }
            guard let k = Int(label).flatMap({ (0..<names.count).contains($0) ? $0 : nil }) ?? names.firstIndex(of: label) else {
                throw CLIError("--label \(label): not one of the model's labels 0...\(names.count - 1) (\(names.joined(separator: ", ")))")
            }
            labels = [Int](repeating: k, count: count)
        }
        let images: Tensor
        do { images = try model.sample(count: count, labels: labels, seed: seed) } catch { throw CLIError("\(error)") }
        if toFolder {
            try GANSampleFiles.writeFolder(images, labels: labels, classNames: names, to: output)
            print("wrote \(count) images to \(output)")
        } else {
            try GANSampleFiles.writeGrid(images, classNames: names, labelsInTurn: labels == nil, to: output)
            print("wrote \(output): \(count) images" + (names != nil && labels == nil ? ", one row per label (\(names!.joined(separator: ", ")))" : ""))
        }
    }
}
