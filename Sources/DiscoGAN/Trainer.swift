import Foundation
import DiscoCore

/// Where training batches come from. Batches are NHWC [batch, size, size, channels], values in [0, 1].
/// `state` must capture everything needed for a resumed run to see exactly the batches an unbroken
/// run would (epoch and position per domain).
public protocol BatchSource: AnyObject {
    func next(a: Tensor, b: Tensor) throws
    var state: [String: Int] { get }
    func restore(_ state: [String: Int]) throws
    /// Seconds the consumer spent waiting for batches so far.
    var waitSeconds: Double { get }
}

/// Set by SIGINT / SIGTERM; the trainer finishes the current step, saves and exits.
nonisolated(unsafe) private var stopSignal: sig_atomic_t = 0

public enum StopSignal {
    /// With `userSignals`, SIGUSR1 and SIGUSR2 too: mpirun forwards those to every rank (it ends
    /// the job itself on SIGINT and SIGTERM), so `kill -USR1 MPIRUN_PID` stops a parallel run cleanly.
    public static func install(userSignals: Bool = false) {
        signal(SIGINT) { _ in stopSignal = 1 }
        signal(SIGTERM) { _ in stopSignal = 1 }
        if userSignals {
            signal(SIGUSR1) { _ in stopSignal = 1 }
            signal(SIGUSR2) { _ in stopSignal = 1 }
        }
    }
    public static var requested: Bool { stopSignal != 0 }
    public static func reset() { stopSignal = 0 }
}

/// The training loop: schedule, logging, samples, report, checkpoints, resume and clean stops.
public final class Trainer {
    public let config: TrainConfig
    public let run: String
    public let model: DiscoGAN
    let source: BatchSource
    /// Fixed images shown in every sample grid, NHWC.
    let sampleA: Tensor, sampleB: Tensor
    public private(set) var iteration = 0
    /// Called with each sample grid (rows x_A, x_AB, x_ABA, x_B, x_BA, x_BAB) to write it as an image:
    /// (pixels HWC in [0,1], width, height, channels, path).
    public var writeImage: (([Float], Int, Int, Int, String) throws -> Void)?
    /// Called after each sample (e.g. to rewrite report.html).
    public var afterSample: ((String) -> Void)?
    /// Called after each line appended to log.jsonl (the report is refreshed there).
    public var afterLog: (() -> Void)?
    public var progress: ((Int, String, StepLosses) -> Void)?
    public var log: (String) -> Void = { FileWriter.printError($0) }
    /// The ranks of a data-parallel run (`distribute(over:syncBatchNorm:)`); a single process by default.
    public private(set) var communicator: Communicator = SingleProcess()
    /// Rank 0 alone writes the run folder (log, samples, report, checkpoints); the others write nothing.
    public var writes: Bool { communicator.rank == 0 }
    /// What this process trains on (`dataFingerprint(_:)`), saved in each checkpoint; --resume
    /// refuses a checkpoint that names other data. Empty: not recorded, not checked.
    public var dataFingerprint: [String: String] = [:]
    /// The run folder, taken for this process while the trainer lives (`prepare` takes it).
    private var runLock: RunFolderLock?

    public init(config: TrainConfig, run: String, source: BatchSource, sampleA: Tensor, sampleB: Tensor) {
        self.config = config; self.run = run; self.source = source
        self.sampleA = sampleA; self.sampleB = sampleB
        model = DiscoGAN(config: config)
    }

    /// Trains over `communicator`'s ranks (data parallel; see `DiscoGAN.distribute`): the source
    /// serves this rank's share of each batch (`config.batch / size` images). Call before `prepare`.
    public func distribute(over communicator: Communicator, syncBatchNorm: Bool) {
        precondition(config.batch % communicator.size == 0, "batch \(config.batch) is not divisible by \(communicator.size) ranks")
        self.communicator = communicator
        model.distribute(over: communicator, syncBatchNorm: syncBatchNorm)
    }

    /// Starts fresh (new weights from the seed) or, with `resume`, from the run's latest checkpoint.
    /// In a data-parallel run every rank reads the checkpoint (the run folder must be shared);
    /// rank 0 alone tidies and writes the run folder.
    public func prepare(resume: Bool) throws {
        if writes { try tidyRunFolder() }
        if resume {
            guard let ckpt = Checkpoint.latest(run: run) else {
                let hint = writes ? "run without --resume to start afresh"
                    : "every rank must see the run folder: put it on a shared filesystem"
                throw Checkpoint.Error("\(run): no checkpoint to resume from (\(hint))")
            }
            // A damaged newest checkpoint: say how to go back to the one before it.
            func damaged<T>(_ body: () throws -> T) throws -> T {
                do { return try body() } catch {
                    guard !"\(error)".contains("delete "), Checkpoint.list(run: run).count > 1 else { throw error }
                    throw Checkpoint.Error("\(error); to resume from the checkpoint before it, delete \(ckpt)")
                }
            }
            let state = try damaged { try Checkpoint.readState(checkpoint: ckpt) }
            try Checkpoint.checkResume(config: config, state: state, run: run, checkpoint: ckpt)
            if let saved = state.data, !dataFingerprint.isEmpty, saved != dataFingerprint {
                let differ = ["A", "B"].filter { saved[$0] != dataFingerprint[$0] }.map {
                    "domain \($0): the run's \(saved[$0] ?? "none"), now \(dataFingerprint[$0] ?? "none")"
                }
                let swapped = saved["A"] == dataFingerprint["B"] && saved["B"] == dataFingerprint["A"] ? " (A and B swapped?)" : ""
                throw Checkpoint.Error("\(run) was trained on other images\(swapped): \(differ.joined(separator: "; ")); give the run's folders, A then B, or choose another --out")
            }
            try damaged { try Checkpoint.load(into: model, checkpoint: ckpt, optimizer: true) }
            do { try source.restore(state.loader) } catch {
                throw Checkpoint.Error("\(ckpt)/state.json: \(error); the checkpoint was edited or damaged: restore that field, or delete \(ckpt) to resume from the checkpoint before it")
            }
            iteration = state.iteration
            if writes { log("resuming \(run) at iteration \(iteration) from \(ckpt)") }
        } else {
            if !Checkpoint.list(run: run).isEmpty {
                throw Checkpoint.Error("\(run) already has checkpoints: add --resume to continue it, or choose another --out")
            }
            model.initialize(seed: config.seed)
            iteration = 0
        }
        guard writes else { return }
        try cutLog(after: iteration)
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Checkpoint.writeAtomically(try enc.encode(config), to: run + "/config.json")
    }

    /// Creates the run folder and removes the temporaries a run killed while writing (kill -9,
    /// power loss) leaves: a checkpoint folder `iter-N.tmp-PID`, half files `.NAME.tmp-PID-K`, in
    /// the run folder or one of its folders (checkpoints, samples, tb). None is ever read.
    func tidyRunFolder() throws {
        if runLock == nil { runLock = try RunFolderLock(run: run) }
        var stale = FileWriter.removeTemporaries(in: run)
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []).sorted() {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: run + "/" + name, isDirectory: &isDir), isDir.boolValue {
                stale += FileWriter.removeTemporaries(in: run + "/" + name)
            }
        }
        if !stale.isEmpty { log("removed \(stale.count) unfinished temporary file(s) left by an interrupted run") }
    }

    /// Cuts log.jsonl back to the entries of iterations up to `last` (those the checkpoint the run
    /// goes on from has run), dropping a torn last line, so that after a kill and a resume the
    /// logged iterations only increase. The log is replaced atomically, and only if it changes.
    func cutLog(after last: Int) throws {
        let path = run + "/log.jsonl"
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG,  // not a device or a pipe
              let data = FileManager.default.contents(atPath: path) else { return }
        let lines = data.split(separator: 0x0A)
        // Iterations increase along the log: keep everything up to the last good line <= last.
        var keep = 0
        for i in lines.indices.reversed() {
            if let obj = (try? JSONSerialization.jsonObject(with: Data(lines[i]))) as? [String: Any],
               let it = (obj["iter"] as? NSNumber)?.intValue, it <= last {
                keep = i - lines.startIndex + 1
                break
            }
        }
        var cut = Data()
        for line in lines.prefix(keep) { cut.append(contentsOf: line); cut.append(0x0A) }
        guard cut != data else { return }
        try FileWriter.write(cut, to: path)
        log("log.jsonl cut back to iteration \(last), where the run goes on from")
    }

    func state() -> Checkpoint.State {
        var steps: [String: Int] = [:]
        for (n, _, opt) in model.networks { steps[n] = opt.step }
        return Checkpoint.State(iteration: iteration, adamSteps: steps, loader: source.state, config: config,
                                data: dataFingerprint.isEmpty ? nil : dataFingerprint)
    }

    /// Saves a checkpoint; refuses (throws) if any weight, batch-norm statistic or Adam moment is
    /// NaN or infinite, so the last checkpoint on disk is always a good one.
    @discardableResult
    public func save() throws -> String {
        if let bad = firstNonFiniteTensor() { throw diverged("\(bad) holds NaN or infinite values") }
        let dir = try Checkpoint.save(model: model, state: state(), run: run)
        if let heldOut { try keepIfBest(dir, heldOut) }
        return dir
    }

    /// Held-out images (NHWC, A and B) for `--keep-best`; nil: no best checkpoint is kept.
    public var heldOut: (a: Tensor, b: Tensor)?

    /// The reconstruction distance the best checkpoint is chosen by: the mean of L1(x_ABA, x_A)
    /// and L1(x_BAB, x_B) over the held-out images, in eval mode (as `disco eval` scores it).
    public func reconstructionDistance(_ a: Tensor, _ b: Tensor) -> Double {
        func l1(_ x: Tensor, _ y: Tensor) -> Double {
            var s = 0.0
            for i in 0..<x.count { s += Double(abs(x[i] - y[i])) }
            return s / Double(max(x.count, 1))
        }
        let xABA = model.translate(model.translate(a, direction: .aToB), direction: .bToA)
        let xBAB = model.translate(model.translate(b, direction: .bToA), direction: .aToB)
        return (l1(xABA, a) + l1(xBAB, b)) / 2
    }

    /// Copies checkpoint `dir` to RUN/best when its distance is below the best one's so far.
    func keepIfBest(_ dir: String, _ images: (a: Tensor, b: Tensor)) throws {
        let distance = reconstructionDistance(images.a, images.b)
        if let best = Checkpoint.bestRecord(run: run), best.distance <= distance { return }
        try Checkpoint.keepBest(checkpoint: dir, run: run, record: .init(iteration: iteration, distance: distance))
        log("iteration \(iteration): best so far (held-out reconstruction L1 \(String(format: "%.5f", distance))), kept in \(run)/best")
    }

    /// The name of the first tensor of the model holding a NaN or an infinity, if any.
    func firstNonFiniteTensor() -> String? {
        func bad(_ t: Tensor, _ offset: Int = 0, _ count: Int? = nil) -> Bool {
            !UnsafeBufferPointer(start: t.data + offset, count: count ?? t.count).allSatisfy(\.isFinite)
        }
        for (name, net, opt) in model.networks {
            for set in [net.parameters, net.buffers] {
                for e in set.entries where bad(set.values, e.offset, e.shape.reduce(1, *)) { return "\(name).\(e.name)" }
            }
            if bad(opt.m) { return "\(name) Adam first moment" }
            if bad(opt.v) { return "\(name) Adam second moment" }
        }
        return nil
    }

    public struct Diverged: Swift.Error, CustomStringConvertible { public let description: String }

    /// The error that ends a run whose numbers turned non-finite at `iteration`. Nothing of it is saved.
    func diverged(_ what: String) -> Diverged {
        let kept: String
        if let ckpt = Checkpoint.latest(run: run), let state = try? Checkpoint.readState(checkpoint: ckpt) {
            kept = "the last good checkpoint, \(ckpt) (iteration \(state.iteration)), is kept"
        } else {
            kept = "no checkpoint had been saved"
        }
        return Diverged(description: "training diverged at iteration \(iteration): \(what); nothing of this step was saved and \(kept). "
            + "Start again with a lower --lr (or another --seed): resuming repeats the same steps")
    }

    /// Runs until `config.iterations` (or `until`), or a stop signal. Returns true if it stopped early.
    @discardableResult
    public func train(until: Int? = nil) throws -> Bool {
        let end = min(until ?? config.iterations, config.iterations)
        let shape = [config.batch / communicator.size, config.size, config.size, config.channels]
        let a = Tensor(uninitialized: shape), b = Tensor(uninitialized: shape)
        let logPath = run + "/log.jsonl"
        let started = Date()
        while iteration < end {
            try source.next(a: a, b: b)
            var (kind, losses) = model.step(iteration: iteration, xA: a, xB: b)
            iteration += 1
            let stop = agree(losses: &losses)
            if let (term, value) = losses.entries.sorted(by: { $0.key < $1.key }).first(where: { !$0.value.isFinite }) {
                throw diverged("loss \(term) is \(value)")
            }
            let saving = stop || iteration % config.saveEvery == 0 || iteration == end
            if saving { try checkRanksAgree() }
            guard writes else {
                if stop { return true }
                continue
            }
            // A failed write (a full disk) stops the run; the last checkpoint stays as it was.
            do {
                if iteration % config.logEvery == 0 || iteration <= 3 || iteration == end {
                    var entry: [String: Any] = ["iter": iteration, "kind": kind, "time": Date().timeIntervalSince(started),
                                                "data_wait": source.waitSeconds]
                    for (k, v) in losses.entries { entry[k] = Double(v) }
                    var line = try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys])
                    line.append(0x0A)
                    try FileWriter.append(line, to: logPath)
                    afterLog?()
                }
                progress?(iteration, kind, losses)
                if iteration % config.sampleEvery == 0 || iteration == end { try sample() }
                if stop || (communicator.size == 1 && StopSignal.requested) {
                    let dir = try save()
                    log("stopped at iteration \(iteration); saved \(dir). Resume with: disco train ... --out \(run) --resume")
                    return true
                }
                if iteration % config.saveEvery == 0 || iteration == end { try save() }
            } catch let e as Diverged {
                throw e
            } catch {
                throw stopped(by: error)
            }
        }
        return false
    }

    /// The step's collective bookkeeping, one small all-reduce: the losses (this rank's share's)
    /// become the whole batch's means (the mean over ranks; feature matching is already the whole
    /// batch's, the learning rate and reconstruction weight the same everywhere), and whether a
    /// stop was asked for on any rank (SIGINT or SIGTERM), so that every rank stops after the
    /// same step. A single process: the losses as they are, and its own stop signal.
    func agree(losses: inout StepLosses) -> Bool {
        guard communicator.size > 1 else { return StopSignal.requested }
        let terms = StepLosses.Term.allCases.filter { $0 != .lr && $0 != .rate && losses[$0] != nil }
        var values = [StopSignal.requested ? 1.0 : 0.0] + terms.map { Double(losses[$0]!) }
        communicator.allReduceSum(&values)
        for (t, v) in zip(terms, values.dropFirst()) { losses[t] = Float(v / Double(communicator.size)) }
        return values[0] > 0
    }

    /// A checksum of every number of the training state (weights, Adam moments and steps, and
    /// with `runningStatistics` the batch-norm running statistics): FNV-1a over their bytes.
    public func stateChecksum(runningStatistics: Bool = true) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ p: UnsafeRawBufferPointer) { for byte in p { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 } }
        for (_, net, opt) in model.networks {
            for t in [net.parameters.values, opt.m, opt.v] + (runningStatistics ? [net.buffers.values] : []) {
                mix(UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
            }
            withUnsafeBytes(of: opt.step) { mix($0) }
        }
        return h
    }

    public struct RanksDisagree: Swift.Error, CustomStringConvertible { public let description: String }

    /// Every rank must hold the same training state (they take the same steps): checked at each
    /// save, so a checkpoint is every rank's. Without synchronised batch norm the running
    /// statistics are each rank's own (of its shares of the batches; rank 0's are saved), and
    /// are left out. A collective call: every rank throws, or none.
    /// Also the check `save` makes on rank 0 (no NaN or infinity), made on every rank here, so that
    /// every rank stops alike.
    func checkRanksAgree() throws {
        guard communicator.size > 1 else { return }
        let bad = firstNonFiniteTensor()
        let mine = [Int64(bitPattern: stateChecksum(runningStatistics: model.syncsBatchNorm)), Int64(iteration), bad == nil ? 0 : 1]
        let lo = communicator.allReduceMin(mine), hi = communicator.allReduceMax(mine)
        if hi[2] != 0 {
            throw diverged("\(bad.map { "\($0) (rank \(communicator.rank))" } ?? "a tensor of another rank") holds NaN or infinite values")
        }
        if lo != hi {
            throw RanksDisagree(description: "iteration \(iteration): the ranks' weights differ (the all-reduced gradients were not the same on every rank); nothing was saved")
        }
    }

    /// Refuses to start unless every rank has the same settings and state: a collective call,
    /// after `prepare`. `settings` are values that must match (hashes of the configuration and
    /// the data's file lists, flags); every rank throws the same error, or none.
    public func checkRanksStartAlike(settings: [String: UInt64]) throws {
        guard communicator.size > 1 else { return }
        let names = settings.keys.sorted()
        let mine = names.map { Int64(bitPattern: settings[$0]!) } + [Int64(iteration), Int64(bitPattern: stateChecksum())]
        let lo = communicator.allReduceMin(mine), hi = communicator.allReduceMax(mine)
        let labels = names + ["the iteration resumed from", "the initial weights"]
        let differ = labels.indices.filter { lo[$0] != hi[$0] }.map { labels[$0] }
        if !differ.isEmpty {
            throw RanksDisagree(description: "the \(communicator.size) ranks do not agree on \(differ.joined(separator: ", ")): start every rank with the same command line, data and run folder")
        }
    }

    /// The error that ends a run at `iteration`: the cause, and what is kept and how to go on.
    func stopped(by error: Swift.Error) -> Checkpoint.Error {
        let kept: String
        if let ckpt = Checkpoint.latest(run: run), let state = try? Checkpoint.readState(checkpoint: ckpt) {
            kept = "the last checkpoint, \(ckpt) (iteration \(state.iteration)), is intact; fix the cause (a full disk?) and continue with --resume"
        } else {
            kept = "no checkpoint was saved yet; fix the cause (a full disk?) and start again"
        }
        return Checkpoint.Error("\(error)\ntraining stopped at iteration \(iteration): \(kept)")
    }

    /// Writes samples/iter-NNNNNNNN.png and hist.json, then calls `afterSample`.
    public func sample() throws {
        let dir = run + "/samples"
        try Checkpoint.createDirectory(dir)
        let xAB = model.translate(sampleA, direction: .aToB)
        let xABA = model.translate(xAB, direction: .bToA)
        let xBA = model.translate(sampleB, direction: .bToA)
        let xBAB = model.translate(xBA, direction: .aToB)
        let rows = [sampleA, xAB, xABA, sampleB, xBA, xBAB]
        let grid = SampleGrid.compose(rows: rows)
        let path = dir + String(format: "/iter-%08d.png", iteration)
        try writeImage?(grid.pixels, grid.width, grid.height, config.channels, path)
        let hist: [String: Any] = [
            "iter": iteration, "bins": 32,
            "real_A": SampleGrid.histogram(sampleA), "fake_A": SampleGrid.histogram(xBA),
            "real_B": SampleGrid.histogram(sampleB), "fake_B": SampleGrid.histogram(xAB),
        ]
        try Checkpoint.writeAtomically(try JSONSerialization.data(withJSONObject: hist, options: [.sortedKeys]), to: run + "/hist.json")
        afterSample?(path)
    }
}

/// Image grids of NHWC batches.
public enum SampleGrid {
    /// Rows of images side by side with a 2-pixel white gutter; HWC pixels in [0, 1].
    public static func compose(rows: [Tensor], gutter: Int = 2) -> (pixels: [Float], width: Int, height: Int) {
        let n = rows[0].shape[0], h = rows[0].shape[1], w = rows[0].shape[2], c = rows[0].shape[3]
        let width = n * w + (n + 1) * gutter, height = rows.count * h + (rows.count + 1) * gutter
        var pixels = [Float](repeating: 1, count: width * height * c)
        for (r, t) in rows.enumerated() {
            for i in 0..<n { for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                let gy = gutter + r * (h + gutter) + y, gx = gutter + i * (w + gutter) + x
                pixels[(gy * width + gx) * c + ch] = min(max(t[((i * h + y) * w + x) * c + ch], 0), 1)
            } } } }
        }
        return (pixels, width, height)
    }

    /// Counts of pixel values in 32 equal bins over [0, 1].
    public static func histogram(_ t: Tensor, bins: Int = 32) -> [Int] {
        var counts = [Int](repeating: 0, count: bins)
        for i in 0..<t.count { counts[min(bins - 1, max(0, Int(t[i] * Float(bins))))] += 1 }
        return counts
    }
}
