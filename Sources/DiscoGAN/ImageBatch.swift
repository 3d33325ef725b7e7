import Foundation
import DiscoCore
import DiscoImage

// Images to and from the tensors the networks take: batches decoded as the model sees them
// (NHWC, values in [0, 1]), and pixels encoded and written (through FileWriter) in the format
// their path's extension names. Used by translate, eval, training's samples and the benches.

/// Image files below a folder (recognised by content), as paths relative to it, in a stable order.
public func listImageFiles(folder: String, option: String = "input") throws -> [String] {
    let scanned: ImageFolder
    do { scanned = try ImageFolder(path: folder) } catch { throw DiscoError("\(option) \(folder): \(error)") }
    // Files left out (not PNG or JPEG inside, unreadable, link loops) are said, once each kind.
    for w in scanned.warnings { FileWriter.printError("disco: " + w) }
    let prefix = scanned.root == "/" ? "/" : scanned.root + "/"
    return scanned.files.map { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : ($0 as NSString).lastPathComponent }
}

/// Decodes images as the model sees them into one NHWC tensor; unreadable files are reported, not fatal.
/// `originalSizes` (width, height) are read only when asked for (`--keep-size`), from the headers.
public func loadBatch(_ paths: [String], size: Int, channels: Int, originalSizes needSizes: Bool = false)
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
public func writePixels(_ pixels: [Float], _ width: Int, _ height: Int, _ channels: Int, _ path: String) throws {
    try writePixels(pixels, width, height, channels, path, resizeTo: nil, quality: 95)
}

public func writePixels(_ pixels: [Float], _ width: Int, _ height: Int, _ channels: Int, _ path: String,
                 resizeTo: (Int, Int)?, quality: Int) throws {
    let bytes = try encodePixels(pixels, width, height, channels, format: path, resizeTo: resizeTo, quality: quality)
    do { try writeImageFile(bytes, path: path) } catch { throw DiscoError("cannot write \(path): \(error)") }
}

/// HWC pixels in [0, 1] (clamped) as the bytes of an image file in the format of `format`'s
/// extension (a path or a name: .png, .jpg, .jpeg), optionally resized first.
public func encodePixels(_ pixels: [Float], _ width: Int, _ height: Int, _ channels: Int, format: String,
                  resizeTo: (Int, Int)?, quality: Int, pngCompression: PNGCompression = .standard) throws -> [UInt8] {
    var image = Image(width: width, height: height, channels: channels, pixels: pixels.map { min(max($0, 0), 1) })
    if let (w, h) = resizeTo, w != width || h != height { image = image.resized(width: w, height: h) }
    do { return try encodeImage(image, path: format, jpegQuality: quality, pngCompression: pngCompression) }
    catch { throw DiscoError("cannot write \(format): \(error)") }
}

/// `path` absolute, with "." and ".." and symbolic links resolved (as far as it exists): two
/// spellings of one file compare equal.
public func canonicalPath(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
}

/// The folder part of `path` (before its last "/", trailing slashes ignored): "" for a bare name,
/// "/" for a file at the root. (NSString's deletingLastPathComponent traps on one-character names.)
public func parentFolder(_ path: String) -> String {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    guard let slash = p.lastIndex(of: "/") else { return "" }
    if slash == p.startIndex { return "/" }
    var parent = p[..<slash]
    while parent.count > 1 && parent.hasSuffix("/") { parent.removeLast() }
    return String(parent)
}
