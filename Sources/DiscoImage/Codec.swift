import Foundation
import DiscoCore
import _CImageCodecs

/// The default limit on width x height of a decoded image: 100 megapixels.
public let defaultMaxPixels = 100_000_000

/// Files larger than this are refused before being read (no PNG/JPEG of 100 MP needs more).
let maxFileBytes = 1 << 30

/// Image file formats, recognised from the first bytes of a file, never from its name.
public enum ImageFormat: String, CaseIterable, Sendable {
    case png, jpeg

    /// The format whose signature starts `bytes`, or nil.
    public static func detect<C: Collection>(_ bytes: C) -> ImageFormat? where C.Element == UInt8 {
        let head = Array(bytes.prefix(8))
        if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if head.count >= 3, head[0] == 0xFF, head[1] == 0xD8, head[2] == 0xFF { return .jpeg }
        return nil
    }

    /// The format of the file at `path` from its first 8 bytes; nil if unreadable or neither.
    public static func detect(path: String) -> ImageFormat? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 8)
        let n = head.withUnsafeMutableBytes { buf -> Int in
            var n = 0
            while n < 8 {
                let r = read(fd, buf.baseAddress! + n, 8 - n)
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { break }
                n += r
            }
            return n
        }
        return detect(head.prefix(n))
    }
}

extension ImageFormat {
    /// The extensions written images may have (any case): the format follows the extension.
    public static let extensions = ["png", "jpg", "jpeg"]
    /// ".png, .jpg or .jpeg", for messages.
    public static let extensionList = ".png, .jpg or .jpeg"

    /// The extension of `path`'s last component (after its last dot, not a leading one), or ""
    /// when it has none. Plain string work: no Foundation path helper (some trap on odd names).
    public static func pathExtension(_ path: String) -> String {
        let name = path.split(separator: "/", omittingEmptySubsequences: true).last ?? ""
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
        return String(name[name.index(after: dot)...])
    }

    /// The format named by `path`'s extension: .png, or .jpg / .jpeg (any case); nil otherwise.
    public init?(extensionOf path: String) {
        switch ImageFormat.pathExtension(path).lowercased() {
        case "png": self = .png
        case "jpg", "jpeg": self = .jpeg
        default: return nil
        }
    }
}

/// Reads a whole regular file. Errors name the file.
func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        throw ImageError(path: path, kind: .unreadable, detail: "cannot open: \(String(cString: strerror(errno))); check the path and permissions")
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
        throw ImageError(path: path, kind: .unreadable, detail: "not a regular file")
    }
    let size = Int(st.st_size)
    guard size > 0 else { throw ImageError(path: path, kind: .empty, detail: "the file is empty (0 bytes); delete or replace it") }
    guard size <= maxFileBytes else {
        throw ImageError(path: path, kind: .tooLarge, detail: "the file is \(size) bytes, more than the \(maxFileBytes)-byte limit for an image")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    try bytes.withUnsafeMutableBytes { buf in
        while done < size {
            let n = read(fd, buf.baseAddress! + done, size - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw ImageError(path: path, kind: .unreadable, detail: "read failed after \(done) of \(size) bytes: \(n < 0 ? String(cString: strerror(errno)) : "end of file")")
            }
            done += n
        }
    }
    return bytes
}

/// Decodes the PNG or JPEG file at `path` (format from its bytes) to an image with values in
/// [0, 1] and the file's own channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
///
/// - Parameters:
///   - maxPixels: images whose header claims more than this many pixels are refused before
///     any pixel memory is allocated.
///   - minSide: a hint that the caller will shrink the image so its shorter side is `minSide`;
///     JPEGs are then decoded at 1/2, 1/4 or 1/8 size when that still leaves at least
///     `minSide` pixels on the shorter side (libjpeg DCT scaling). 0 = full size.
/// - Throws: `ImageError` naming the file: unreadable, empty, not PNG/JPEG, corrupt or
///   truncated, too large.
public func decodeImage(path: String, maxPixels: Int = defaultMaxPixels, minSide: Int = 0) throws -> Image {
    let bytes = try readFile(path)
    return try decodeImage(bytes: bytes, name: path, maxPixels: maxPixels, minSide: minSide)
}

/// Decodes PNG or JPEG bytes; `name` is used in error messages. See `decodeImage(path:)`.
public func decodeImage(bytes: [UInt8], name: String = "<memory>", maxPixels: Int = defaultMaxPixels,
                        minSide: Int = 0) throws -> Image {
    guard !bytes.isEmpty else { throw ImageError(path: name, kind: .empty, detail: "the file is empty (0 bytes); delete or replace it") }
    guard let format = ImageFormat.detect(bytes) else {
        throw ImageError(path: name, kind: .unknownFormat, detail: "not a PNG or JPEG file (unrecognised first bytes); convert it to PNG or JPEG")
    }
    var raw = dc_image()
    var message = [CChar](repeating: 0, count: Int(DC_MESSAGE_SIZE))
    let limit = UInt64(max(0, maxPixels))
    let code: Int32 = bytes.withUnsafeBufferPointer { buf in
        switch format {
        case .png: return dc_png_decode(buf.baseAddress, buf.count, limit, &raw, &message)
        case .jpeg: return dc_jpeg_decode(buf.baseAddress, buf.count, limit, Int32(max(0, minSide)), &raw, &message)
        }
    }
    defer { dc_free(raw.pixels) }
    let text = String(cString: message)
    switch Int(code) {
    case Int(DC_OK): break
    case Int(DC_ERR_TOO_LARGE):
        throw ImageError(path: name, kind: .tooLarge, detail: "\(text.isEmpty ? "image too large" : text); raise the pixel limit if this image is wanted")
    case Int(DC_ERR_NOMEM):
        throw ImageError(path: name, kind: .outOfMemory, detail: "out of memory while decoding \(format.rawValue.uppercased())\(text.isEmpty ? "" : ": " + text)")
    default:
        throw ImageError(path: name, kind: .corrupt, detail: "corrupt or truncated \(format.rawValue.uppercased()): \(text.isEmpty ? "decoding failed" : text)")
    }
    let count = Int(raw.width) * Int(raw.height) * Int(raw.channels)
    var pixels = [Float](repeating: 0, count: count)
    pixels.withUnsafeMutableBufferPointer { dst in
        if raw.bytes_per_sample == 2 {
            raw.pixels.withMemoryRebound(to: UInt16.self, capacity: count) { src in
                for i in 0..<count { dst[i] = Float(src[i]) * (1 / 65535) }
            }
        } else {
            let src = raw.pixels!
            byteToUnit.withUnsafeBufferPointer { unit in
                for i in 0..<count { dst[i] = unit[Int(src[i])] }
            }
        }
    }
    return Image(width: Int(raw.width), height: Int(raw.height), channels: Int(raw.channels), pixels: pixels)
}

/// How hard PNG encoding compresses.
public enum PNGCompression: Sendable {
    /// libpng's defaults (zlib level 6, the best of five filters per row): the smallest files.
    case standard
    /// zlib level 1 and the Paeth filter: several times faster, files a few percent larger
    /// (what `disco translate` writes: encoding would otherwise cost a fifth of its time).
    case fast
}

/// Encodes as 8-bit PNG with the image's own channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
public func encodePNG(_ image: Image, compression: PNGCompression = .standard) throws -> [UInt8] {
    try encode(image, name: "<png>") { pixels, out, size, message in
        dc_png_encode(pixels, Int32(image.width), Int32(image.height), Int32(image.channels),
                      compression == .fast ? 1 : 0, out, size, message)
    }
}

/// Encodes as baseline JPEG at `quality` 1...100: gray stays gray, anything else becomes RGB
/// (alpha composited on white).
public func encodeJPEG(_ image: Image, quality: Int = 90) throws -> [UInt8] {
    let flat = image.channels == 1 ? image : image.converted(toChannels: 3)
    return try encode(flat, name: "<jpeg>") { pixels, out, size, message in
        dc_jpeg_encode(pixels, Int32(flat.width), Int32(flat.height), Int32(flat.channels), Int32(quality), out, size, message)
    }
}

private func encode(_ image: Image, name: String,
                    _ body: (UnsafePointer<UInt8>, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
                             UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>) -> Int32) throws -> [UInt8] {
    let bytes = image.bytes()
    var out: UnsafeMutablePointer<UInt8>? = nil
    var size = 0
    var message = [CChar](repeating: 0, count: Int(DC_MESSAGE_SIZE))
    let code = bytes.withUnsafeBufferPointer { body($0.baseAddress!, &out, &size, &message) }
    defer { dc_free(out) }
    guard code == DC_OK, let out else {
        throw ImageError(path: name, kind: .unwritable, detail: "cannot encode: \(String(cString: message))")
    }
    return Array(UnsafeBufferPointer(start: out, count: size))
}

/// Writes `image` as PNG to `path` (8-bit, the image's own channels).
public func encodePNG(_ image: Image, path: String) throws {
    try writeFile(try encodePNG(image), path: path)
}

/// Writes `image` as JPEG to `path` at `quality` 1...100.
public func encodeJPEG(_ image: Image, path: String, quality: Int = 90) throws {
    try writeFile(try encodeJPEG(image, quality: quality), path: path)
}

/// Writes `image` in the format named by the extension of `path`: `.png`, `.jpg` or `.jpeg`
/// (case-insensitive).
public func saveImage(_ image: Image, path: String, jpegQuality: Int = 90) throws {
    try writeFile(try encodeImage(image, path: path, jpegQuality: jpegQuality), path: path)
}

/// The file bytes of `image` in the format named by the extension of `path`: `.png`, `.jpg` or
/// `.jpeg` (case-insensitive). Nothing is written.
public func encodeImage(_ image: Image, path: String, jpegQuality: Int = 90,
                        pngCompression: PNGCompression = .standard) throws -> [UInt8] {
    switch ImageFormat(extensionOf: path) {
    case .png: return try encodePNG(image, compression: pngCompression)
    case .jpeg: return try encodeJPEG(image, quality: jpegQuality)
    case nil:
        throw ImageError(path: path, kind: .unwritable, detail: "unknown image extension; use \(ImageFormat.extensionList)")
    }
}

/// Writes encoded image bytes to `path` (through a temporary file and a rename).
public func writeImageFile(_ bytes: [UInt8], path: String) throws {
    try writeFile(bytes, path: path)
}

/// Writes bytes to `path` through `FileWriter` (a temporary file in the same folder and a rename, so
/// readers never see half a file; no fsync: translating a folder writes thousands of small files).
func writeFile(_ bytes: [UInt8], path: String) throws {
    do { try FileWriter.write(bytes, to: path, durable: false) } catch let e as FileWriter.WriteError {
        throw ImageError(path: path, kind: .unwritable, detail: "cannot write: \(e.reason); check that the folder exists and is writable")
    }
}
