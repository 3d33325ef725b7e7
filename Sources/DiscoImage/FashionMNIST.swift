import Foundation

/// Fashion-MNIST as shipped by Debian's `dataset-fashion-mnist`: gzipped IDX files with
/// 28x28 gray images (white garments on black) and their class labels.
public enum FashionMNIST {
    /// Where the Debian package puts the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    /// Class ids used by the tasks.
    public static let sandal: UInt8 = 5, sneaker: UInt8 = 7, bag: UInt8 = 8, ankleBoot: UInt8 = 9
    public static let shoeLabels: Set<UInt8> = [sandal, sneaker, ankleBoot]
    /// Folder names of the ten classes (`disco data fashion-mnist classes`), label first.
    public static let classNames = ["0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat",
                                    "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-ankle-boot"]

    /// One split: `count` images of `rows` x `cols` bytes (row-major, 0 black ... 255 white).
    public struct Split: Sendable {
        public let count: Int
        public let rows: Int
        public let cols: Int
        public let pixels: [UInt8]
        public let labels: [UInt8]

        /// Image `i` as a 1-channel `Image`.
        public func image(_ i: Int) -> Image {
            let n = rows * cols
            return Image(width: cols, height: rows, channels: 1, bytes: Array(pixels[(i * n)..<((i + 1) * n)]))
        }

        /// Indices of the images whose label is in `labels`, in file order.
        public func indices(labeled labels: Set<UInt8>) -> [Int] {
            self.labels.indices.filter { labels.contains(self.labels[$0]) }
        }
    }

    /// Reads split "train" or "t10k" from `directory` (`<split>-images-idx3-ubyte.gz` and
    /// `<split>-labels-idx1-ubyte.gz`).
    public static func load(split: String, directory: String = defaultDirectory) throws -> Split {
        let imagesPath = "\(directory)/\(split)-images-idx3-ubyte.gz"
        let labelsPath = "\(directory)/\(split)-labels-idx1-ubyte.gz"
        let images = try gunzip(imagesPath), labels = try gunzip(labelsPath)
        func be32(_ b: [UInt8], _ at: Int) -> Int { b.count < at + 4 ? -1 : Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3]) }
        guard be32(images, 0) == 0x0803, be32(labels, 0) == 0x0801 else {
            throw ImageError(path: imagesPath, kind: .corrupt, detail: "not an IDX image/label file pair (bad magic numbers); reinstall dataset-fashion-mnist")
        }
        let count = be32(images, 4), rows = be32(images, 8), cols = be32(images, 12)
        guard count >= 0, rows > 0, cols > 0, be32(labels, 4) == count,
              images.count == 16 + count * rows * cols, labels.count == 8 + count else {
            throw ImageError(path: imagesPath, kind: .corrupt, detail: "IDX sizes do not match the header; reinstall dataset-fashion-mnist")
        }
        return Split(count: count, rows: rows, cols: cols, pixels: Array(images[16...]), labels: Array(labels[8...]))
    }

    /// Installs `dataset-fashion-mnist` with apt-get when the files are missing from the default
    /// directory (sudo when not root). Throws with the command to run when that fails.
    public static func ensureInstalled(directory: String = defaultDirectory) throws {
        let needed = ["train", "t10k"].flatMap { ["\(directory)/\($0)-images-idx3-ubyte.gz", "\(directory)/\($0)-labels-idx1-ubyte.gz"] }
        if needed.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) { return }
        let advice = "install it with: sudo apt-get install dataset-fashion-mnist"
        guard directory == defaultDirectory else {
            throw ImageError(path: directory, kind: .unreadable, detail: "Fashion-MNIST IDX files not found here")
        }
        printWarning("Fashion-MNIST is missing; installing the Debian package dataset-fashion-mnist")
        let sudo = getuid() == 0 ? [] : ["sudo"]
        for args in [sudo + ["apt-get", "update", "-qq"], sudo + ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = args
            p.environment = ProcessInfo.processInfo.environment.merging(["DEBIAN_FRONTEND": "noninteractive"]) { $1 }
            do { try p.run() } catch { throw ImageError(path: directory, kind: .unreadable, detail: "cannot run apt-get (\(error)); \(advice)") }
            p.waitUntilExit()
            guard p.terminationStatus == 0 else {
                throw ImageError(path: directory, kind: .unreadable, detail: "`\(args.joined(separator: " "))` failed; \(advice)")
            }
        }
    }

    /// The decompressed bytes of a gzip file (through the system's gzip).
    static func gunzip(_ path: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ImageError(path: path, kind: .unreadable, detail: "file not found; install the Debian package dataset-fashion-mnist")
        }
        let p = Process(), pipe = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gzip", "-dc", path]
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { throw ImageError(path: path, kind: .unreadable, detail: "cannot run gzip: \(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ImageError(path: path, kind: .corrupt, detail: "gzip could not decompress it") }
        return [UInt8](data)
    }
}

/// Two-domain tasks built from Fashion-MNIST, in the CycleGAN layout.
public enum FashionMNISTTask: String, CaseIterable, Sendable {
    /// Bag (A) vs Sneaker + Sandal + Ankle boot (B): handbags-to-shoes in miniature.
    /// Train 6000 / 18000, test 1000 / 3000: every image of those classes.
    case bagsShoes = "bags-shoes"
    /// Edge maps of shoes (A) vs shoes (B). Train: the shoes are split in two halves
    /// (9000 + 9000, by a fixed shuffle), edges from one, photos from the other, so nothing
    /// pairs them. Test: all 3000 shoes, A and B paired by file name.
    case edgesShoes = "edges-shoes"
    /// The ten classes, labelled by folder (`train/<label>-<name>/`, `test/...`), for the GAN
    /// family (`disco gan`): one folder per class, as any labelled image folder is laid out.
    case classes
}

/// Writes `task` under `out` as `trainA/ trainB/ testA/ testB/` of 8-bit PNGs named
/// `00001.png`, `00002.png`... (in test, A/B pairs share the name), plus `dataset.json`
/// describing it. Images are upscaled from 28x28 to `size` x `size` (bicubic) and stored with
/// `channels` channels (1 = the data's own gray, 3 = gray replicated). An existing `out` is
/// replaced only if it is an earlier build (has `dataset.json`).
///
/// Returns the number of images written per folder.
@discardableResult
public func buildFashionMNIST(task: FashionMNISTTask, out: String, size: Int = 64, channels: Int = 1,
                              source: String = FashionMNIST.defaultDirectory,
                              log: (String) -> Void = { _ in }) throws -> [String: Int] {
    precondition(size >= 8 && (channels == 1 || channels == 3), "size must be >= 8 and channels 1 or 3")
    if task == .classes { return try buildFashionMNISTClasses(out: out, size: size, channels: channels, source: source, log: log) }
    let fm = FileManager.default
    let folders = ["trainA", "trainB", "testA", "testB"]
    if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
        guard existing.contains("dataset.json") else {
            throw ImageError(path: out, kind: .unwritable, detail: "folder exists and is not an earlier `disco data` build; choose another --out or empty it")
        }
        for f in folders + ["dataset.json"] { try? fm.removeItem(atPath: "\(out)/\(f)") }
    }
    if source == FashionMNIST.defaultDirectory { try FashionMNIST.ensureInstalled() }
    let train = try FashionMNIST.load(split: "train", directory: source)
    let test = try FashionMNIST.load(split: "t10k", directory: source)

    /// (folder, split, source index, as edge map) for every file, in output order.
    var jobs: [String: [(Int, Bool)]] = [:]
    var splitOf: [String: FashionMNIST.Split] = ["trainA": train, "trainB": train, "testA": test, "testB": test]
    let trainShoes = train.indices(labeled: FashionMNIST.shoeLabels)
    let testShoes = test.indices(labeled: FashionMNIST.shoeLabels)
    switch task {
    case .bagsShoes:
        jobs["trainA"] = train.indices(labeled: [FashionMNIST.bag]).map { ($0, false) }
        jobs["trainB"] = trainShoes.map { ($0, false) }
        jobs["testA"] = test.indices(labeled: [FashionMNIST.bag]).map { ($0, false) }
        jobs["testB"] = testShoes.map { ($0, false) }
    case .edgesShoes:
        let shuffled = epochPermutation(count: trainShoes.count, seed: 0, domain: 0, epoch: 0).map { trainShoes[$0] }
        let half = shuffled.count / 2
        jobs["trainA"] = shuffled[..<half].sorted().map { ($0, true) }
        jobs["trainB"] = shuffled[half...].sorted().map { ($0, false) }
        jobs["testA"] = testShoes.map { ($0, true) }
        jobs["testB"] = testShoes.map { ($0, false) }
    case .classes:
        preconditionFailure("classes is built by buildFashionMNISTClasses")
    }
    splitOf = splitOf.filter { jobs[$0.key] != nil }

    var counts: [String: Int] = [:]
    for folder in folders {
        let dir = "\(out)/\(folder)"
        do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw ImageError(path: dir, kind: .unwritable, detail: "cannot create folder: \(error.localizedDescription)")
        }
        let list = jobs[folder]!, split = splitOf[folder]!
        let failure = LockedError()
        // Two workers: PNG encoding dominates and the machine may be shared.
        let workers = 2
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for k in stride(from: w, to: list.count, by: workers) where !failure.isSet {
                let (index, edges) = list[k]
                var image = split.image(index).resized(width: size, height: size, filter: .bicubic)
                if edges { image = edgeMap(image) }
                do {
                    try encodePNG(image.converted(toChannels: channels), path: "\(dir)/\(String(format: "%05d", k + 1)).png")
                } catch { failure.set(error) }
            }
        }
        if let error = failure.error { throw error }
        counts[folder] = list.count
        log("\(dir): \(list.count) images")
    }
    let info: [String: Any] = [
        "source": "Fashion-MNIST (Debian dataset-fashion-mnist)", "task": task.rawValue, "size": size,
        "channels": channels, "counts": counts,
        "classes": task == .bagsShoes ? "A: Bag (8); B: Sandal (5), Sneaker (7), Ankle boot (9)"
            : "A: edge maps of shoes (5, 7, 9); B: shoes. Train halves disjoint; test paired by file name",
    ]
    let json = try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys])
    try writeFile([UInt8](json), path: "\(out)/dataset.json")
    return counts
}

/// `train/<label>-<name>/NNNNN.png` and `test/...` for all 70000 images, NNNNN being the image's
/// index in its split (1-based), 28x28 unless `size` says otherwise, plus `dataset.json`.
/// Replaces `out` only if it is an earlier build (has `dataset.json`).
@discardableResult
public func buildFashionMNISTClasses(out: String, size: Int = 28, channels: Int = 1,
                                     source: String = FashionMNIST.defaultDirectory,
                                     log: (String) -> Void = { _ in }) throws -> [String: Int] {
    let fm = FileManager.default
    if let existing = try? fm.contentsOfDirectory(atPath: out), !existing.isEmpty {
        guard existing.contains("dataset.json") else {
            throw ImageError(path: out, kind: .unwritable, detail: "folder exists and is not an earlier `disco data` build; choose another --out or empty it")
        }
        for f in ["train", "test", "dataset.json"] { try? fm.removeItem(atPath: "\(out)/\(f)") }
    }
    if source == FashionMNIST.defaultDirectory { try FashionMNIST.ensureInstalled() }
    var counts: [String: Int] = [:]
    for (folder, split) in [("train", "train"), ("test", "t10k")] {
        let data = try FashionMNIST.load(split: split, directory: source)
        for name in FashionMNIST.classNames {
            let dir = "\(out)/\(folder)/\(name)"
            do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw ImageError(path: dir, kind: .unwritable, detail: "cannot create folder: \(error.localizedDescription)")
            }
        }
        if let bad = data.labels.first(where: { Int($0) >= FashionMNIST.classNames.count }) {
            throw ImageError(path: source, kind: .corrupt, detail: "label \(bad) is not a Fashion-MNIST class (0-9); reinstall dataset-fashion-mnist")
        }
        let failure = LockedError()
        let workers = 2
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: data.count, by: workers) where !failure.isSet {
                var image = data.image(i)
                if size != image.width { image = image.resized(width: size, height: size, filter: .bicubic) }
                let path = "\(out)/\(folder)/\(FashionMNIST.classNames[Int(data.labels[i])])/\(String(format: "%05d", i + 1)).png"
                do { try encodePNG(image.converted(toChannels: channels), path: path) } catch { failure.set(error) }
            }
        }
        if let error = failure.error { throw error }
        counts[folder] = data.count
        log("\(out)/\(folder): \(data.count) images in \(FashionMNIST.classNames.count) class folders")
    }
    let info: [String: Any] = ["source": "Fashion-MNIST (Debian dataset-fashion-mnist)", "task": "classes", "size": size,
                               "channels": channels, "counts": counts, "classes": FashionMNIST.classNames]
    let json = try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys])
    try writeFile([UInt8](json), path: "\(out)/dataset.json")
    return counts
}

/// The first error reported by concurrent workers.
private final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
    var isSet: Bool { error != nil }
    func set(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
}

/// An edge map of a 1-channel image: thin dark lines (0) on white (1), like the pix2pix
/// edges2shoes data. Canny-style: 3x3 binomial blur, Sobel gradient, non-maximum suppression
/// along the gradient direction, hysteresis between 10% and 25% of the strongest gradient.
public func edgeMap(_ image: Image) -> Image {
    precondition(image.channels == 1, "edgeMap takes a 1-channel image")
    let w = image.width, h = image.height
    func at(_ p: [Float], _ x: Int, _ y: Int) -> Float { p[min(max(y, 0), h - 1) * w + min(max(x, 0), w - 1)] }
    var blurred = [Float](repeating: 0, count: w * h)
    for y in 0..<h {
        for x in 0..<w {
            var s: Float = 0
            for dy in -1...1 { for dx in -1...1 { s += Float((2 - abs(dx)) * (2 - abs(dy))) * at(image.pixels, x + dx, y + dy) } }
            blurred[y * w + x] = s / 16
        }
    }
    var magnitude = [Float](repeating: 0, count: w * h), gx = magnitude, gy = magnitude
    for y in 0..<h {
        for x in 0..<w {
            let p = blurred
            let sx = (at(p, x + 1, y - 1) + 2 * at(p, x + 1, y) + at(p, x + 1, y + 1)) - (at(p, x - 1, y - 1) + 2 * at(p, x - 1, y) + at(p, x - 1, y + 1))
            let sy = (at(p, x - 1, y + 1) + 2 * at(p, x, y + 1) + at(p, x + 1, y + 1)) - (at(p, x - 1, y - 1) + 2 * at(p, x, y - 1) + at(p, x + 1, y - 1))
            gx[y * w + x] = sx; gy[y * w + x] = sy
            magnitude[y * w + x] = (sx * sx + sy * sy).squareRoot()
        }
    }
    let strongest = magnitude.max() ?? 0
    var out = Image(width: w, height: h, channels: 1, value: 1)
    guard strongest > 0 else { return out }
    // Non-maximum suppression: keep a pixel only if its magnitude is a maximum across the edge.
    var thin = [Float](repeating: 0, count: w * h)
    for y in 0..<h {
        for x in 0..<w {
            let i = y * w + x, m = magnitude[i]
            if m == 0 { continue }
            let angle = atan2(gy[i], gx[i]) * 180 / Float.pi
            let a = angle < 0 ? angle + 180 : angle
            let (dx, dy): (Int, Int) = a < 22.5 || a >= 157.5 ? (1, 0) : a < 67.5 ? (1, 1) : a < 112.5 ? (0, 1) : (-1, 1)
            // Strict on one side: a step between two pixels of equal magnitude keeps one, not both.
            if m > at(magnitude, x + dx, y + dy) && m >= at(magnitude, x - dx, y - dy) { thin[i] = m }
        }
    }
    let high = 0.25 * strongest, low = 0.10 * strongest
    var isEdge = [Bool](repeating: false, count: w * h)
    var stack = (0..<(w * h)).filter { thin[$0] >= high }
    for i in stack { isEdge[i] = true }
    while let i = stack.popLast() {
        let x = i % w, y = i / w
        for dy in -1...1 {
            for dx in -1...1 {
                let nx = x + dx, ny = y + dy
                guard nx >= 0, nx < w, ny >= 0, ny < h else { continue }
                let j = ny * w + nx
                if !isEdge[j] && thin[j] >= low { isEdge[j] = true; stack.append(j) }
            }
        }
    }
    for i in 0..<(w * h) where isEdge[i] { out.pixels[i] = 0 }
    return out
}
