import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train DiscoGAN on two folders of unpaired images.",
        discussion: """
        disco train DIR_A DIR_B      two folders of images, one per domain (scanned recursively)
        disco train DIR              the CycleGAN layout: DIR/trainA, DIR/trainB (DIR/testA, DIR/testB for samples)

        The run folder (--out) receives log.jsonl, samples/, report.html and checkpoints/.
        Ctrl-C finishes the current step, saves a checkpoint and exits; --resume continues exactly.
        """)

    @Argument(help: "DIR_A DIR_B, or one DIR in the CycleGAN layout.")
    var folders: [String]

    @Option(help: "Run folder (default: checkpoints/NAME from the folder names).")
    var out: String?
    @OptionGroup var shape: ModelShapeOptions
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Total iterations (a D step every --update-interval, G steps between).") var iterations = 20_000
    @Option(help: "Variant: \(ModelVariant.allCases.map(\.rawValue).joined(separator: ", ")).") var model = ModelVariant.discogan
    @Option(help: "Adversarial loss: bce or lsgan.") var loss = AdversarialLoss.bce
    @Option(help: "Reconstruction loss: mse or l1.") var recon = ReconstructionLoss.mse
    @Option(help: "Adam learning rate.") var lr: Float = 2e-4
    @Option(help: "Iteration from which the learning rate falls linearly to 0 at --iterations, as CycleGAN's n_epochs_decay (default: none).")
    var decayFrom: Int?
    @Option(help: "Adam beta1.") var beta1: Float = 0.5
    @Option(help: "Adam beta2.") var beta2: Float = 0.999
    @Option(help: "Adam weight decay (added to the gradient, as PyTorch).") var weightDecay: Float = 1e-5
    @Option(help: "Iterations at --starting-rate before --default-rate (the curriculum).") var curriculum = 10_000
    @Option(help: "Reconstruction weight during the curriculum.") var startingRate: Float = 0.01
    @Option(help: "Reconstruction weight after the curriculum.") var defaultRate: Float = 0.5
    @Option(help: "Update D on every Nth iteration, G on the others.") var updateInterval = 3
    @Option(help: "Random seed (weights, shuffling, sample choice).") var seed: UInt64 = 0
    @Option(help: "Save a checkpoint every N iterations.") var saveEvery = 1000
    @Option(help: "Write a sample grid and refresh report.html every N iterations.") var sampleEvery = 1000
    @Option(help: "Append to log.jsonl every N iterations.") var logEvery = 10
    @Option(help: "Generated images kept per domain for D to see (an image pool, CycleGAN's pool_size; 0: the current batch only).") var poolSize = 0
    @Option(help: "Weight W of the identity loss W*|G_AB(x_B) - x_B| + W*|G_BA(x_A) - x_A| (L1) in G's loss, CycleGAN's lambda_identity (0: none).") var identity: Float = 0
    @Option(help: "Side training images are resized to before a random --size crop, CycleGAN's load_size with preprocess resize_and_crop (default: --size, resize only).")
    var loadSize: Int?
    @Flag(inversion: .prefixedNo, help: "Random horizontal flips of training images (default: flips with a --load-size above --size, as CycleGAN; --no-flip is its no_flip). Sample images are never cropped or flipped.")
    var flip: Bool?
    @Option(help: "Checkpoints to keep, the newest (0 keeps all).") var keep = 2
    @Flag(help: "Also keep RUN/best: the checkpoint with the lowest reconstruction distance on held-out images (the test folders, else 5% of each training folder, then not trained on).")
    var keepBest = false
    @Option(help: "Images per sample grid row.") var samples = 8
    @Flag(help: "Continue the run in --out from its latest checkpoint.") var resume = false
    @Flag(help: "Also keep TensorBoard events in RUN/tb (refreshed with each sample and at the end).") var tensorboard = false
    @Flag(help: "Under mpirun: batch-norm statistics of the whole --batch (all ranks'), so N ranks compute what one process does (default: each rank normalises its own share).")
    var syncBn = false

    func validate() throws {
        try requirePath(out, "--out")
        guard folders.count == 1 || folders.count == 2 else {
            throw ValidationError("give DIR_A DIR_B, or one DIR with trainA/ and trainB/ (got \(folders.count) folders)")
        }
        guard batch >= 2 else { throw ValidationError("--batch must be at least 2 (batch norm needs two images), got \(batch)") }
        guard batch <= TrainConfig.maxBatch else { throw ValidationError("--batch must be at most \(TrainConfig.maxBatch), got \(batch)") }
        guard curriculum >= 0 else { throw ValidationError("--curriculum must be >= 0 (0: no curriculum), got \(curriculum)") }
        guard iterations >= 1 else { throw ValidationError("--iterations must be positive, got \(iterations)") }
        guard lr > 0 && lr < 1 else { throw ValidationError("--lr must be in (0, 1), got \(lr)") }
        if let decayFrom, !(0..<iterations).contains(decayFrom) {
            throw ValidationError("--decay-from must be in 0...\(iterations - 1) (below --iterations \(iterations)), got \(decayFrom)")
        }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else { throw ValidationError("--beta1 and --beta2 must be in [0, 1)") }
        guard weightDecay >= 0 else { throw ValidationError("--weight-decay must be >= 0") }
        guard (0...1).contains(startingRate), (0...1).contains(defaultRate) else { throw ValidationError("--starting-rate and --default-rate must be in [0, 1]") }
        guard updateInterval >= 2 else { throw ValidationError("--update-interval must be at least 2, got \(updateInterval)") }
        guard saveEvery >= 1, sampleEvery >= 1, logEvery >= 1 else { throw ValidationError("--save-every, --sample-every and --log-every must be positive") }
        guard (0...TrainConfig.maxPoolSize).contains(poolSize) else {
            throw ValidationError("--pool-size must be in 0...\(TrainConfig.maxPoolSize), got \(poolSize)")
        }
        // Both domains are decoded to --channels, so G_AB(x_B) and x_B always have the same channels.
        guard identity.isFinite && identity >= 0 else { throw ValidationError("--identity must be a finite number >= 0, got \(identity)") }
        if let loadSize, !(shape.size...TrainConfig.maxLoadSize).contains(loadSize) {
            throw ValidationError("--load-size must be in \(shape.size)...\(TrainConfig.maxLoadSize) (at least --size, \(shape.size)), got \(loadSize)")
        }
        guard keep >= 0 else { throw ValidationError("--keep must be >= 0 (0 keeps every checkpoint), got \(keep)") }
        guard samples >= 1 && samples <= 64 else { throw ValidationError("--samples must be in 1...64, got \(samples)") }
    }

    @OptionGroup var threadOptions: ThreadOptions
    @OptionGroup var gemm: GEMMOptions

    func run() throws {
        gemm.apply()
        // Under mpirun, MPI_COMM_WORLD (libmpi loaded now); otherwise a single process, as always.
        let group = try Processes.current()
        threadOptions.apply()
        guard group.size > 1 else {
            defer { group.finish() }  // mpirun -np 1: MPI_Finalize, or mpirun calls the exit abnormal
            try train(in: group)
            return
        }
        do {
            try train(in: group)
            group.finish()
        } catch is SetupFailedOnSomeRank {
            group.finish()
            throw ExitCode.failure
        } catch let e where e is Trainer.Diverged || e is Trainer.RanksDisagree {
            // Every rank stopped alike: one message.
            if group.isRoot { FileWriter.printError("Error: \(e)") }
            group.finish()
            throw ExitCode.failure
        } catch {
            // This rank alone (a write failed, its data cannot be read): end the whole job.
            FileWriter.printError("Error: rank \(group.rank) of \(group.size): \(error); stopping every rank")
            group.abort(code: 1)
        }
    }

    func train(in group: Communicator) throws {
        let parallel = group.size > 1, root = group.isRoot
        // Set-up (left at its old indentation inside the closure, to keep the diff small).
        let (trainer, runDir, domainsText, startSettings) = try group.onEveryRank { () throws -> (Trainer, String, String, [String: UInt64]) in
        if parallel {
            guard batch % group.size == 0 else {
                throw CLIError("--batch \(batch) is not divisible by the \(group.size) ranks of mpirun -np \(group.size): give a multiple of \(group.size) (--batch is the whole batch; each rank trains on --batch / \(group.size) images)")
            }
            guard syncBn || batch / group.size >= 2 else {
                throw CLIError("--batch \(batch) over \(group.size) ranks leaves \(batch / group.size) image per rank; batch norm needs two: give --batch \(2 * group.size) or more, or --sync-bn")
            }
            guard poolSize == 0 else {
                throw CLIError("--pool-size is not supported under mpirun (the image pool would be one history of every rank's images); leave it at 0")
            }
        } else if syncBn {
            FileWriter.printError("disco: note: --sync-bn has no effect in a single process (it normalises the whole batch anyway)")
        }
        try TrainConfig.checkMemory(images: batch / group.size, size: shape.size)
        _ = try loadBLASOrExplain(applyingGEMMPrecision: true)
        var domains = try resolveTrainingDomains(folders)
        var config = TrainConfig()
        config.size = shape.size; config.channels = shape.channels; config.batch = batch; config.iterations = iterations
        config.model = model; config.loss = loss; config.recon = recon
        config.adam = .init(learningRate: lr, beta1: beta1, beta2: beta2, weightDecay: weightDecay)
        config.curriculumIterations = curriculum; config.startingRate = startingRate; config.defaultRate = defaultRate
        config.updateInterval = updateInterval; config.seed = seed
        config.saveEvery = saveEvery; config.sampleEvery = sampleEvery; config.logEvery = logEvery
        config.keep = keep; config.keepBest = keepBest
        config.decayFrom = decayFrom ?? -1
        config.poolSize = poolSize
        config.identityWeight = identity
        let load = loadSize ?? shape.size
        config.loadSize = load == shape.size ? 0 : load
        config.flip = flip ?? (load > shape.size)
        config.bf16 = BLAS.gemmPrecision == .bf16
        let runDir = out ?? "checkpoints/" + domains.name

        let heldOut = config.keepBest ? try holdOut(domains: &domains, config: config) : nil
        let share = batch / group.size
        let source = try makeBatchSource(domains: domains, config: config,
                                         slice: parallel ? group.rank * share..<(group.rank + 1) * share : nil)
        let (sampleA, sampleB) = try sampleTensors(domains: domains, config: config, count: samples)
        let trainer = Trainer(config: config, run: runDir, source: source, sampleA: sampleA, sampleB: sampleB)
        if parallel { trainer.distribute(over: group, syncBatchNorm: syncBn) }
        // Rank 0 alone scores held-out images (in eval mode: no collective call) and writes.
        trainer.heldOut = root ? heldOut : nil
        trainer.writeImage = writePixels
        trainer.dataFingerprint = dataFingerprint(domains)
        try trainer.prepare(resume: resume)
        let settings = try sharedStartSettings(config: config, domains: domains,
                                         more: ["--sync-bn, --resume, --out": "\(syncBn) \(resume) \(runDir)"])
        return (trainer, runDir, "\(domains.a) (A) and \(domains.b) (B)", settings)
        }
        // Collective: every rank refuses, or none.
        try trainer.checkRanksStartAlike(settings: startSettings)
        StopSignal.install(userSignals: parallel)
        guard root else {
            try trainer.train()
            return
        }
        // report.html and RUN/tb can be made again from the run folder: failing to write them is
        // only a warning (once each).
        let tensorboard = self.tensorboard
        var warned: Set<String> = []
        func refreshReport(tensorboardToo: Bool = true) {
            do { try writeReport(runDirectory: runDir) } catch {
                if warned.insert("report").inserted { FileWriter.printError("warning: \(error) (the report is not updated)") }
            }
            guard tensorboard && tensorboardToo else { return }
            do { try TensorBoard.write(runDirectory: runDir) } catch {
                if warned.insert("tb").inserted { FileWriter.printError("warning: \(error) (TensorBoard events are not updated)") }
            }
        }
        trainer.afterSample = { _ in refreshReport() }
        // The page follows the log: refreshed at every log line, unless drawing it would cost more
        // than 1% of the run's time (a long log takes ~0.3 s to draw: then at most once every 100
        // drawing times). TensorBoard, which also carries the sample grids, at each sample.
        var lastDrawn = Date.distantPast, drawSeconds = 0.0
        trainer.afterLog = {
            guard Date().timeIntervalSince(lastDrawn) >= 100 * drawSeconds else { return }
            let t0 = Date()
            refreshReport(tensorboardToo: false)
            lastDrawn = Date(); drawSeconds = lastDrawn.timeIntervalSince(t0)
        }
        var progress = ProgressLine(total: iterations, start: trainer.iteration)
        trainer.progress = { it, _, losses in progress.update(iter: it, losses: losses) }
        let ranks = parallel ? " (\(group.size) ranks of \(batch / group.size), \(syncBn ? "synchronised" : "per-rank") batch norm)" : ""
        print("training \(model.rawValue) \(shape.size)x\(shape.size)x\(shape.channels) on \(domainsText), batch \(batch)\(ranks)\(BLAS.gemmPrecision == .bf16 ? ", bfloat16 GEMMs" : ""), into \(runDir)")
        let stopped = try trainer.train()
        progress.finish()
        refreshReport()
        if !stopped { print("done: \(iterations) iterations; report: \(runDir)/report.html; translate with: disco translate IMAGE --checkpoint \(runDir) --output OUT.png") }
    }
}
