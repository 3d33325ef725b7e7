import Foundation
import DiscoCore
import DiscoImage

// `disco translate` as a library: which model file a --checkpoint names, the generator read from
// it (folded for inference), the pipeline that decodes, translates, encodes and writes images on
// every core, and the --html results page.

/// The model of a run folder (latest checkpoint), a model.safetensors file, or the default model.
public func loadModel(checkpoint: String?) throws -> DiscoGAN {
    let file = try resolveModelFile(checkpoint)
    let info: (size: Int, channels: Int, model: ModelVariant, iteration: Int)
    do { info = try Checkpoint.modelInfo(file: file) } catch { throw DiscoError("--checkpoint: \(error)") }
    var config = TrainConfig()
    config.size = info.size; config.channels = info.channels; config.model = info.model
    let model = DiscoGAN(config: config)
    do { try Checkpoint.loadWeights(into: model, file: file) } catch { throw DiscoError("--checkpoint: \(error)") }
    return model
}

/// The model file of a run folder (latest checkpoint), a model file, or the default model.
public func resolveModelFile(_ checkpoint: String?) throws -> String {
    let file: String
    if let checkpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else {
            throw DiscoError("--checkpoint \(checkpoint): no such run folder or file")
        }
        if isDir.boolValue {
            if FileManager.default.fileExists(atPath: checkpoint + "/model.safetensors") {
                file = checkpoint + "/model.safetensors"
            } else if let latest = Checkpoint.latest(run: checkpoint) {
                file = latest + "/model.safetensors"
            } else {
                throw DiscoError("--checkpoint \(checkpoint): this folder has no checkpoint (no checkpoints/iter-N folder; train first, or name a model.safetensors)")
            }
        } else {
            file = checkpoint
        }
    } else {
        guard let d = defaultModelPath() else {
            throw DiscoError("no --checkpoint given and the default model (checkpoints/default/model.safetensors) was not found; pass --checkpoint RUN")
        }
        file = d
    }
    return file
}

/// checkpoints/default/model.safetensors beside the executable's checkout, or in the working folder.
public func defaultModelPath() -> String? {
    if let env = ProcessInfo.processInfo.environment["DISCO_DEFAULT_MODEL"] { return env }
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var candidates = ["checkpoints/default/model.safetensors"]
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<4 {
        candidates.append(dir.appendingPathComponent("checkpoints/default/model.safetensors").path)
        dir = dir.deletingLastPathComponent()
    }
    return candidates.first { FileManager.default.fileExists(atPath: $0) }
}

/// The stages of `disco translate`, each callable on its own (`disco bench translate` times them):
/// decode a batch of files, run the generator, encode the results, write them.
///
/// `run` splits the work into `streams` (one per core) that each take the next batch and carry
/// it through all four stages on one core, with single-threaded GEMMs and scratch buffers of
/// their own: no stage waits for another and no thread waits in a barrier.
public final class TranslateEngine {
    public let generator: InferenceNetwork
    public let size: Int, channels: Int
    public let keepSize: Bool
    public let quality: Int

    /// `modelFile`: a model.safetensors (see `resolveModelFile`).
    public init(modelFile: String, direction: Direction, keepSize: Bool, quality: Int) throws {
        (generator, size, channels) = try loadGenerator(file: modelFile, direction: direction)
        self.keepSize = keepSize; self.quality = quality
    }

    public typealias Decoded = (tensor: Tensor, indices: [Int], originalSizes: [(Int, Int)], failures: [(String, String)])

    /// The readable images of `paths` as the model sees them (see `loadBatch`).
    public func decode(_ paths: [String]) -> Decoded {
        loadBatch(paths, size: size, channels: channels, originalSizes: keepSize)
    }

    public func forward(_ x: Tensor, scratch: InferenceScratch = InferenceScratch(conv: .shared)) -> Tensor {
        generator.forward(x, scratch: scratch)
    }

    /// Images from which the Winograd weight transform (tens of ms) pays for itself.
    public static let winogradMinImages = 32

    /// Readies the generator for `count` images: Winograd convolutions for many.
    public func prepare(images count: Int) {
        if count >= TranslateEngine.winogradMinImages { generator.prepareWinograd(inputSize: size) }
    }

    /// The file bytes of each result (row k of y is input `decoded.indices[k]`), in the format of
    /// its target's extension, scaled back to the input's size with --keep-size.
    public func encode(_ y: Tensor, _ decoded: Decoded, targets: [String]) throws -> [[UInt8]] {
        let per = size * size * channels
        var out: [[UInt8]] = []
        for (k, j) in decoded.indices.enumerated() {
            let px = Array(UnsafeBufferPointer(start: y.data + k * per, count: per))
            out.append(try encodePixels(px, size, size, channels, format: targets[j],
                                        resizeTo: keepSize ? decoded.originalSizes[k] : nil, quality: quality,
                                        pngCompression: .fast))
        }
        return out
    }

    public func write(_ encoded: [[UInt8]], _ decoded: Decoded, targets: [String]) throws {
        for (k, j) in decoded.indices.enumerated() {
            do { try writeImageFile(encoded[k], path: targets[j]) } catch { throw DiscoError("cannot write \(targets[j]): \(error)") }
        }
    }

    /// How many streams `run` uses for `count` images.
    public static func streams(for count: Int) -> Int { max(1, min(Parallel.threads, count)) }

    /// Sets disco's and OpenBLAS's thread counts for `streams` concurrent streams (1 thread each
    /// when there are several); returns what restores them.
    public static func configureThreads(streams: Int) -> () -> Void {
        guard streams > 1 else { return {} }
        let blas = BLAS.shared, threads = Parallel.threads, blasThreads = blas.threads
        Parallel.threads = 1
        blas.threads = 1
        return { Parallel.threads = threads; blas.threads = blasThreads }
    }

    /// The (input, output) pairs of `disco translate INPUT --output OUTPUT`: a file maps to
    /// OUTPUT; a folder's images (`listImageFiles`, sub-folders too) map to the same relative
    /// paths under OUTPUT, keeping their names, an input that is not PNG or JPEG by extension
    /// becoming .png.
    ///
    /// Refused before anything is written: an output that is one of the inputs (OUTPUT is INPUT,
    /// or the same file by another path), and two inputs that would be written to the same file
    /// (`a.gif` and `a.webp`, both PNG inside, both becoming `a.png`).
    public static func jobs(input: String, output: String, isFolder: Bool) throws -> [(String, String)] {
        let jobs: [(String, String)]
        if isFolder {
            let files = try listImageFiles(folder: input)
            guard !files.isEmpty else { throw DiscoError("\(input): no images found in this folder") }
            jobs = files.map { rel in
                let ext = (rel as NSString).pathExtension.lowercased()
                let name = ["png", "jpg", "jpeg"].contains(ext) ? rel : (rel as NSString).deletingPathExtension + ".png"
                return (input + "/" + rel, output + "/" + name)
            }
        } else {
            jobs = [(input, output)]
        }
        let inputs = Set(jobs.map { canonicalPath($0.0) })
        var writer: [String: String] = [:]
        for (source, target) in jobs {
            let t = canonicalPath(target)
            if inputs.contains(t) {
                throw DiscoError("--output \(output): writing \(target) would replace the input image \(source)\(isFolder ? " (OUTPUT is INPUT, or inside it under the same names)" : ""); choose another --output")
            }
            if let other = writer[t] {
                throw DiscoError("\(other) and \(source) would both be written to \(target) (an output is PNG unless its input's name ends in .png, .jpg or .jpeg); rename one of them")
            }
            writer[t] = source
        }
        return jobs
    }

    /// Translates (input, output) pairs, at most `batch` images per forward pass. Output folders
    /// are created as needed. Unreadable inputs are reported on stderr and counted, not fatal.
    public func run(jobs: [(String, String)], batch: Int) throws -> (done: Int, failed: Int) {
        let parents = Set(jobs.map { parentFolder($0.1) }).filter { !$0.isEmpty }
        for p in parents.sorted() { try Checkpoint.createDirectory(p, option: "--output") }
        let streams = TranslateEngine.streams(for: jobs.count)
        let per = max(1, min(batch, (jobs.count + streams - 1) / streams))
        let chunks = stride(from: 0, to: jobs.count, by: per).map { Array(jobs[$0..<min($0 + per, jobs.count)]) }
        prepare(images: jobs.count)
        let restore = TranslateEngine.configureThreads(streams: streams)
        defer { restore() }
        let lock = NSLock()
        var next = 0, done = 0, failed = 0
        var firstError: Error? = nil
        DispatchQueue.concurrentPerform(iterations: streams) { _ in
            let scratch = streams == 1 ? InferenceScratch(conv: .shared) : InferenceScratch()
            while true {
                lock.lock()
                let c = next
                next += 1
                let stop = firstError != nil
                lock.unlock()
                guard c < chunks.count, !stop else { return }
                let chunk = chunks[c], targets = chunk.map(\.1)
                let decoded = decode(chunk.map(\.0))
                if !decoded.failures.isEmpty {
                    let text = decoded.failures.map { "skipped \($0.0): \($0.1)\n" }.joined()
                    lock.lock(); FileWriter.printError(text); failed += decoded.failures.count; lock.unlock()
                }
                guard !decoded.indices.isEmpty else { continue }
                do {
                    let y = forward(decoded.tensor, scratch: scratch)
                    try write(try encode(y, decoded, targets: targets), decoded, targets: targets)
                    lock.lock(); done += decoded.indices.count; lock.unlock()
                } catch {
                    lock.lock(); if firstError == nil { firstError = error }; lock.unlock()
                }
            }
        }
        if let firstError { throw firstError }
        return (done, failed)
    }
}

/// The generator of one direction, read straight from a model file (`disco export`'s or a
/// checkpoint's model.safetensors): only its own tensors are read (from a mapping of the file,
/// `Safetensors.MappedFile`), and its batch norms are folded into the weights while they are
/// converted to disco's layout. No other network, gradient or optimizer state is built.
public func loadGenerator(file: String, direction: Direction) throws -> (net: InferenceNetwork, size: Int, channels: Int) {
    func fail(_ message: String) -> DiscoError { DiscoError("--checkpoint: \(file): \(message)") }
    let mapped: Safetensors.MappedFile
    do { mapped = try Safetensors.MappedFile(path: file) } catch { throw DiscoError("--checkpoint: \(error)") }
    let meta = mapped.metadata
    guard meta["format"] == Checkpoint.formatVersion else {
        throw fail("format \(meta["format"] ?? "unknown"), this disco reads \(Checkpoint.formatVersion); it was not written by this disco version")
    }
    guard let size = meta["size"].flatMap(Int.init), let channels = meta["channels"].flatMap(Int.init) else {
        throw fail("metadata lacks size/channels")
    }
    guard DiscoGANModels.supportedSizes.contains(size), channels == 1 || channels == 3 else {
        throw fail("a \(size)x\(size), \(channels)-channel model, which this disco cannot build")
    }
    let prefix = direction == .aToB ? "G_AB." : "G_BA."
    if mapped.header.tensors[prefix + "e1.weight"] == nil {
        let variant = meta["model"] ?? "discogan"
        throw fail("has no \(prefix.dropLast()) (a '\(variant)' model\(direction == .bToA ? "; it translates a2b only" : ""))")
    }
    let blocks = DiscoGANModels.generatorBlocks(size: size, channels: channels)
    var tensors: [String: UnsafePointer<Float>] = [:]
    for s in blocks {
        var wanted: [(String, [Int])] = [
            ("\(s.name).weight", [s.kind == .conv ? s.outChannels : s.inChannels, s.kind == .conv ? s.inChannels : s.outChannels, s.kernel, s.kernel])]
        if s.batchNorm {
            for n in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] { wanted.append(("\(s.name).\(n)", [s.outChannels])) }
        }
        for (name, shape) in wanted {
            guard let info = mapped.header.tensors[prefix + name] else { throw fail("missing tensor '\(prefix + name)'") }
            guard info.shape == shape else { throw fail("tensor '\(prefix + name)' has shape \(info.shape), the model needs \(shape)") }
            let values: UnsafeBufferPointer<Float>
            do { values = try mapped.floats(prefix + name)! } catch { throw DiscoError("--checkpoint: \(error)") }
            do {
                try Checkpoint.checkValues(values, tensor: prefix + name, file: file, nonNegative: name.hasSuffix("running_var"))
            } catch { throw DiscoError("--checkpoint: \(error)") }
            tensors[name] = values.baseAddress!
        }
    }
    // PyTorch's (and Network's) batch-norm epsilon.
    let net = withExtendedLifetime(mapped) { InferenceNetwork(blocks: blocks, eps: 1e-5, torchLayout: true) { tensors[$0]! } }
    return (net, size, channels)
}

extension ResultsPage {
    /// Writes OUTPUT/index.html and its images (OUTPUT/index-files/) for `disco translate --html`,
    /// from the translations just written: `jobs` are (input, output) paths, outputs below
    /// `output`; `paired` a folder of ground truths named as the inputs. Returns the page's path.
    public static func write(jobs: [(String, String)], checkpoint: String?, input: String, output: String, paired: String?,
                             direction: Direction, batch: Int) throws -> String {
        let model = try loadModel(checkpoint: checkpoint)
        let c = model.config, per = c.size * c.size * c.channels
        let files = output + "/index-files"
        try Checkpoint.createDirectory(files, option: "--output")
        var truthByStem: [String: String] = [:]
        if let paired {
            for rel in try listImageFiles(folder: paired, option: "--paired") {
                truthByStem[(rel as NSString).deletingPathExtension] = paired + "/" + rel
            }
        }
        let written = jobs.filter { FileManager.default.fileExists(atPath: $0.1) }
        var rows: [ResultsPage.Row] = []
        for start in stride(from: 0, to: written.count, by: batch) {
            let chunk = Array(written[start..<min(start + batch, written.count)])
            let loaded = loadBatch(chunk.map(\.0), size: c.size, channels: c.channels)
            guard loaded.tensor.shape[0] > 0 else { continue }
            let x = loaded.tensor
            let y = model.translate(x, direction: direction)
            let back = model.translate(y, direction: direction == .aToB ? .bToA : .aToB)
            for (k, i) in loaded.indices.enumerated() {
                let rel = String(chunk[i].1.dropFirst(output.count + 1))
                let stem = (rel as NSString).deletingPathExtension
                let flat = stem.replacingOccurrences(of: "/", with: "__")
                func pixels(_ t: Tensor) -> [Float] { Array(UnsafeBufferPointer(start: t.data + k * per, count: per)) }
                let xin = pixels(x), rec = pixels(back), fake = pixels(y)
                try writePixels(xin, c.size, c.size, c.channels, "\(files)/\(flat)-input.png")
                try writePixels(rec, c.size, c.size, c.channels, "\(files)/\(flat)-reconstruction.png")
                var truthPath: String?, truthL1: Double?, truthSSIM: Double?
                if let t = truthByStem[stem], let truth = try? loadSquareImage(path: t, size: c.size, channels: c.channels) {
                    try writePixels(truth.pixels, c.size, c.size, c.channels, "\(files)/\(flat)-truth.png")
                    truthPath = "index-files/\(flat)-truth.png"
                    let s = fake.withUnsafeBufferPointer { f in truth.pixels.withUnsafeBufferPointer { g in
                        Metrics.scores(f.baseAddress!, g.baseAddress!, height: c.size, width: c.size, channels: c.channels) } }
                    truthL1 = s.l1; truthSSIM = s.ssim
                }
                let recL1 = zip(xin, rec).reduce(0.0) { $0 + Double(abs($1.0 - $1.1)) } / Double(per)
                rows.append(ResultsPage.Row(name: rel, input: "index-files/\(flat)-input.png", translation: rel,
                                            reconstruction: "index-files/\(flat)-reconstruction.png", truth: truthPath,
                                            reconstructionL1: recL1, truthL1: truthL1, truthSSIM: truthSSIM))
            }
        }
        let title = "disco translate \(input) (\(direction.rawValue))"
        let page = output + "/index.html"
        try FileWriter.write(Data(ResultsPage.html(title: title, direction: direction == .aToB ? "A to B" : "B to A", rows: rows).utf8), to: page)
        return page
    }
}
