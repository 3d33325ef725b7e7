import Foundation
import DiscoCore
import DiscoImage

/// 28x28 gray images with optional class labels, as the GAN evaluation (and its classifier) reads
/// them: strict, so a file that does not decode stops the evaluation instead of changing what is
/// scored.
///
/// A labelled folder is laid out as `disco data fashion-mnist classes` writes it: DIR/<class>/*.png,
/// one subfolder per class; the class names are the subfolder names sorted (byte order), and an
/// image's label is its folder's position in that list (0-tshirt ... 9-ankle-boot -> 0 ... 9).
/// Images are read as 1 channel, 28x28 (other sizes are scaled and centre-cropped as everywhere in
/// disco), values in [0, 1].
public struct EvalImages {
    public static let side = 28
    /// Class names, sorted; empty for an unlabelled set.
    public let classNames: [String]
    /// NHWC [N, 28, 28, 1] in [0, 1].
    public let images: Tensor
    /// One label per image (index into `classNames`), nil for an unlabelled set.
    public let labels: [Int]?
    public var count: Int { images.shape[0] }

    public init(classNames: [String], images: Tensor, labels: [Int]?) {
        precondition(images.shape.count == 4 && images.shape.dropFirst() == [Self.side, Self.side, 1],
                     "EvalImages: images \(images.shape), expected [N, 28, 28, 1]")
        if let labels {
            precondition(labels.count == images.shape[0] && labels.allSatisfy { $0 >= 0 && $0 < classNames.count },
                         "EvalImages: \(labels.count) labels in 0..<\(classNames.count) for \(images.shape[0]) images")
        }
        self.classNames = classNames; self.images = images; self.labels = labels
    }

    /// The images (and labels) at `indices`, in that order.
    public func subset(_ indices: [Int]) -> EvalImages {
        let per = Self.side * Self.side
        let out = Tensor(uninitialized: [indices.count, Self.side, Self.side, 1])
        for (k, i) in indices.enumerated() { (out.data + k * per).update(from: images.data + i * per, count: per) }
        return EvalImages(classNames: classNames, images: out, labels: labels.map { l in indices.map { l[$0] } })
    }

    /// The class subfolders of `dir` (sorted by name), or [] when it has none. Hidden entries are
    /// ignored; symbolic links to folders count as folders.
    public static func classFolders(_ dir: String, option: String = "") throws -> [String] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        let what = option.isEmpty ? "" : option + ": "
        guard fm.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw ImageError(path: dir, kind: .unreadable, detail: what + "folder not found")
        }
        guard isDir.boolValue else { throw ImageError(path: dir, kind: .unreadable, detail: what + "not a folder") }
        let entries = try fm.contentsOfDirectory(atPath: dir)
        return entries.filter { name in
            var d: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: dir + "/" + name, isDirectory: &d) && d.boolValue
        }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Reads DIR/<class>/* (see the type's comment). `option` names the command-line option in
    /// errors. Throws naming the folder when it has no class subfolders or one holds no image, and
    /// naming the file when an image cannot be decoded.
    public static func load(labelledFolder dir: String, option: String) throws -> EvalImages {
        let classes = try classFolders(dir, option: option)
        guard !classes.isEmpty else {
            throw ImageError(path: dir, kind: .unreadable, detail: "\(option): no class subfolders; expected \(dir)/<label>-<name>/*.png, as `disco data fashion-mnist classes --out DIR` writes (DIR/train, DIR/test)")
        }
        var files: [String] = [], labels: [Int] = []
        for (k, name) in classes.enumerated() {
            let folder = try wrap(option) { try ImageFolder(path: dir + "/" + name) }
            files += folder.files
            labels += [Int](repeating: k, count: folder.count)
        }
        return EvalImages(classNames: classes, images: try wrap(option) { try decode(files) }, labels: labels)
    }

    /// Reads every image under `dir` (searched recursively), unlabelled.
    public static func load(unlabelledFolder dir: String, option: String) throws -> EvalImages {
        let folder = try wrap(option) { try ImageFolder(path: dir) }
        return EvalImages(classNames: [], images: try wrap(option) { try decode(folder.files) }, labels: nil)
    }

    /// Decodes `paths` into [N, 28, 28, 1], on disco's worker threads.
    static func decode(_ paths: [String]) throws -> Tensor {
        let per = side * side
        let out = Tensor(uninitialized: [paths.count, side, side, 1])
        let lock = NSLock()
        var failure: (path: String, error: Error)?
        let workers = max(1, min(Parallel.threads, paths.count))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: paths.count, by: workers) {
                do {
                    let image = try loadSquareImage(path: paths[i], size: side, channels: 1)
                    image.pixels.withUnsafeBufferPointer { (out.data + i * per).update(from: $0.baseAddress!, count: per) }
                } catch {
                    lock.lock(); if failure == nil { failure = (paths[i], error) }; lock.unlock()
                    return
                }
            }
        }
        if let failure {
            let e = failure.error as? ImageError
            throw ImageError(path: e?.path ?? failure.path, kind: e?.kind ?? .corrupt,
                             detail: (e?.detail ?? "\(failure.error)") + "; remove or replace this image")
        }
        return out
    }

    private static func wrap<T>(_ option: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ImageError where !e.detail.hasPrefix(option) {
            throw ImageError(path: e.path, kind: e.kind, detail: "\(option): \(e.detail)")
        }
    }
}
