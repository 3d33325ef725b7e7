import Foundation
import DiscoCore
import DiscoImage

/// The images a GAN trains on, decoded once into memory: NHWC [N, 28, 28, 1] in [0, 1], gray.
///
/// A labelled folder has one subfolder per label (`disco data fashion-mnist classes` writes
/// `train/0-tshirt/`, ..., `train/9-ankle-boot/`): labels are the subfolders' names, sorted (byte
/// order), and an image's label is its folder's position in that list. A folder of images without
/// subfolders is unlabelled (it trains unconditional models only). Images of any size or colour are
/// converted to gray and resized to 28x28 (shorter side, centre crop), as the rest of disco loads them.
public struct LabelledImages {
    public let folder: String
    /// Label names (subfolder names, sorted); nil for a folder without label subfolders.
    public let classNames: [String]?
    /// [N, 28, 28, 1] in [0, 1], ordered by label, then by path.
    public let images: Tensor
    /// One label per image (empty for an unlabelled folder).
    public let labels: [Int]
    /// Files that did not decode (path, reason); they are left out.
    public let failures: [(String, String)]

    public var count: Int { images.shape[0] }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Scans and decodes `folder`. `option` names where the folder came from, for errors.
    public static func load(folder: String, option: String = "FOLDER") throws -> LabelledImages {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDir) else {
            throw Error("\(option) \(folder): not found; give a folder of images, or of one subfolder of images per label")
        }
        guard isDir.boolValue else { throw Error("\(option) \(folder): not a folder; give a folder of images, or of one subfolder of images per label") }
        let names = ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).filter { !$0.hasPrefix(".") }
        let subfolders = names.filter { n in
            var d: ObjCBool = false
            return fm.fileExists(atPath: folder + "/" + n, isDirectory: &d) && d.boolValue
        }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var groups: [(label: Int?, files: [String])] = []
        var classNames: [String]? = nil
        if subfolders.isEmpty {
            let scanned: ImageFolder
            do { scanned = try ImageFolder(path: folder) } catch { throw Error("\(option) \(folder): \(error)") }
            groups = [(nil, scanned.files)]
        } else {
            let loose = names.filter { !subfolders.contains($0) && ImageFormat.detect(path: folder + "/" + $0) != nil }
            if !loose.isEmpty {
                throw Error("\(option) \(folder): holds both label subfolders (\(subfolders.prefix(3).joined(separator: ", "))) and images (\(loose.sorted().prefix(2).joined(separator: ", "))); put every image in its label's subfolder, or give a folder of images only")
            }
            for (k, sub) in subfolders.enumerated() {
                let path = folder + "/" + sub
                let inner = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { n in
                    var d: ObjCBool = false
                    return !n.hasPrefix(".") && fm.fileExists(atPath: path + "/" + n, isDirectory: &d) && d.boolValue
                }
                if !inner.isEmpty {
                    throw Error("\(option) \(folder): label folder \(sub) has subfolders (\(inner.sorted().prefix(3).joined(separator: ", "))); give the folder whose subfolders are the labels (e.g. DIR/train, not DIR)")
                }
                let scanned: ImageFolder
                do { scanned = try ImageFolder(path: path) } catch { throw Error("\(option) \(folder): label folder \(sub): \(error)") }
                groups.append((k, scanned.files))
            }
            classNames = subfolders
        }
        let files = groups.flatMap { g in g.files.map { ($0, g.label) } }
        let s = GANConfig.imageSize, per = s * s
        let buffer = Tensor(uninitialized: [files.count, s, s, 1])
        var ok = [Bool](repeating: false, count: files.count)
        var reasons = [String?](repeating: nil, count: files.count)
        ok.withUnsafeMutableBufferPointer { okp in reasons.withUnsafeMutableBufferPointer { rp in
            let okb = okp.baseAddress!, rb = rp.baseAddress!
            Parallel.forRanges(files.count, grain: 256) { range in
                for i in range {
                    do {
                        let im = try loadSquareImage(path: files[i].0, size: s, channels: 1)
                        im.pixels.withUnsafeBufferPointer { (buffer.data + i * per).update(from: $0.baseAddress!, count: per) }
                        okb[i] = true
                    } catch { rb[i] = "\(error)" }
                }
            }
        } }
        let kept = ok.indices.filter { ok[$0] }
        guard !kept.isEmpty else { throw Error("\(option) \(folder): none of its \(files.count) image files decodes (first: \(reasons.compactMap { $0 }.first ?? "?"))") }
        // Every file decoded (the usual case): the buffer is the result, without a second copy.
        var images = buffer
        if kept.count < files.count {
            images = Tensor(uninitialized: [kept.count, s, s, 1])
            for (j, i) in kept.enumerated() { (images.data + j * per).update(from: buffer.data + i * per, count: per) }
        }
        if let names = classNames {
            for k in names.indices where !kept.contains(where: { files[$0].1 == k }) {
                throw Error("\(option) \(folder): label folder \(names[k]) has no image that decodes; remove it or add images")
            }
        }
        let failures = ok.indices.filter { !ok[$0] }.map { (files[$0].0, reasons[$0] ?? "") }
        return LabelledImages(folder: folder, classNames: classNames, images: images,
                              labels: classNames == nil ? [] : kept.map { files[$0].1! }, failures: failures)
    }

    /// Images `indices` as one batch [n, 28, 28, 1] and their labels (nil when unlabelled).
    public func batch(_ indices: ArraySlice<Int>) -> (images: Tensor, labels: [Int]?) {
        let per = images.count / max(count, 1)
        let t = Tensor(uninitialized: [indices.count] + Array(images.shape.dropFirst()))
        for (j, i) in indices.enumerated() { (t.data + j * per).update(from: images.data + i * per, count: per) }
        return (t, classNames == nil ? nil : indices.map { labels[$0] })
    }
}
