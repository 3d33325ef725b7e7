import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN
import DiscoImage

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate an image, or a folder of images, from domain A to B (or B to A).",
        discussion: """
        Any size and format in; the model's size out (--keep-size scales back to the input's size).
        The output format follows OUTPUT's extension (.png, .jpg). With a folder INPUT, OUTPUT is a
        folder and file names (and sub-folders) are kept. Without --checkpoint, the pretrained
        default model (checkpoints/default: Fashion-MNIST bags <-> shoes, 32x32 gray) is used.
        """)

    @Argument(help: "An image file or a folder of images.") var input: String
    @Option(name: .shortAndLong, help: "Output image (or folder, for a folder INPUT).") var output: String
    @Option(help: "A run folder (its latest checkpoint) or a model.safetensors file.") var checkpoint: String?
    @Option(help: "a2b (G_AB) or b2a (G_BA).") var direction = Direction.aToB
    @Flag(help: "Scale each result back to its input's size.") var keepSize = false
    @Option(help: "Images per forward pass.") var batch = 64
    @Option(help: "JPEG quality for .jpg outputs.") var quality = 95
    @Flag(help: "Also write OUTPUT/index.html: input, translation, reconstruction and their distances, sortable (folder INPUT).")
    var html = false
    @Option(help: "With --html: folder of ground-truth images paired with INPUT's by file name.") var paired: String?

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be positive, got \(batch)") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be in 1...100, got \(quality)") }
        if paired != nil && !html { throw ValidationError("--paired is for the --html page; add --html") }
    }

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let modelFile = try resolveModelFile(checkpoint)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
            throw CLIError("\(input): no such file or folder")
        }
        if html && !isDir.boolValue { throw CLIError("--html: INPUT \(input) is one file; the results page is for a folder of images") }
        if let paired, !FileManager.default.fileExists(atPath: paired) { throw CLIError("--paired \(paired): no such folder") }
        if !isDir.boolValue && ImageFormat(extensionOf: output) == nil {
            let ext = ImageFormat.pathExtension(output)
            throw CLIError("--output \(output): \(ext.isEmpty ? "no extension" : "unknown extension .\(ext)"); the format follows the extension: use \(ImageFormat.extensionList)")
        }
        // OpenBLAS loads (dlopen) on another core while the model is read and folded. Its
        // environment variables are set here first: setenv must not race other threads' getenv.
        _ = Parallel.threads
        BLAS.prepareEnvironment()
        DispatchQueue.global(qos: .userInitiated).async { _ = try? BLAS.load() }
        let engine = try TranslateEngine(modelFile: modelFile, direction: direction, keepSize: keepSize, quality: quality)
        _ = try loadBLASOrExplain()
        let jobs: [(String, String)]
        if isDir.boolValue {
            let files = try listImageFiles(folder: input)
            guard !files.isEmpty else { throw CLIError("\(input): no images found in this folder") }
            try Checkpoint.createDirectory(output)
            jobs = files.map { rel in (input + "/" + rel, output + "/" + outputName(rel)) }
        } else {
            let parent = parentFolder(output)
            if !parent.isEmpty { try Checkpoint.createDirectory(parent) }
            jobs = [(input, output)]
        }
        let (done, failed) = try engine.run(jobs: jobs, batch: batch)
        if jobs.count > 1 || failed > 0 { print("translated \(done) image(s) into \(output)\(failed > 0 ? ", skipped \(failed) unreadable" : "")") }
        if done == 0 { throw CLIError("\(input): no image could be read") }
        if html {
            let page = try writeResultsPage(jobs: jobs)
            print("results page: \(page)")
        }
    }

    /// OUTPUT/index.html and its images (OUTPUT/index-files/), from the translations just written.
    func writeResultsPage(jobs: [(String, String)]) throws -> String {
        let model = try loadModel(checkpoint: checkpoint)
        let c = model.config, per = c.size * c.size * c.channels
        let files = output + "/index-files"
        try Checkpoint.createDirectory(files)
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
        try Checkpoint.writeAtomically(Data(ResultsPage.html(title: title, direction: direction == .aToB ? "A to B" : "B to A", rows: rows).utf8), to: page)
        return page
    }

    /// Keeps the name; an input that is not PNG/JPEG by extension becomes .png.
    func outputName(_ rel: String) -> String {
        let ext = (rel as NSString).pathExtension.lowercased()
        return ["png", "jpg", "jpeg"].contains(ext) ? rel : (rel as NSString).deletingPathExtension + ".png"
    }
}

/// The model of a run folder (latest checkpoint), a model.safetensors file, or the default model.
func loadModel(checkpoint: String?) throws -> DiscoGAN {
    let file = try resolveModelFile(checkpoint)
    let info: (size: Int, channels: Int, model: ModelVariant, iteration: Int)
    do { info = try Checkpoint.modelInfo(file: file) } catch { throw CLIError("--checkpoint: \(error)") }
    var config = TrainConfig()
    config.size = info.size; config.channels = info.channels; config.model = info.model
    let model = DiscoGAN(config: config)
    do { try Checkpoint.loadWeights(into: model, file: file) } catch { throw CLIError("--checkpoint: \(error)") }
    return model
}

/// The model file of a run folder (latest checkpoint), a model file, or the default model.
func resolveModelFile(_ checkpoint: String?) throws -> String {
    let file: String
    if let checkpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else {
            throw CLIError("--checkpoint \(checkpoint): no such run folder or file")
        }
        if isDir.boolValue {
            if FileManager.default.fileExists(atPath: checkpoint + "/model.safetensors") {
                file = checkpoint + "/model.safetensors"
            } else if let latest = Checkpoint.latest(run: checkpoint) {
                file = latest + "/model.safetensors"
            } else {
                throw CLIError("--checkpoint \(checkpoint): this folder has no checkpoints/ (train first, or name a model.safetensors)")
            }
        } else {
            file = checkpoint
        }
    } else {
        guard let d = defaultModelPath() else {
            throw CLIError("no --checkpoint given and the default model (checkpoints/default/model.safetensors) was not found; pass --checkpoint RUN")
        }
        file = d
    }
    return file
}

/// checkpoints/default/model.safetensors beside the executable's checkout, or in the working folder.
func defaultModelPath() -> String? {
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
final class TranslateEngine {
    let generator: InferenceNetwork
    let size: Int, channels: Int
    let keepSize: Bool
    let quality: Int

    /// `modelFile`: a model.safetensors (see `resolveModelFile`).
    init(modelFile: String, direction: Direction, keepSize: Bool, quality: Int) throws {
        (generator, size, channels) = try loadGenerator(file: modelFile, direction: direction)
        self.keepSize = keepSize; self.quality = quality
    }

    typealias Decoded = (tensor: Tensor, indices: [Int], originalSizes: [(Int, Int)], failures: [(String, String)])

    /// The readable images of `paths` as the model sees them (see `loadBatch`).
    func decode(_ paths: [String]) -> Decoded {
        loadBatch(paths, size: size, channels: channels, originalSizes: keepSize)
    }

    func forward(_ x: Tensor, scratch: InferenceScratch = InferenceScratch(conv: .shared)) -> Tensor {
        generator.forward(x, scratch: scratch)
    }

    /// Images from which the Winograd weight transform (tens of ms) pays for itself.
    static let winogradMinImages = 32

    /// Readies the generator for `count` images: Winograd convolutions for many.
    func prepare(images count: Int) {
        if count >= TranslateEngine.winogradMinImages { generator.prepareWinograd(inputSize: size) }
    }

    /// The file bytes of each result (row k of y is input `decoded.indices[k]`), in the format of
    /// its target's extension, scaled back to the input's size with --keep-size.
    func encode(_ y: Tensor, _ decoded: Decoded, targets: [String]) throws -> [[UInt8]] {
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

    func write(_ encoded: [[UInt8]], _ decoded: Decoded, targets: [String]) throws {
        for (k, j) in decoded.indices.enumerated() {
            do { try writeImageFile(encoded[k], path: targets[j]) } catch { throw CLIError("cannot write \(targets[j]): \(error)") }
        }
    }

    /// How many streams `run` uses for `count` images.
    static func streams(for count: Int) -> Int { max(1, min(Parallel.threads, count)) }

    /// Sets disco's and OpenBLAS's thread counts for `streams` concurrent streams (1 thread each
    /// when there are several); returns what restores them.
    static func configureThreads(streams: Int) -> () -> Void {
        guard streams > 1 else { return {} }
        let blas = BLAS.shared, threads = Parallel.threads, blasThreads = blas.threads
        Parallel.threads = 1
        blas.threads = 1
        return { Parallel.threads = threads; blas.threads = blasThreads }
    }

    /// Translates (input, output) pairs, at most `batch` images per forward pass. Output folders
    /// are created as needed. Unreadable inputs are reported on stderr and counted, not fatal.
    func run(jobs: [(String, String)], batch: Int) throws -> (done: Int, failed: Int) {
        let parents = Set(jobs.map { parentFolder($0.1) }).filter { !$0.isEmpty }
        for p in parents.sorted() { try Checkpoint.createDirectory(p) }
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
/// checkpoint's model.safetensors): only its own tensors are read (from a mapping of the file),
/// and its batch norms are folded into the weights while they are converted to disco's layout.
/// No other network, gradient or optimizer state is built.
func loadGenerator(file: String, direction: Direction) throws -> (net: InferenceNetwork, size: Int, channels: Int) {
    func fail(_ message: String) -> CLIError { CLIError("--checkpoint: \(file): \(message)") }
    let fd = open(file, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
    let fileSize = Int(st.st_size)
    guard fileSize >= 8 else { throw fail("not a valid safetensors file: shorter than its 8-byte header length") }
    // Mapped, not read: the tensors are used in place (page cache, no copy) while they are folded.
    guard let map = mmap(nil, fileSize, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
        throw fail("cannot map: \(String(cString: strerror(errno)))")
    }
    defer { munmap(map, fileSize) }
    let bytes = UnsafeRawPointer(map)
    let checked: Safetensors.Header
    do { checked = try Safetensors.header(UnsafeRawBufferPointer(start: bytes, count: fileSize), path: file) } catch {
        throw CLIError("--checkpoint: \(error)")
    }
    let meta = checked.metadata
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
    if checked.tensors[prefix + "e1.weight"] == nil {
        let variant = meta["model"] ?? "discogan"
        throw fail("has no \(prefix.dropLast()) (a '\(variant)' model\(direction == .bToA ? "; it translates a2b only" : ""))")
    }
    let blocks = DiscoGANModels.generatorBlocks(size: size, channels: channels)
    // Values by name: in the mapping, or in `copies` (converted or realigned).
    var tensors: [String: UnsafePointer<Float>] = [:]
    var copies: [Tensor] = []
    for s in blocks {
        var wanted: [(String, [Int])] = [
            ("\(s.name).weight", [s.kind == .conv ? s.outChannels : s.inChannels, s.kind == .conv ? s.inChannels : s.outChannels, s.kernel, s.kernel])]
        if s.batchNorm {
            for n in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] { wanted.append(("\(s.name).\(n)", [s.outChannels])) }
        }
        for (name, shape) in wanted {
            guard let info = checked.tensors[prefix + name] else { throw fail("missing tensor '\(prefix + name)'") }
            guard info.shape == shape else { throw fail("tensor '\(prefix + name)' has shape \(info.shape), the model needs \(shape)") }
            let n = info.count
            let width = info.dtype == "F32" ? 4 : info.dtype == "F64" ? 8 : 0
            guard width > 0 else { throw fail("tensor '\(prefix + name)' has dtype \(info.dtype); disco reads F32 or F64 weights") }
            let src = bytes + info.bytes.lowerBound
            var values: UnsafePointer<Float>
            #if _endian(little)
            let mapped = width == 4 && Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0
            #else
            let mapped = false
            #endif
            if mapped {
                values = src.assumingMemoryBound(to: Float.self)
            } else {
                let t = Tensor(uninitialized: shape)
                for i in 0..<n {
                    t.data[i] = width == 4 ? Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                                           : Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                }
                copies.append(t)
                values = UnsafePointer(t.data)
            }
            do {
                try Checkpoint.checkValues(UnsafeBufferPointer(start: values, count: n), tensor: prefix + name, file: file,
                                           nonNegative: name.hasSuffix("running_var"))
            } catch { throw CLIError("--checkpoint: \(error)") }
            tensors[name] = values
        }
    }
    // PyTorch's (and Network's) batch-norm epsilon.
    let net = InferenceNetwork(blocks: blocks, eps: 1e-5, torchLayout: true) { tensors[$0]! }
    withExtendedLifetime(copies) {}
    return (net, size, channels)
}
