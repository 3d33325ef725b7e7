import Foundation
import DiscoCore
import DiscoImage

// What `disco train` trains on: the two domains' folders, the trainer's batch source over them
// (disco's image loader), the fixed sample images and --keep-best's held-out images.

/// The two training domains (and the test folders of the CycleGAN layout, for sample images).
public struct TrainingDomains {
    public let a: String, b: String
    public let testA: String?, testB: String?
    public var folderA: ImageFolder, folderB: ImageFolder
    /// Run name for the default --out: the layout folder's name, or "A-B".
    public let name: String
}

public func resolveTrainingDomains(_ folders: [String]) throws -> TrainingDomains {
    let paths: DomainPaths
    do { paths = try resolveDomains(paths: folders) } catch { throw DiscoError("\(error)") }
    func scan(_ p: String, _ what: String) throws -> ImageFolder {
        do { return try ImageFolder(path: p) } catch { throw DiscoError("domain \(what): \(error)") }
    }
    let fa = try scan(paths.a, "A"), fb = try scan(paths.b, "B")
    let base = { (p: String) in (p as NSString).standardizingPath.split(separator: "/").last.map(String.init) ?? "run" }
    let name = folders.count == 1 ? base(folders[0]) : base(paths.a) + "-" + base(paths.b)
    return TrainingDomains(a: paths.a, b: paths.b, testA: paths.testA, testB: paths.testB, folderA: fa, folderB: fb, name: name)
}

/// The trainer's view of `UnpairedLoader`: batches copied into tensors, state as a flat dictionary.
public final class LoaderSource: BatchSource {
    public let folderA: ImageFolder, folderB: ImageFolder
    public let options: LoaderOptions
    private var loader: UnpairedLoader
    private var waitBefore: Double = 0

    public init(a: ImageFolder, b: ImageFolder, options: LoaderOptions) {
        folderA = a; folderB = b; self.options = options
        loader = UnpairedLoader(a: a, b: b, options: options)
    }

    public func next(a: Tensor, b: Tensor) throws {
        let batch = try loader.next()
        precondition(batch.a.count == a.count && batch.b.count == b.count, "loader batch does not match the model's input shape")
        batch.a.withUnsafeBufferPointer { a.data.update(from: $0.baseAddress!, count: a.count) }
        batch.b.withUnsafeBufferPointer { b.data.update(from: $0.baseAddress!, count: b.count) }
    }

    public var state: [String: Int] {
        let s = loader.state
        return ["a_epoch": s.a.epoch, "a_position": s.a.position, "b_epoch": s.b.epoch, "b_position": s.b.position]
    }

    public func restore(_ s: [String: Int]) throws {
        let keys = ["a_epoch", "a_position", "b_epoch", "b_position"]
        for k in s.keys.sorted() where !keys.contains(k) {
            throw DiscoError("field 'loader.\(k)' is not a field of disco's image loader (\(keys.joined(separator: ", ")))")
        }
        func value(_ k: String) throws -> Int {
            guard let v = s[k] else { throw DiscoError("field 'loader.\(k)' is missing") }
            // A position past the folder's end (images removed since) starts the next epoch.
            guard v >= 0 && v <= 1 << 40 else { throw DiscoError("field 'loader.\(k)' is \(v); it must be in 0...\(1 << 40)") }
            return v
        }
        let state = LoaderState(a: DomainCursor(epoch: try value("a_epoch"), position: try value("a_position")),
                                b: DomainCursor(epoch: try value("b_epoch"), position: try value("b_position")))
        waitBefore += loader.waitSeconds
        loader.stop()
        loader = UnpairedLoader(a: folderA, b: folderB, options: options, state: state)
    }

    public var waitSeconds: Double { waitBefore + loader.waitSeconds }
}

/// `slice`: the positions of each batch this rank serves (data-parallel training), nil: all.
public func makeBatchSource(domains: TrainingDomains, config: TrainConfig, slice: Range<Int>? = nil) throws -> BatchSource {
    var o = LoaderOptions()
    o.slice = slice
    o.batch = config.batch; o.size = config.size; o.channels = config.channels; o.seed = config.seed
    o.loadSize = config.loadSize > 0 ? config.loadSize : nil; o.flip = config.flip
    return LoaderSource(a: domains.folderA, b: domains.folderB, options: o)
}

/// What every rank of a data-parallel run must agree on before it starts
/// (`Trainer.checkRanksStartAlike`), by name: 64-bit FNV-1a hashes (the same on every machine and
/// run) of the configuration (JSON, keys sorted), of each domain's file list, and of each of
/// `more` (settings outside the configuration, such as command-line flags).
public func sharedStartSettings(config: TrainConfig, domains: TrainingDomains, more: [String: String] = [:]) throws -> [String: UInt64] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var settings = ["the settings": fnv1a(Array(try encoder.encode(config)))]
    settings["the images of domain A"] = fnv1a(Array(domains.folderA.files.joined(separator: "\n").utf8))
    settings["the images of domain B"] = fnv1a(Array(domains.folderB.files.joined(separator: "\n").utf8))
    for (name, value) in more { settings[name] = fnv1a(Array(value.utf8)) }
    return settings
}

/// FNV-1a, 64 bits (Swift's Hasher is seeded per process).
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// `--keep-best`'s held-out images, at most 64 per domain: the test folders' when both exist,
/// else the last 5% (at least one) of each training folder, which are then left out of training.
public func holdOut(domains: inout TrainingDomains, config: TrainConfig) throws -> (a: Tensor, b: Tensor) {
    func load(_ files: [String], _ what: String) throws -> Tensor {
        guard let t = firstReadable(files, count: 64, config: config) else { throw DiscoError("--keep-best: no readable held-out image in \(what)") }
        return t
    }
    if let ta = domains.testA, let tb = domains.testB,
       let fa = try? ImageFolder(path: ta), let fb = try? ImageFolder(path: tb) {
        return (try load(fa.files, ta), try load(fb.files, tb))
    }
    func split(_ f: ImageFolder) throws -> (ImageFolder, Tensor) {
        let n = min(64, max(1, f.count / 20))
        guard f.count - n >= 1 else {
            throw DiscoError("--keep-best: \(f.path) has \(f.count) image(s), too few to hold any out; add images or test folders (testA/, testB/)")
        }
        // The last n files that decode (files that do not are skipped, as in training), scanning
        // back no further than leaves one file to train on; their pixels as decoded here.
        var out: [String] = [], images: [[Float]] = []
        for file in f.files.reversed() where out.count < n && f.count - out.count > 1 {
            guard let image = try? loadSquareImage(path: file, size: config.size, channels: config.channels) else { continue }
            out.append(file); images.append(image.pixels)
        }
        guard !out.isEmpty else { throw DiscoError("--keep-best: no image of \(f.path) decodes to hold out; add readable images or test folders (testA/, testB/)") }
        let t = Tensor(uninitialized: [out.count, config.size, config.size, config.channels]), per = config.size * config.size * config.channels
        for (k, pixels) in images.reversed().enumerated() {  // in the folder's order
            pixels.withUnsafeBufferPointer { (t.data + k * per).update(from: $0.baseAddress!, count: per) }
        }
        return (f.holdingOut(files: out.reversed()).kept, t)
    }
    let (keptA, heldA) = try split(domains.folderA), (keptB, heldB) = try split(domains.folderB)
    domains.folderA = keptA; domains.folderB = keptB
    return (heldA, heldB)
}

/// Fixed images for the sample grids: the first `count` of the test folders (else of the training
/// folders), resized to the model's size and never augmented (no --load-size crop, no flip).
public func sampleTensors(domains: TrainingDomains, config: TrainConfig, count: Int) throws -> (Tensor, Tensor) {
    func pick(_ test: String?, _ train: ImageFolder) throws -> Tensor {
        var files: [String] = []
        if let test, let f = try? ImageFolder(path: test) { files = f.files }
        if files.isEmpty { files = train.files }
        guard let t = firstReadable(files, count: count, config: config) else {
            throw DiscoError("\(train.path): no readable image for the sample grid (none of its \(files.count) files decodes)")
        }
        return t
    }
    return (try pick(domains.testA, domains.folderA), try pick(domains.testB, domains.folderB))
}

/// The first `count` of `files` that decode, as the model sees them [n, size, size, channels]
/// (n <= count), read `count` at a time: corrupt files are passed over however many come first.
/// nil when none decodes.
func firstReadable(_ files: [String], count: Int, config: TrainConfig) -> Tensor? {
    let per = config.size * config.size * config.channels
    var pixels: [Float] = []
    var start = 0
    while pixels.count < count * per && start < files.count {
        let loaded = loadBatch(Array(files[start..<min(files.count, start + count)]), size: config.size, channels: config.channels)
        let take = min(loaded.tensor.shape[0], count - pixels.count / per)
        pixels += UnsafeBufferPointer(start: loaded.tensor.data, count: take * per)
        start += count
    }
    let n = pixels.count / per
    guard n > 0 else { return nil }
    let t = Tensor(uninitialized: [n, config.size, config.size, config.channels])
    pixels.withUnsafeBufferPointer { t.data.update(from: $0.baseAddress!, count: n * per) }
    return t
}

/// Each domain's images as a checkpoint records them (`Trainer.dataFingerprint`): "N images,
/// files H", H the FNV-1a hash of each file's name (relative to the folder) and size, so moving
/// the folder keeps it, and swapping A and B, or adding, removing, renaming or replacing an
/// image, changes it (contents are not read: an image edited in place to the same size is not seen).
public func dataFingerprint(_ domains: TrainingDomains) -> [String: String] {
    func describe(_ folder: ImageFolder) -> String {
        let prefix = folder.root == "/" ? "/" : folder.root + "/"
        var text = ""
        var st = stat()
        for f in folder.files {
            let size = stat(f, &st) == 0 ? Int(st.st_size) : -1
            text += (f.hasPrefix(prefix) ? String(f.dropFirst(prefix.count)) : f) + "\t\(size)\n"
        }
        return "\(folder.files.count) images, files \(String(fnv1a(Array(text.utf8)), radix: 16))"
    }
    return ["A": describe(domains.folderA), "B": describe(domains.folderB)]
}
