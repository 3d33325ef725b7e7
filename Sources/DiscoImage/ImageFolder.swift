import Foundation

/// One domain of training images: every PNG or JPEG under `path`, searched recursively.
/// Symbolic links to images and to folders are followed; loops are detected and reported.
///
/// Images are recognised by their first bytes, not their names; other files are skipped and
/// counted (`skippedWarning` is the one line to print about them). `files` is sorted by path
/// (byte order), so the order is the same on every machine.
public struct ImageFolder: Sendable {
    /// The folder as given.
    public let path: String
    /// The folder as an absolute path without a trailing slash: `files` are `root + "/" + name`.
    public let root: String
    /// Full paths of the PNG/JPEG files, sorted.
    public private(set) var files: [String]
    /// How many other regular files were skipped, and up to three of their paths.
    public let skippedCount: Int
    public let skippedExamples: [String]
    /// Folders reached through symbolic links that lead back to a folder being searched (a
    /// loop), sorted: each is reported (`linkLoopWarning`) and not followed.
    public let linkLoops: [String]
    /// Files and sub-folders that could not be opened (permissions), each with the system's reason,
    /// sorted: reported (`unreadableWarning`), not read.
    public let unreadable: [String]

    public var count: Int { files.count }

    /// The folder without its last `n` files, and those files: a held-out slice (`--keep-best`
    /// without test folders). n < count.
    public func holdingOut(_ n: Int) -> (kept: ImageFolder, heldOut: [String]) {
        precondition(n >= 0 && n < files.count, "holdingOut(\(n)) of \(files.count) files")
        var kept = self
        kept.files = Array(files.dropLast(n))
        return (kept, Array(files.suffix(n)))
    }

    /// The folder without `heldOut` (some of its files), and those files.
    public func holdingOut(files heldOut: [String]) -> (kept: ImageFolder, heldOut: [String]) {
        let set = Set(heldOut)
        precondition(set.isSubset(of: files) && set.count < files.count, "holdingOut \(set.count) of \(files.count) files")
        var kept = self
        kept.files = files.filter { !set.contains($0) }
        return (kept, heldOut)
    }

    /// Scans `path`. Throws `ImageError` naming the folder when it is missing or not a folder,
    /// when it holds no PNG/JPEG file, or when none of them decodes (each is tried in order
    /// until one succeeds, usually the first).
    public init(path: String, maxPixels: Int = defaultMaxPixels) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ImageError(path: path, kind: .unreadable, detail: "folder not found; give a folder of PNG or JPEG images (searched recursively)")
        }
        guard isDirectory.boolValue else {
            throw ImageError(path: path, kind: .unreadable, detail: "not a folder; give a folder of PNG or JPEG images (searched recursively)")
        }
        root = ImageFolder.absolute(path)
        var images: [String] = [], skipped: [String] = [], unreadable: [String] = []
        let walk = ImageFolder.walk(root)
        func byteOrder(_ x: String, _ y: String) -> Bool { x.utf8.lexicographicallyPrecedes(y.utf8) }
        linkLoops = walk.loops.sorted(by: byteOrder)
        for file in walk.files {
            if ImageFormat.detect(path: file) != nil { images.append(file); continue }
            // A file that cannot be opened is not "not an image": say why it is left out.
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            if fd < 0 { unreadable.append("\(file): \(String(cString: strerror(errno)))") } else { close(fd); skipped.append(file) }
        }
        self.unreadable = (unreadable + walk.unreadable).sorted(by: byteOrder)
        images.sort(by: byteOrder)
        skipped.sort(by: byteOrder)
        files = images
        skippedCount = skipped.count
        skippedExamples = Array(skipped.prefix(3))
        guard !images.isEmpty else {
            if !self.unreadable.isEmpty {
                throw ImageError(path: path, kind: .unreadable,
                                 detail: "no readable PNG or JPEG images: \(self.unreadable.count) file(s) or folder(s) cannot be opened (\(self.unreadable[0])); make them readable")
            }
            throw ImageError(path: path, kind: .unknownFormat,
                             detail: "no PNG or JPEG images found (\(skipped.count) other files); put the domain's images in this folder")
        }
        var firstError: Error?
        for file in images {
            do { _ = try decodeImage(path: file, maxPixels: maxPixels, minSide: 1); return } catch { firstError = firstError ?? error }
        }
        throw ImageError(path: path, kind: .corrupt,
                         detail: "none of the \(images.count) PNG/JPEG files decodes (first: \(firstError!)); replace them with valid images")
    }

    /// `path` made absolute (against the working folder), trailing slashes removed.
    static func absolute(_ path: String) -> String {
        var p = path
        if !p.hasPrefix("/") {
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let cwd = getcwd(&buf, buf.count).map { String(cString: $0) } ?? "."
            p = p.isEmpty || p == "." ? cwd : (cwd == "/" ? "" : cwd) + "/" + p
        }
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// A directory's identity: a loop is a path that reaches a directory already on it.
    private struct DirectoryID: Hashable { let device: UInt64, inode: UInt64 }

    /// Regular files below `root`, recursively, as `root + "/" + relative path`, in no particular
    /// order, and the paths of folders not followed because they would loop.
    ///
    /// Symbolic links are followed: to a regular file, it is listed under the link's path; to a
    /// folder, the folder is walked under the link's path, unless it is one of the folders on the
    /// way down to it (same device and inode), which would loop: such paths go to `loops`, as do
    /// real folders met again by way of a link (a link to the root's parent). A folder reached by
    /// two routes that do not loop is walked on each (as `find -L` does). Dangling links and links
    /// to anything but files and folders are passed over; folders that cannot be opened too, but
    /// listed in `unreadable` with the reason.
    /// Plain readdir: Foundation's enumerator also reads each file's owner (/etc/passwd and
    /// /etc/group, once per file) and extended attributes, which dominated listing big folders.
    static func walk(_ root: String) -> (files: [String], loops: [String], unreadable: [String]) {
        func id(_ st: stat) -> DirectoryID { DirectoryID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) }
        var out: [String] = [], loops: [String] = [], unreadable: [String] = []
        var st = stat()
        guard stat(root, &st) == 0 else { return ([], [], []) }
        // Each pending folder with the folders on the way down to it (itself included).
        var pending: [(dir: String, path: Set<DirectoryID>)] = [(root, [id(st)])]
        while let (dir, ancestors) = pending.popLast() {
            guard let d = opendir(dir) else {
                unreadable.append("\(dir): \(String(cString: strerror(errno)))")
                continue
            }
            defer { closedir(d) }
            let prefix = dir == "/" ? "/" : dir + "/"
            while let entry = readdir(d) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                }
                if name == "." || name == ".." { continue }
                let full = prefix + name
                let type = Int32(entry.pointee.d_type)
                if type == Int32(DT_REG) { out.append(full); continue }
                guard type == Int32(DT_DIR) || type == Int32(DT_LNK) || type == Int32(DT_UNKNOWN) else { continue }
                // Folders and links (and unknown types) need their target's identity: stat follows links.
                guard stat(full, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFREG: out.append(full)
                case S_IFDIR:
                    let folder = id(st)
                    if ancestors.contains(folder) { loops.append(full); continue }
                    var below = ancestors
                    below.insert(folder)
                    pending.append((full, below))
                default: continue
                }
            }
        }
        return (out, loops, unreadable)
    }

    /// Every warning about this folder: skipped non-image files, link loops.
    public var warnings: [String] { [skippedWarning, unreadableWarning, linkLoopWarning].compactMap { $0 } }

    /// One line about files and folders that could not be opened, or nil when there were none.
    public var unreadableWarning: String? {
        guard !unreadable.isEmpty else { return nil }
        let prefix = root == "/" ? "/" : root + "/", n = unreadable.count
        let shown = unreadable.prefix(3).map { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : $0 }
        return "warning: \(path): skipped \(n) file\(n == 1 ? "" : "s") or folder\(n == 1 ? "" : "s") that cannot be opened (\(shown.joined(separator: "; "))\(n > 3 ? "; ..." : "")); make them readable to use them"
    }

    /// One line about folders not followed because they loop, or nil when there were none.
    public var linkLoopWarning: String? {
        guard !linkLoops.isEmpty else { return nil }
        let prefix = root == "/" ? "/" : root + "/"
        let names = linkLoops.prefix(3).map { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : $0 }
        let n = linkLoops.count
        return "warning: \(path): \(n) folder\(n == 1 ? "" : "s") reached through symbolic links lead\(n == 1 ? "s" : "") back to a folder being searched (a loop), not followed: \(names.joined(separator: ", "))\(n > 3 ? ", ..." : "")"
    }

    /// One line about skipped non-image files, or nil when there were none.
    public var skippedWarning: String? {
        guard skippedCount > 0 else { return nil }
        let examples = skippedExamples.map { ($0 as NSString).lastPathComponent }.joined(separator: ", ")
        return "warning: \(path): skipped \(skippedCount) file\(skippedCount == 1 ? "" : "s") that \(skippedCount == 1 ? "is" : "are") not PNG or JPEG (e.g. \(examples))"
    }
}

/// The folders of the two domains of a run, and their test folders when present.
public struct DomainPaths: Equatable, Sendable {
    public var a: String
    public var b: String
    public var testA: String?
    public var testB: String?
}

/// Resolves the data arguments of `disco train`: either two folders `DIR_A DIR_B`, or one
/// folder in the CycleGAN layout holding `trainA` and `trainB` (and optionally `testA`,
/// `testB`). Throws `ImageError` saying which layout was expected and what is missing.
public func resolveDomains(paths: [String]) throws -> DomainPaths {
    func isFolder(_ p: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &d) && d.boolValue
    }
    switch paths.count {
    case 2:
        for p in paths where !isFolder(p) {
            throw ImageError(path: p, kind: .unreadable, detail: "folder not found; give two folders of images (domain A, domain B)")
        }
        return DomainPaths(a: paths[0], b: paths[1], testA: nil, testB: nil)
    case 1:
        let root = paths[0]
        guard isFolder(root) else {
            throw ImageError(path: root, kind: .unreadable, detail: "folder not found; give DIR with trainA/ and trainB/, or two folders DIR_A DIR_B")
        }
        let sub = { (name: String) in (root as NSString).appendingPathComponent(name) }
        for name in ["trainA", "trainB"] where !isFolder(sub(name)) {
            throw ImageError(path: root, kind: .unreadable,
                             detail: "no \(name)/ folder; a single data folder must use the CycleGAN layout (trainA/, trainB/, optional testA/, testB/), or give two folders DIR_A DIR_B")
        }
        return DomainPaths(a: sub("trainA"), b: sub("trainB"),
                           testA: isFolder(sub("testA")) ? sub("testA") : nil,
                           testB: isFolder(sub("testB")) ? sub("testB") : nil)
    default:
        throw ImageError(path: paths.joined(separator: " "), kind: .unreadable,
                         detail: "expected one folder (CycleGAN layout: trainA/, trainB/) or two folders (DIR_A DIR_B), got \(paths.count)")
    }
}

/// Loads an image as the model sees it: `channels` (1 or 3) channels, the shorter side
/// scaled to `size` (antialiased), the centre `size` x `size` cropped, values in [0, 1].
public func loadSquareImage(path: String, size: Int, channels: Int, maxPixels: Int = defaultMaxPixels,
                            filter: ResizeFilter = .bicubic) throws -> Image {
    // Large images arrive reduced (see `decodeImage`); the resize then follows the stored
    // image's geometry, as it would from the full image.
    var scaled = try decodeScaled(path: path, maxPixels: maxPixels, minSide: size)
    // Composite alpha and drop channels before resizing (less work, and alpha is applied
    // to the original pixels); add channels after resizing.
    if scaled.image.hasAlpha || channels < scaled.image.channels {
        scaled.image = scaled.image.converted(toChannels: channels)
        return scaled.image.squared(size: size, filter: filter, source: (scaled.sourceWidth, scaled.sourceHeight), extent: scaled.extent)
    }
    return scaled.image.squared(size: size, filter: filter, source: (scaled.sourceWidth, scaled.sourceHeight), extent: scaled.extent)
        .converted(toChannels: channels)
}
