import Foundation
import DiscoCore
import DiscoImage

/// The GAN family's training loop (`disco gan train`): epochs over a seeded shuffle of the images
/// in memory, one `GANModel.step` per batch, and what every disco run has: log.jsonl, a sample grid
/// and D-output histograms per epoch, checkpoints per epoch (and at a stop), exact resume, clean stops
/// on SIGINT/SIGTERM (`StopSignal`), writes through `FileWriter`.
///
/// The run folder:
///
///     RUN/config.json                        the settings (`GANConfig`)
///     RUN/log.jsonl                          iter, epoch, time, loss_D, loss_G, D_x, D_G_z per logged iteration
///     RUN/samples/epoch-NNNN.png             G's images of fixed z after N epochs (0: before training);
///                                            conditional: one row per label
///     RUN/samples/epoch-NNNN.json            histograms of D's output on fixed real and generated images
///     RUN/checkpoints/iter-NNNNNNNN/         model.safetensors (G.*, D.*, PyTorch layout), optimizer.safetensors
///                                            (Adam moments), state.json (epoch, position, z generator, config)
///     RUN/report.html                        (GANReport)
///
/// An epoch is floor(N / batch) iterations over a permutation of the N images drawn from the seed
/// and the epoch number, so a run resumes from (epoch, position) and the z generator's saved state
/// bit-identically to an unbroken one.
public final class GANTrainer {
    public let config: GANConfig
    public let run: String
    /// The run folder, taken for this process while the trainer lives (`prepare` takes it).
    private var runLock: RunFolderLock?
    public let data: LabelledImages
    public let model: GANModel
    public private(set) var epoch = 0
    /// Iterations done in `epoch`.
    public private(set) var position = 0
    public private(set) var iteration = 0
    var rng: Xoshiro256

    /// Called after each iteration: (iteration, total iterations, the step's numbers).
    public var progress: ((Int, Int, GANStepStats) -> Void)?
    /// Called after each epoch's samples and checkpoint (the report is refreshed there) and after each log line.
    public var afterEpoch: (() -> Void)?
    public var afterLog: (() -> Void)?
    public var log: (String) -> Void = { FileWriter.printError($0) }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public init(config: GANConfig, run: String, data: LabelledImages) throws {
        let problems = config.problems()
        guard problems.isEmpty else { throw Error(problems.joined(separator: "; ")) }
        if config.conditional {
            guard let names = data.classNames else {
                throw Error("--conditional: \(data.folder) has no label subfolders (a folder of images trains unconditional models only); give a folder with one subfolder per label, or drop --conditional")
            }
            guard names == config.classNames! else {
                throw Error("--conditional: \(data.folder) has labels \(names.joined(separator: ", ")), the run \(config.classNames!.joined(separator: ", "))")
            }
        }
        guard data.count >= config.batch else {
            throw Error("--batch \(config.batch) is more than the \(data.count) images of \(data.folder); use a smaller --batch")
        }
        self.config = config; self.run = run; self.data = data
        model = GANModel(config: config)
        rng = Xoshiro256(seed: config.seed ^ 0x7A5F_6E6F_6973_6521)
    }

    public var iterationsPerEpoch: Int { data.count / config.batch }
    public var totalIterations: Int { config.epochs * iterationsPerEpoch }

    /// The order of the images in `epoch`: a Fisher-Yates shuffle from the seed and the epoch.
    public static func order(epoch: Int, count: Int, seed: UInt64) -> [Int] {
        var r = Xoshiro256(seed: seed ^ 0x6F72_6465_7200 &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        var p = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) { p.swapAt(i, Int(r.next() % UInt64(i + 1))) }
        return p
    }

    // MARK: start and resume

    /// Starts afresh (weights from the seed, the epoch-0 samples) or, with `resume`, from the
    /// run's latest checkpoint, which must have the same settings (only --epochs, --log-every and
    /// --keep may change).
    public func prepare(resume: Bool) throws {
        if runLock == nil { runLock = try RunFolderLock(run: run) }
        for dir in [run, run + "/checkpoints", run + "/samples"] {
            let stale = FileWriter.removeTemporaries(in: dir)
            if !stale.isEmpty { log("removed \(stale.count) unfinished temporary file(s) left by an interrupted run in \(dir)") }
        }
        if resume {
            guard let ckpt = GANCheckpoint.latest(run: run) else {
                throw Error("\(run): no checkpoint to resume from (run without --resume to start afresh)")
            }
            let state = try GANCheckpoint.readState(checkpoint: ckpt)
            let saved = state.config.resumeKeys(), now = config.resumeKeys()
            let differ = zip(saved, now).filter { $0.value != $1.value }.map { "\($1.option) \($1.value) (the run's: \($0.value))" }
            guard differ.isEmpty else {
                throw Error("\(run) was trained with other settings: \(differ.joined(separator: "; ")); resume with the run's settings, or choose another --out")
            }
            guard state.images == data.count else {
                throw Error("\(data.folder) now holds \(data.count) images, the run \(run) was trained on \(state.images): the epochs would differ; restore the folder, or choose another --out")
            }
            try GANCheckpoint.load(into: model, checkpoint: ckpt, state: state)
            epoch = state.epoch; position = state.position; iteration = state.iteration
            rng = try state.random()
            log("resuming \(run) at iteration \(iteration) (epoch \(epoch + 1), batch \(position)) from \(ckpt)")
        } else {
            if !GANCheckpoint.list(run: run).isEmpty {
                throw Error("\(run) already has checkpoints: add --resume to continue it, or choose another --out")
            }
            model.initialize(seed: config.seed)
        }
        try cutLog(after: iteration)
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileWriter.write(try enc.encode(config), to: run + "/config.json")
        if !resume { try sample() }
    }

    /// Cuts log.jsonl back to iterations <= `last` (and a torn last line), so a resumed run's log
    /// only goes forward. Replaced atomically, only if it changes.
    func cutLog(after last: Int) throws {
        let path = run + "/log.jsonl"
        guard let data = FileManager.default.contents(atPath: path) else { return }
        var cut = Data()
        for line in data.split(separator: 0x0A) {
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
                  let it = (obj["iter"] as? NSNumber)?.intValue, it <= last else { break }
            cut.append(contentsOf: line); cut.append(0x0A)
        }
        if cut != data { try FileWriter.write(cut, to: path) }
    }

    func state() -> GANCheckpoint.State {
        GANCheckpoint.State(epoch: epoch, position: position, iteration: iteration,
                            adamSteps: ["G": model.G.optimizer.step, "D": model.D.optimizer.step],
                            generator: rng.state.map { String($0, radix: 16) }, images: data.count, config: config)
    }

    /// Saves a checkpoint (refusing non-finite weights or moments, so the last one is always good).
    @discardableResult
    public func save() throws -> String {
        if let bad = model.firstNonFiniteTensor() { throw diverged("\(bad) holds NaN or infinite values") }
        return try GANCheckpoint.save(model: model, state: state(), run: run)
    }

    /// The error that ends a run whose numbers turned non-finite (nothing of the step is saved).
    public struct Diverged: Swift.Error, CustomStringConvertible { public let description: String }

    func diverged(_ what: String) -> Diverged {
        let kept = GANCheckpoint.latest(run: run).map { "the last good checkpoint, \($0), is kept" } ?? "no checkpoint had been saved"
        return Diverged(description: "training diverged at iteration \(iteration): \(what); nothing of this step was saved and \(kept). Start again with a lower --lr (or another --seed)")
    }

    // MARK: training

    /// Trains to `config.epochs` or a stop signal (then saves and returns true).
    @discardableResult
    public func train() throws -> Bool {
        let logPath = run + "/log.jsonl", started = Date()
        let b = config.batch, perEpoch = iterationsPerEpoch, total = totalIterations
        while epoch < config.epochs {
            let order = GANTrainer.order(epoch: epoch, count: data.count, seed: config.seed)
            var epochDone = false
            while !epochDone {
                let (x, labels) = data.batch(order[(position * b)..<((position + 1) * b)])
                let z = model.noise(b, rng: &rng)
                let s = model.step(real: model.modelImages(x), labels: config.conditional ? labels : nil, z: z)
                position += 1; iteration += 1
                for (name, v) in [("loss_D", s.lossD), ("loss_G", s.lossG)] where !v.isFinite { throw diverged("\(name) is \(v)") }
                do {
                    if iteration % config.logEvery == 0 || position == perEpoch {
                        let entry: [String: Any] = ["iter": iteration, "epoch": Double(iteration) / Double(perEpoch),
                                                    "time": Date().timeIntervalSince(started), "loss_D": Double(s.lossD),
                                                    "loss_G": Double(s.lossG), "D_x": Double(s.dReal), "D_G_z": Double(s.dFake)]
                        var line = try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys])
                        line.append(0x0A)
                        try FileWriter.append(line, to: logPath)
                        afterLog?()
                    }
                    progress?(iteration, total, s)
                    var saved = false
                    if position == perEpoch {
                        epochDone = true
                        epoch += 1; position = 0
                        try sample()
                        try save(); saved = true
                        afterEpoch?()
                    }
                    if StopSignal.requested {
                        let dir = saved ? GANCheckpoint.latest(run: run)! : try save()
                        log("stopped at iteration \(iteration); saved \(dir). Resume with: disco gan train ... --out \(run) --resume")
                        return true
                    }
                } catch let e as Diverged {
                    throw e
                } catch {
                    let kept = GANCheckpoint.latest(run: run).map { "the last checkpoint, \($0), is intact; fix the cause (a full disk?) and continue with --resume" }
                        ?? "no checkpoint was saved yet; fix the cause (a full disk?) and start again"
                    throw Error("\(error)\ntraining stopped at iteration \(iteration): \(kept)")
                }
            }
        }
        return false
    }

    // MARK: samples and histograms

    /// Fixed inputs of the sample grids and histograms, from the seed: z for the grid (8x8, or one
    /// row of 10 per label), and up to 500 real images with z for as many generated ones.
    lazy var fixed: (gridZ: Tensor, gridLabels: [Int]?, real: Tensor, realLabels: [Int]?, z: Tensor) = {
        var r = Xoshiro256(seed: config.seed ^ 0x7361_6D70_6C65)
        let k = config.classes
        let gridCount = config.conditional ? k * 10 : 64
        let gridZ = model.noise(gridCount, rng: &r)
        let gridLabels = config.conditional ? (0..<gridCount).map { $0 / 10 } : nil
        let pick = Array(GANTrainer.order(epoch: 0, count: data.count, seed: config.seed ^ 0x6869_7374).prefix(500))
        let (real, labels) = data.batch(pick[...])
        return (gridZ, gridLabels, real, config.conditional ? labels : nil, model.noise(pick.count, rng: &r))
    }()

    /// Bins of the D-output histograms: sigmoid(D) over [0, 1] for BCE; LSGAN's raw D over [-0.5, 1.5]
    /// (values outside fall in the end bins).
    public var histogramRange: (Double, Double) { config.loss == .bce ? (0, 1) : (-0.5, 1.5) }
    public static let histogramBins = 20

    /// samples/epoch-NNNN.png and .json for the current epoch count.
    public func sample() throws {
        let dir = run + "/samples"
        try Checkpoint.createDirectory(dir)
        let f = fixed
        let grid = model.generate(z: f.gridZ, labels: f.gridLabels)
        let columns = config.conditional ? 10 : 8
        let s = GANConfig.imageSize, per = s * s
        let rows = (0..<(grid.shape[0] / columns)).map { r in
            Tensor(viewOf: grid, offset: r * columns * per, shape: [columns, s, s, 1])
        }
        let g = SampleGrid.compose(rows: rows)
        let name = String(format: "epoch-%04d", epoch)
        try writeImageFile(try encodePNG(Image(width: g.width, height: g.height, channels: 1, pixels: g.pixels)), path: dir + "/" + name + ".png")
        let fake = model.generate(z: f.z, labels: f.realLabels)
        func shown(_ v: [Float]) -> [Double] { v.map { config.loss == .bce ? Double(stableSigmoid($0)) : Double($0) } }
        let dReal = shown(model.discriminate(f.real, labels: f.realLabels)), dFake = shown(model.discriminate(fake, labels: f.realLabels))
        let (lo, hi) = histogramRange, bins = GANTrainer.histogramBins
        func histogram(_ v: [Double]) -> [Int] {
            var c = [Int](repeating: 0, count: bins)
            for x in v { c[min(bins - 1, max(0, Int(((x - lo) / (hi - lo) * Double(bins)).rounded(.down))))] += 1 }
            return c
        }
        func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(max(v.count, 1)) }
        let obj: [String: Any] = ["epoch": epoch, "iter": iteration, "range": [lo, hi], "bins": bins,
                                  "real": histogram(dReal), "fake": histogram(dFake),
                                  "mean_real": mean(dReal), "mean_fake": mean(dFake),
                                  "output": config.loss == .bce ? "sigmoid(D)" : "D (raw, LSGAN)",
                                  "rows": config.classNames ?? []]
        try FileWriter.write(try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), to: dir + "/" + name + ".json", durable: false)
    }
}

/// Checkpoints of a GAN run: RUN/checkpoints/iter-NNNNNNNN/ with model.safetensors, optimizer.safetensors
/// and state.json, written into a temporary folder that is renamed into place once complete.
public enum GANCheckpoint {
    public struct State: Codable, Equatable {
        public var format = GANConfig.formatVersion
        /// The epoch in progress (0-based) and the iterations done in it.
        public var epoch: Int, position: Int
        public var iteration: Int
        public var adamSteps: [String: Int]
        /// The z generator's state (four 64-bit words, hexadecimal).
        public var generator: [String]
        /// Images in the training folder (the epoch length depends on it).
        public var images: Int
        public var config: GANConfig

        init(epoch: Int, position: Int, iteration: Int, adamSteps: [String: Int], generator: [String], images: Int, config: GANConfig) {
            self.epoch = epoch; self.position = position; self.iteration = iteration; self.adamSteps = adamSteps
            self.generator = generator; self.images = images; self.config = config
        }

        func random() throws -> Xoshiro256 {
            let words = self.generator.compactMap { UInt64($0, radix: 16) }
            guard words.count == 4, words.contains(where: { $0 != 0 }) else {
                throw GANTrainer.Error("state.json: field 'generator' must be four hexadecimal 64-bit words, not all zero")
            }
            var r = Xoshiro256(seed: 0)
            r.state = words
            return r
        }
    }

    public static func list(run: String) -> [String] { Checkpoint.iterationFolders(in: run + "/checkpoints") }

    public static func latest(run: String) -> String? { list(run: run).last }

    /// A checkpoint folder from `path`: the folder itself if it holds state.json, else the latest
    /// checkpoint of the run folder `path`.
    public static func resolve(_ path: String) throws -> String {
        if FileManager.default.fileExists(atPath: path + "/state.json") { return path }
        guard FileManager.default.fileExists(atPath: path) else { throw GANTrainer.Error("--checkpoint \(path): not found; give a run folder of disco gan train or one of its checkpoints/iter-* folders") }
        guard let c = latest(run: path) else { throw GANTrainer.Error("--checkpoint \(path): no checkpoints/iter-*/ in it; give a run folder of disco gan train (it saves one per epoch)") }
        return c
    }

    public static func save(model: GANModel, state: State, run: String) throws -> String {
        let dir = run + "/checkpoints"
        try Checkpoint.createDirectory(dir)
        let final = dir + "/" + String(format: "iter-%08d", state.iteration)
        let tmp = final + FileWriter.temporaryMarker + "\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try Checkpoint.createDirectory(tmp)
        do {
            try FileWriter.create(modelData(model), at: tmp + "/model.safetensors")
            let opt = [("G.m", model.G.optimizer.m), ("G.v", model.G.optimizer.v), ("D.m", model.D.optimizer.m), ("D.v", model.D.optimizer.v)]
            try FileWriter.create(Safetensors.serialize(opt, metadata: ["format": GANConfig.formatVersion]), at: tmp + "/optimizer.safetensors")
            let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileWriter.create(try enc.encode(state), at: tmp + "/state.json")
            FileWriter.syncDirectory(tmp)
            if FileManager.default.fileExists(atPath: final) { try FileManager.default.removeItem(atPath: final) }
            guard rename(tmp, final) == 0 else { throw GANTrainer.Error("cannot rename \(tmp) to \(final): \(String(cString: strerror(errno)))") }
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw GANTrainer.Error("cannot save checkpoint \(final): \(error)")
        }
        FileWriter.syncDirectory(dir)
        if state.config.keep > 0 { for old in list(run: run).dropLast(state.config.keep) { try? FileManager.default.removeItem(atPath: old) } }
        return final
    }

    /// G.* and D.* in PyTorch's layout, with the settings as metadata.
    static func modelData(_ model: GANModel) -> Data {
        var tensors: [(String, Tensor)] = []
        for (name, net) in [("G", model.G), ("D", model.D)] {
            // Network.stateDict holds the batch-norm running statistics too.
            for (k, t) in net.stateDict() { tensors.append(("\(name).\(k)", t)) }
        }
        let c = model.config
        return Safetensors.serialize(tensors, metadata: [
            "format": GANConfig.formatVersion, "arch": c.arch.rawValue, "width": String(c.width),
            "classes": (c.classNames ?? []).joined(separator: "\n"),
        ])
    }

    public static func readState(checkpoint: String) throws -> State {
        let path = checkpoint + "/state.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GANTrainer.Error("\(path): missing; this is not a complete disco gan checkpoint")
        }
        let state: State
        do { state = try JSONDecoder().decode(State.self, from: data) } catch {
            throw GANTrainer.Error("\(path): not a disco gan state (\(error)); the checkpoint was edited or damaged: delete \(checkpoint) to use the one before it")
        }
        guard state.format == GANConfig.formatVersion else {
            throw GANTrainer.Error("\(path): format \(state.format), this disco reads \(GANConfig.formatVersion)")
        }
        var problems = state.config.problems()
        if state.epoch < 0 || state.position < 0 || state.iteration < 0 || state.images < state.config.batch { problems.append("epoch, position, iteration or images out of range") }
        else if state.iteration != state.epoch * (state.images / state.config.batch) + state.position { problems.append("iteration \(state.iteration) is not epoch x iterations per epoch + position") }
        if state.adamSteps["G"] != state.iteration || state.adamSteps["D"] != state.iteration { problems.append("Adam steps \(state.adamSteps) differ from the iteration \(state.iteration)") }
        guard problems.isEmpty else {
            throw GANTrainer.Error("\(path): \(problems.joined(separator: "; ")); the checkpoint was edited or damaged: delete \(checkpoint) to use the one before it")
        }
        _ = try state.random()
        return state
    }

    /// A model with the checkpoint's weights (and batch-norm statistics), for sampling.
    public static func loadModel(checkpoint: String) throws -> GANModel {
        let state = try readState(checkpoint: checkpoint)
        let model = GANModel(config: state.config)
        try loadWeights(into: model, file: checkpoint + "/model.safetensors")
        return model
    }

    static func loadWeights(into model: GANModel, file: String) throws {
        let f = try Safetensors.read(path: file)
        guard f.metadata["format"] == GANConfig.formatVersion else {
            throw GANTrainer.Error("\(file): format \(f.metadata["format"] ?? "unknown"), not a disco gan model (\(GANConfig.formatVersion))")
        }
        for (name, net) in [("G", model.G), ("D", model.D)] {
            var dict: [String: Tensor] = [:]
            for (k, _) in net.stateDict() {
                guard let e = f.entries["\(name).\(k)"] else { throw GANTrainer.Error("\(file): tensor '\(name).\(k)' is missing; the file is not of this run's model (\(model.config.summary))") }
                try checkFinite(e, "\(name).\(k)", file, nonNegative: k.hasSuffix("running_var"))
                dict[k] = e.tensor
            }
            do { try net.load(stateDict: dict) } catch { throw GANTrainer.Error("\(file): \(name): \(error)") }
        }
    }

    static func checkFinite(_ e: Safetensors.Entry, _ name: String, _ file: String, nonNegative: Bool = false) throws {
        try e.floats.withUnsafeBufferPointer { try Checkpoint.checkValues($0, tensor: name, file: file, nonNegative: nonNegative) }
    }

    static func load(into model: GANModel, checkpoint: String, state: State) throws {
        try loadWeights(into: model, file: checkpoint + "/model.safetensors")
        let file = checkpoint + "/optimizer.safetensors"
        let f = try Safetensors.read(path: file)
        for (name, net) in [("G", model.G), ("D", model.D)] {
            for (k, t) in [("m", net.optimizer.m), ("v", net.optimizer.v)] {
                guard let e = f.entries["\(name).\(k)"], e.floats.count == t.count else {
                    throw GANTrainer.Error("\(file): tensor '\(name).\(k)' is missing or has another size than the model's \(t.count)")
                }
                try checkFinite(e, "\(name).\(k)", file, nonNegative: k == "v")
                t.copy(from: e.tensor)
            }
            net.optimizer.step = state.adamSteps[name] ?? 0
        }
    }
}
