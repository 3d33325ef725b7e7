import Foundation
import DiscoCore
import DiscoImage
import DiscoGAN

/// The two training domains (and the test folders of the CycleGAN layout, for sample images).
struct TrainingDomains {
    let a: String, b: String
    let testA: String?, testB: String?
    var folderA: ImageFolder, folderB: ImageFolder
    /// Run name for the default --out: the layout folder's name, or "A-B".
    let name: String
}

func resolveTrainingDomains(_ folders: [String]) throws -> TrainingDomains {
    let paths: DomainPaths
    do { paths = try resolveDomains(paths: folders) } catch { throw CLIError("\(error)") }
    func scan(_ p: String, _ what: String) throws -> ImageFolder {
        do { return try ImageFolder(path: p) } catch { throw CLIError("domain \(what): \(error)") }
    }
    let fa = try scan(paths.a, "A"), fb = try scan(paths.b, "B")
    let base = { (p: String) in (p as NSString).standardizingPath.split(separator: "/").last.map(String.init) ?? "run" }
    let name = folders.count == 1 ? base(folders[0]) : base(paths.a) + "-" + base(paths.b)
    return TrainingDomains(a: paths.a, b: paths.b, testA: paths.testA, testB: paths.testB, folderA: fa, folderB: fb, name: name)
}

/// The trainer's view of `UnpairedLoader`: batches copied into tensors, state as a flat dictionary.
final class LoaderSource: BatchSource {
    let folderA: ImageFolder, folderB: ImageFolder
    let options: LoaderOptions
    var loader: UnpairedLoader
    private var waitBefore: Double = 0

    init(a: ImageFolder, b: ImageFolder, options: LoaderOptions) {
        folderA = a; folderB = b; self.options = options
        loader = UnpairedLoader(a: a, b: b, options: options)
    }

    func next(a: Tensor, b: Tensor) throws {
        let batch = try loader.next()
        precondition(batch.a.count == a.count && batch.b.count == b.count, "loader batch does not match the model's input shape")
        batch.a.withUnsafeBufferPointer { a.data.update(from: $0.baseAddress!, count: a.count) }
        batch.b.withUnsafeBufferPointer { b.data.update(from: $0.baseAddress!, count: b.count) }
    }

    var state: [String: Int] {
        let s = loader.state
        return ["a_epoch": s.a.epoch, "a_position": s.a.position, "b_epoch": s.b.epoch, "b_position": s.b.position]
    }

    func restore(_ s: [String: Int]) throws {
        let keys = ["a_epoch", "a_position", "b_epoch", "b_position"]
        for k in s.keys.sorted() where !keys.contains(k) {
            throw CLIError("field 'loader.\(k)' is not a field of disco's image loader (\(keys.joined(separator: ", ")))")
        }
        func value(_ k: String) throws -> Int {
            guard let v = s[k] else { throw CLIError("field 'loader.\(k)' is missing") }
            // A position past the folder's end (images removed since) starts the next epoch.
            guard v >= 0 && v <= 1 << 40 else { throw CLIError("field 'loader.\(k)' is \(v); it must be in 0...\(1 << 40)") }
            return v
        }
        let state = LoaderState(a: DomainCursor(epoch: try value("a_epoch"), position: try value("a_position")),
                                b: DomainCursor(epoch: try value("b_epoch"), position: try value("b_position")))
        waitBefore += loader.waitSeconds
        loader.stop()
        loader = UnpairedLoader(a: folderA, b: folderB, options: options, state: state)
    }

    var waitSeconds: Double { waitBefore + loader.waitSeconds }
}

/// `slice`: the positions of each batch this rank serves (data-parallel training), nil: all.
func makeBatchSource(domains: TrainingDomains, config: TrainConfig, slice: Range<Int>? = nil) throws -> BatchSource {
    var o = LoaderOptions()
    o.slice = slice
    o.batch = config.batch; o.size = config.size; o.channels = config.channels; o.seed = config.seed
    o.loadSize = config.loadSize > 0 ? config.loadSize : nil; o.flip = config.flip
    return LoaderSource(a: domains.folderA, b: domains.folderB, options: o)
}

/// `--keep-best`'s held-out images, at most 64 per domain: the test folders' when both exist,
/// else the last 5% (at least one) of each training folder, which are then left out of training.
func holdOut(domains: inout TrainingDomains, config: TrainConfig) throws -> (a: Tensor, b: Tensor) {
    func load(_ files: [String], _ what: String) throws -> Tensor {
        let loaded = loadBatch(Array(files.prefix(64)), size: config.size, channels: config.channels)
        guard loaded.tensor.shape[0] > 0 else { throw CLIError("--keep-best: no readable held-out image in \(what)") }
        return loaded.tensor
    }
    if let ta = domains.testA, let tb = domains.testB,
       let fa = try? ImageFolder(path: ta), let fb = try? ImageFolder(path: tb) {
        return (try load(fa.files, ta), try load(fb.files, tb))
    }
    func split(_ f: ImageFolder) throws -> (ImageFolder, [String]) {
        let n = min(64, max(1, f.count / 20))
        guard f.count - n >= 1 else {
            throw CLIError("--keep-best: \(f.path) has \(f.count) image(s), too few to hold any out; add images or test folders (testA/, testB/)")
        }
        return f.holdingOut(n)
    }
    let (keptA, outA) = try split(domains.folderA), (keptB, outB) = try split(domains.folderB)
    domains.folderA = keptA; domains.folderB = keptB
    return (try load(outA, domains.a), try load(outB, domains.b))
}

/// Fixed images for the sample grids: the first `count` of the test folders (else of the training
/// folders), resized to the model's size and never augmented (no --load-size crop, no flip).
func sampleTensors(domains: TrainingDomains, config: TrainConfig, count: Int) throws -> (Tensor, Tensor) {
    func pick(_ test: String?, _ train: ImageFolder) throws -> Tensor {
        var files: [String] = []
        if let test, let f = try? ImageFolder(path: test) { files = f.files }
        if files.isEmpty { files = train.files }
        let loaded = loadBatch(Array(files.prefix(count * 2)), size: config.size, channels: config.channels)
        let n = min(count, loaded.tensor.shape[0])
        guard n > 0 else { throw CLIError("\(train.path): no readable image for the sample grid") }
        let per = config.size * config.size * config.channels
        let t = Tensor(uninitialized: [n, config.size, config.size, config.channels])
        t.data.update(from: loaded.tensor.data, count: n * per)
        return t
    }
    return (try pick(domains.testA, domains.folderA), try pick(domains.testB, domains.folderB))
}

/// Image files below a folder (recognised by content), as paths relative to it, in a stable order.
func listImageFiles(folder: String, option: String = "input") throws -> [String] {
    let scanned: ImageFolder
    do { scanned = try ImageFolder(path: folder) } catch { throw CLIError("\(option) \(folder): \(error)") }
    if let w = scanned.linkLoopWarning { FileWriter.printError("disco: " + w) }
    let prefix = scanned.root == "/" ? "/" : scanned.root + "/"
    return scanned.files.map { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : ($0 as NSString).lastPathComponent }
}

/// Decodes images as the model sees them into one NHWC tensor; unreadable files are reported, not fatal.
/// `originalSizes` (width, height) are read only when asked for (`--keep-size`), from the headers.
func loadBatch(_ paths: [String], size: Int, channels: Int, originalSizes needSizes: Bool = false)
    -> (tensor: Tensor, indices: [Int], originalSizes: [(Int, Int)], failures: [(String, String)]) {
    var images: [Image] = [], indices: [Int] = [], sizes: [(Int, Int)] = [], failures: [(String, String)] = []
    for (i, p) in paths.enumerated() {
        do {
            let image = try loadSquareImage(path: p, size: size, channels: channels)
            if needSizes {
                sizes.append(try imageSize(path: p))
            }
            images.append(image)
            indices.append(i)
        } catch {
            failures.append((p, "\(error)"))
        }
    }
    let per = size * size * channels
    let t = Tensor(uninitialized: [images.count, size, size, channels])
    for (k, im) in images.enumerated() {
        im.pixels.withUnsafeBufferPointer { (t.data + k * per).update(from: $0.baseAddress!, count: per) }
    }
    return (t, indices, sizes, failures)
}

/// Writes HWC pixels in [0, 1] as an image whose format follows the path's extension.
func writePixels(_ pixels: [Float], _ width: Int, _ height: Int, _ channels: Int, _ path: String) throws {
    try writePixels(pixels, width, height, channels, path, resizeTo: nil, quality: 95)
}

func writePixels(_ pixels: [Float], _ width: Int, _ height: Int, _ channels: Int, _ path: String,
                 resizeTo: (Int, Int)?, quality: Int) throws {
    let bytes = try encodePixels(pixels, width, height, channels, format: path, resizeTo: resizeTo, quality: quality)
    do { try writeImageFile(bytes, path: path) } catch { throw CLIError("cannot write \(path): \(error)") }
}

/// HWC pixels in [0, 1] (clamped) as the bytes of an image file in the format of `format`'s
/// extension (a path or a name: .png, .jpg, .jpeg), optionally resized first.
func encodePixels(_ pixels: [Float], _ width: Int, _ height: Int, _ channels: Int, format: String,
                  resizeTo: (Int, Int)?, quality: Int, pngCompression: PNGCompression = .standard) throws -> [UInt8] {
    var image = Image(width: width, height: height, channels: channels, pixels: pixels.map { min(max($0, 0), 1) })
    if let (w, h) = resizeTo, w != width || h != height { image = image.resized(width: w, height: h) }
    do { return try encodeImage(image, path: format, jpegQuality: quality, pngCompression: pngCompression) }
    catch { throw CLIError("cannot write \(format): \(error)") }
}

/// The folder part of `path` (before its last "/", trailing slashes ignored): "" for a bare name,
/// "/" for a file at the root. (NSString's deletingLastPathComponent traps on one-character names.)
func parentFolder(_ path: String) -> String {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    guard let slash = p.lastIndex(of: "/") else { return "" }
    if slash == p.startIndex { return "/" }
    var parent = p[..<slash]
    while parent.count > 1 && parent.hasSuffix("/") { parent.removeLast() }
    return String(parent)
}
