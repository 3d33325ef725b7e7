import Foundation
import DiscoCore

/// Checkpoints of a run, in the run folder:
///
///     RUN/checkpoints/iter-00001000/model.safetensors      the four networks, PyTorch layout
///     RUN/checkpoints/iter-00001000/optimizer.safetensors  Adam moments (flat, disco's order)
///     RUN/checkpoints/iter-00001000/state.json             iteration, Adam steps, data-loader state, config
///     RUN/checkpoints/iter-00001000/pool.safetensors       with --pool-size: D's image pools and their generators
///
/// `model.safetensors` holds `G_AB.e1.weight`, `G_AB.e2.bn.running_mean`, ..., `D_B.c5.weight`
/// (Conv2d weights [out, in, kh, kw], ConvTranspose2d [in, out, kh, kw], as PyTorch's state_dict),
/// and metadata `format`, `size`, `channels`, `model`, `iteration`. It loads in PyTorch with
/// `safetensors.torch.load_file`. A checkpoint folder is written under a temporary name, every file
/// fsynced, then renamed into place, so a crash never leaves a half-written checkpoint; the last
/// `config.keep` are kept (all with 0).
public enum Checkpoint {
    public static let formatVersion = "disco-checkpoint-1"

    public struct State: Codable, Equatable {
        /// The next iteration to run.
        public var iteration: Int
        public var adamSteps: [String: Int]
        /// Opaque, JSON-encodable state of the data loader (epoch and position per domain).
        public var loader: [String: Int]
        public var config: TrainConfig
        public var format: String = Checkpoint.formatVersion
        /// What the run trains on, per domain ("A", "B"): the image count and a hash of the files'
        /// names and sizes (`dataFingerprint`), so --resume can refuse other folders. nil in checkpoints of
        /// disco versions before it (then not checked).
        public var data: [String: String]? = nil
    }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static func directory(run: String) -> String { run + "/checkpoints" }

    /// Checkpoint folders of a run, oldest first.
    public static func list(run: String) -> [String] { iterationFolders(in: directory(run: run)) }

    /// The iter-N folders of `dir` (N digits), ordered by N, as paths: anything else there (a
    /// temporary iter-N.tmp-PID, a copy iter-5.bak, a stray iter-zzz) is not disco's and not read.
    static func iterationFolders(in dir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let numbered = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("iter-"), name.dropFirst(5).allSatisfy(\.isASCII), let n = Int(name.dropFirst(5)), n >= 0 else { return nil }
            return (n, name)
        }
        return numbered.sorted { $0 < $1 }.map { dir + "/" + $0.1 }
    }

    public static func latest(run: String) -> String? { list(run: run).last }

    /// Saves the model, optimizer and state atomically and prunes old checkpoints, keeping the newest
    /// `state.config.keep` (all with 0). Returns the folder.
    /// On an error (a full disk) the partial temporary folder is removed and the earlier
    /// checkpoints are left as they were.
    @discardableResult
    public static func save(model: DiscoGAN, state: State, run: String) throws -> String {
        let dir = directory(run: run)
        try createDirectory(dir)
        let final = dir + "/" + String(format: "iter-%08d", state.iteration)
        let tmp = final + FileWriter.temporaryMarker + "\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try createDirectory(tmp)
        do {
            try FileWriter.create(modelData(model: model, iteration: state.iteration), at: tmp + "/model.safetensors")
            var opt: [(String, Tensor)] = []
            for (name, _, adam) in model.networks { opt.append(("\(name).m", adam.m)); opt.append(("\(name).v", adam.v)) }
            try FileWriter.create(Safetensors.serialize(opt, metadata: ["format": formatVersion]), at: tmp + "/optimizer.safetensors")
            if model.config.poolSize > 0 {
                try FileWriter.create(poolData(model: model), at: tmp + "/pool.safetensors")
            }
            let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileWriter.create(try enc.encode(state), at: tmp + "/state.json")
            FileWriter.syncDirectory(tmp)
            if FileManager.default.fileExists(atPath: final) { try FileManager.default.removeItem(atPath: final) }
            guard rename(tmp, final) == 0 else {
                throw Error("cannot rename \(tmp) to \(final): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw Error("cannot save checkpoint \(final): \(error)")
        }
        FileWriter.syncDirectory(dir)
        let keep = state.config.keep
        if keep > 0 {
            for old in list(run: run).dropLast(keep) { try? FileManager.default.removeItem(atPath: old) }
        }
        return final
    }

    /// The safetensors bytes of the four networks (PyTorch layout) with metadata.
    public static func modelData(model: DiscoGAN, iteration: Int, generatorsOnly: Bool = false) -> Data {
        var tensors: [(String, Tensor)] = []
        for (name, net, _) in model.networks where !generatorsOnly || name.hasPrefix("G_") {
            for (k, t) in net.stateDict() { tensors.append(("\(name).\(k)", t)) }
        }
        let c = model.config
        return Safetensors.serialize(tensors, metadata: [
            "format": formatVersion, "size": String(c.size), "channels": String(c.channels),
            "model": c.model.rawValue, "iteration": String(iteration),
        ])
    }

    /// The image pools of a model (`--pool-size`): images and generator states of both domains.
    static func poolData(model: DiscoGAN) -> Data {
        let c = model.config
        var tensors: [(String, Tensor)] = [], metadata = ["format": formatVersion]
        for (name, pool) in [("A", model.poolA), ("B", model.poolB)] {
            pool.save(name: name, imageShape: [c.size, c.size, c.channels], into: &tensors, metadata: &metadata)
        }
        return Safetensors.serialize(tensors, metadata: metadata)
    }

    /// Reads a checkpoint folder's state.json, checking every field (type, range, and the Adam step
    /// counts against the iteration and schedule).
    public static func readState(checkpoint: String) throws -> State {
        let path = checkpoint + "/state.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error("\(path): missing; this is not a complete disco checkpoint")
        }
        let fix = "the checkpoint was edited or damaged: restore that field, or delete \(checkpoint) to resume from the checkpoint before it"
        if let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let format = obj["format"] as? String,
           format != formatVersion {
            throw Error("\(path): checkpoint format \(format), this disco reads \(formatVersion); retrain or use the disco that wrote it")
        }
        let state: State
        do {
            state = try JSONFields.decode(State.self, from: data, like: State(iteration: 0, adamSteps: [:], loader: [:], config: TrainConfig(), data: nil))
        } catch {
            throw Error("\(path): \(error); \(fix)")
        }
        let problems = state.problems()
        guard problems.isEmpty else { throw Error("\(path): \(problems.joined(separator: "; ")); \(fix)") }
        return state
    }

    /// Loads networks (and, with `optimizer`, Adam state) from a checkpoint folder into `model`,
    /// which must have the checkpoint's size and channel count. With `optimizer`, the model file
    /// must belong to the state.json beside it (same iteration, variant, size and channels).
    public static func load(into model: DiscoGAN, checkpoint: String, optimizer: Bool) throws {
        try loadWeights(into: model, file: checkpoint + "/model.safetensors", requireAll: optimizer)
        guard optimizer else { return }
        let state = try readState(checkpoint: checkpoint)
        let info = try modelInfo(file: checkpoint + "/model.safetensors")
        let c = state.config
        guard info.iteration == state.iteration, info.model == c.model, info.size == c.size, info.channels == c.channels else {
            throw Error("\(checkpoint): model.safetensors holds a \(info.model.rawValue) \(info.size)x\(info.size)x\(info.channels) model of iteration \(info.iteration), state.json a \(c.model.rawValue) \(c.size)x\(c.size)x\(c.channels) run at iteration \(state.iteration); the folder mixes files of two checkpoints: delete it to resume from the checkpoint before it")
        }
        let optFile = checkpoint + "/optimizer.safetensors"
        let opt = try Safetensors.read(path: optFile)
        guard opt.metadata["format"] == formatVersion else {
            throw Error("\(optFile): format \(opt.metadata["format"] ?? "unknown"), this disco reads \(formatVersion); the file was replaced or damaged: use an earlier checkpoint")
        }
        for (name, _, adam) in model.networks {
            let m = try floatTensor(opt, "\(name).m"), v = try floatTensor(opt, "\(name).v")
            guard m.count == adam.m.count, v.count == adam.v.count else {
                throw Error("\(checkpoint)/optimizer.safetensors: \(name) state has \(m.count) values, the model needs \(adam.m.count)")
            }
            try checkValues(m, name: "\(name).m", file: checkpoint + "/optimizer.safetensors")
            try checkValues(v, name: "\(name).v", file: checkpoint + "/optimizer.safetensors")
            adam.m.copy(from: m); adam.v.copy(from: v)
            adam.step = state.adamSteps[name] ?? 0
        }
        if c.poolSize > 0 {
            let file = checkpoint + "/pool.safetensors"
            guard FileManager.default.fileExists(atPath: file) else {
                throw Error("\(file): missing; the run has --pool-size \(c.poolSize), whose images this file holds: delete \(checkpoint) to resume from the checkpoint before it")
            }
            let f = try Safetensors.read(path: file)
            for (name, pool) in [("A", model.poolA), ("B", model.poolB)] {
                try pool.restore(name: name, imageShape: [c.size, c.size, c.channels], from: f, file: file)
            }
        }
    }

    /// Metadata (format, size, channels, model, iteration) of a model file.
    public static func modelInfo(file: String) throws -> (size: Int, channels: Int, model: ModelVariant, iteration: Int) {
        let f = try Safetensors.read(path: file)
        guard f.metadata["format"] == formatVersion else {
            throw Error("\(file): format \(f.metadata["format"] ?? "unknown"), this disco reads \(formatVersion); it was not written by this disco version")
        }
        guard let s = f.metadata["size"].flatMap(Int.init), let c = f.metadata["channels"].flatMap(Int.init) else {
            throw Error("\(file): metadata lacks size/channels")
        }
        let sizes = DiscoGANModels.supportedSizes.map(String.init).joined(separator: ", ")
        guard DiscoGANModels.supportedSizes.contains(s) else { throw Error("\(file): metadata 'size' is \(s); disco builds models of size \(sizes) (the file was edited or damaged)") }
        guard c == 1 || c == 3 else { throw Error("\(file): metadata 'channels' is \(c); it must be 1 or 3 (the file was edited or damaged)") }
        // Files without `model` or `iteration` (written by hand or by other tools) are full DiscoGANs of iteration 0.
        let model = try f.metadata["model"].map { raw in
            guard let m = ModelVariant(rawValue: raw) else {
                throw Error("\(file): metadata 'model' is '\(raw)'; it must be one of \(ModelVariant.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return m
        } ?? .discogan
        let iteration = try f.metadata["iteration"].map { raw in
            guard let i = Int(raw), i >= 0 else { throw Error("\(file): metadata 'iteration' is '\(raw)'; it must be an integer >= 0") }
            return i
        } ?? 0
        return (s, c, model, iteration)
    }

    /// Throws, naming the file and tensor, unless every value is finite (and, with `nonNegative`,
    /// as a variance must be, >= 0).
    public static func checkValues(_ values: UnsafeBufferPointer<Float>, tensor: String, file: String, nonNegative: Bool = false) throws {
        for i in values.indices where !values[i].isFinite || (nonNegative && values[i] < 0) {
            let v = values[i]
            let what = v.isNaN ? "NaN" : v.isInfinite ? (v > 0 ? "+Inf" : "-Inf") : "the negative variance \(v)"
            throw Error("\(file): tensor '\(tensor)' holds \(what) (element \(i) of \(values.count)); the checkpoint is damaged or its training diverged: use an earlier checkpoint")
        }
    }

    /// `checkValues` for a tensor named as in disco's files (running variances and Adam's second moments must be >= 0).
    static func checkValues(_ t: Tensor, name: String, file: String) throws {
        try checkValues(UnsafeBufferPointer(start: t.data, count: t.count), tensor: name, file: file,
                        nonNegative: name.hasSuffix("running_var") || name.hasSuffix(".v"))
    }

    /// A tensor that disco stores as floats (weights, statistics, moments): F32 or F64, not integers.
    static func floatTensor(_ f: Safetensors.File, _ name: String) throws -> Tensor {
        let e = try f.entry(name)
        guard e.dtype == "F32" || e.dtype == "F64" else {
            throw Error("\(f.path): tensor '\(name)' has dtype \(e.dtype); disco stores it as F32 (the file was edited or damaged: use an earlier checkpoint)")
        }
        return e.tensor
    }

    /// `requireAll`: every network of the model must be in the file (resuming: a generators-only
    /// file, `disco export`'s, would leave the discriminators as initialised).
    public static func loadWeights(into model: DiscoGAN, file: String, requireAll: Bool = false) throws {
        let info = try modelInfo(file: file)
        guard info.size == model.config.size, info.channels == model.config.channels else {
            throw Error("\(file): a \(info.size)x\(info.size), \(info.channels)-channel model; this run is \(model.config.size)x\(model.config.size), \(model.config.channels)-channel (use --size \(info.size) --channels \(info.channels))")
        }
        let f = try Safetensors.read(path: file)
        for (name, net, _) in model.networks {
            var dict: [String: Tensor] = [:]
            for (k, _) in net.stateDict() {
                if f.entries["\(name).\(k)"] != nil {
                    let t = try floatTensor(f, "\(name).\(k)")
                    try checkValues(t, name: "\(name).\(k)", file: file)
                    dict[k] = t
                }
            }
            // A generators-only file (`disco export`) has no discriminators; a `gan` run no G_BA.
            if dict.isEmpty && name != "G_AB" {
                if requireAll {
                    throw Error("\(file): has no \(name) (a generators-only file, as `disco export` writes?); a checkpoint to resume from holds every network: delete its folder to resume from the one before it")
                }
                continue
            }
            do { try net.load(stateDict: dict) } catch { throw Error("\(file): \(name): \(error)") }
        }
    }

    // MARK: file system

    /// Creates `path` and its parents; `option` names the option that chose it, for the message.
    public static func createDirectory(_ path: String, option: String = "--out") throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            // Name the file that stands where a folder is needed, if that is the cause.
            var url = URL(fileURLWithPath: path), above: [String] = []
            while url.path != "/" && !url.path.isEmpty { above.append(url.path); url.deleteLastPathComponent() }
            var isDir: ObjCBool = false
            for p in above.reversed() where FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && !isDir.boolValue {
                throw Error("cannot create folder \(path): \(p) is a file, not a folder; choose another \(option)")
            }
            throw Error("cannot create folder \(path): \(error.localizedDescription); choose another \(option)")
        }
    }

    /// Writes a file atomically (through `FileWriter`: a temporary file in the same folder, fsync, rename).
    public static func writeAtomically(_ data: Data, to path: String) throws {
        try FileWriter.write(data, to: path)
    }
}

/// A run folder taken by this process (`disco train`, `disco gan train`): an exclusive lock on
/// `RUN/.lock`, held while any `RunFolderLock` of the folder lives in this process, and let go by
/// the kernel however the process ends (no stale lock after a kill). Two processes writing one
/// folder would remove each other's temporaries and interleave checkpoints and logs, so the
/// second is refused, naming the first's process id. Within one process (tests resuming a run
/// while the first trainer lives) the lock is shared.
public final class RunFolderLock: @unchecked Sendable {
    private static let registryLock = NSLock()
    /// Held locks by canonical path: the descriptor and how many `RunFolderLock`s share it.
    nonisolated(unsafe) private static var held: [String: (fd: Int32, count: Int)] = [:]
    private let key: String

    /// Creates `run` if needed, then takes it; throws `Checkpoint.Error` if another process has it.
    public init(run: String) throws {
        try Checkpoint.createDirectory(run)
        key = canonicalPath(run)
        RunFolderLock.registryLock.lock(); defer { RunFolderLock.registryLock.unlock() }
        if let h = RunFolderLock.held[key] { RunFolderLock.held[key] = (h.fd, h.count + 1); return }
        let path = run + "/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Checkpoint.Error("cannot open \(path): \(String(cString: strerror(errno))); choose another --out") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var buf = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buf, buf.count)
            close(fd)
            let pid = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            if code == EWOULDBLOCK {
                throw Checkpoint.Error("\(run) is in use by another disco run\(pid.isEmpty ? "" : " (process \(pid))"): wait for it to end, or choose another --out")
            }
            throw Checkpoint.Error("cannot lock \(path): \(String(cString: strerror(code))); choose another --out")
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.count, 0)
        RunFolderLock.held[key] = (fd, 1)
    }

    deinit {
        RunFolderLock.registryLock.lock(); defer { RunFolderLock.registryLock.unlock() }
        guard let h = RunFolderLock.held[key] else { return }
        if h.count > 1 { RunFolderLock.held[key] = (h.fd, h.count - 1); return }
        RunFolderLock.held[key] = nil
        close(h.fd)
    }
}
