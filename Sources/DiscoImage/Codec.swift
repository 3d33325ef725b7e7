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

/// Opens a regular, non-empty file of at most `maxFileBytes` for reading. Errors name the file.
func openImageFile(_ path: String) throws -> (fd: Int32, size: Int) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        throw ImageError(path: path, kind: .unreadable, detail: "cannot open: \(String(cString: strerror(errno))); check the path and permissions")
    }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
        close(fd)
        throw ImageError(path: path, kind: .unreadable, detail: "not a regular file")
    }
    let size = Int(st.st_size)
    guard size > 0 else {
        close(fd)
        throw ImageError(path: path, kind: .empty, detail: "the file is empty (0 bytes); delete or replace it")
    }
    guard size <= maxFileBytes else {
        close(fd)
        throw ImageError(path: path, kind: .tooLarge, detail: "the file is \(size) bytes, more than the \(maxFileBytes)-byte limit for an image")
    }
    return (fd, size)
}

/// Decodes the PNG or JPEG file at `path` (format from its bytes) to an image with values in
/// [0, 1] and the file's own channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). The file is read
/// as it is decoded, never held whole in memory.
///
/// - Parameters:
///   - maxPixels: images whose header claims more than this many pixels are refused before
///     any pixel memory is allocated.
///   - minSide: a hint that the caller will shrink the image so its shorter side is `minSide`
///     (0 = full size). JPEGs are then decoded at 1/2, 1/4 or 1/8 size when that still leaves
///     at least `minSide` pixels on the shorter side (libjpeg DCT scaling); and an image whose
///     shorter side is still 6 x `minSide` or more is reduced while it is decoded, by an integer
///     factor k that leaves at least 3 x `minSide` (each pixel the mean of a k x k block,
///     alpha-weighted), so memory stays a few rows plus the reduced image however large the file.
///     The caller's resize of the result matches a resize of the full image to within 1.5/255.
/// - Throws: `ImageError` naming the file: unreadable, empty, not PNG/JPEG, corrupt or
///   truncated, too large.
public func decodeImage(path: String, maxPixels: Int = defaultMaxPixels, minSide: Int = 0) throws -> Image {
    try decodeScaled(path: path, maxPixels: maxPixels, minSide: minSide).image
}

/// A decoded image that may be smaller than the stored one: it covers `extent` of its own
/// pixels (the stored size over the pitch; its last row and column may be partial).
struct ScaledImage {
    var image: Image
    let sourceWidth: Int, sourceHeight: Int
    /// Stored pixels per decoded pixel along each axis.
    let pitch: Int
    var extent: (width: Double, height: Double) { (Double(sourceWidth) / Double(pitch), Double(sourceHeight) / Double(pitch)) }
}

/// `decodeImage(path:maxPixels:minSide:)` with the geometry of the result.
func decodeScaled(path: String, maxPixels: Int = defaultMaxPixels, minSide: Int = 0) throws -> ScaledImage {
    let (fd, size) = try openImageFile(path)
    defer { close(fd) }
    var input = dc_input(data: nil, size: size, fd: fd)
    return try decode(&input, format: ImageFormat.detect(path: path), name: path, maxPixels: maxPixels, minSide: minSide)
}

/// Decodes PNG or JPEG bytes; `name` is used in error messages. See `decodeImage(path:)`.
public func decodeImage(bytes: [UInt8], name: String = "<memory>", maxPixels: Int = defaultMaxPixels,
                        minSide: Int = 0) throws -> Image {
    guard !bytes.isEmpty else { throw ImageError(path: name, kind: .empty, detail: "the file is empty (0 bytes); delete or replace it") }
    return try bytes.withUnsafeBufferPointer { buf in
        var input = dc_input(data: buf.baseAddress, size: buf.count, fd: -1)
        return try decode(&input, format: ImageFormat.detect(bytes), name: name, maxPixels: maxPixels, minSide: minSide).image
    }
}

/// The width and height of the PNG or JPEG file at `path`, from its header alone.
public func imageSize(path: String, maxPixels: Int = defaultMaxPixels) throws -> (width: Int, height: Int) {
    let (fd, size) = try openImageFile(path)
    defer { close(fd) }
    var input = dc_input(data: nil, size: size, fd: fd)
    let raw = try decodeRaw(&input, format: ImageFormat.detect(path: path), name: path, maxPixels: maxPixels, minSide: 0, headerOnly: true)
    return (Int(raw.width), Int(raw.height))
}

private func decode(_ input: inout dc_input, format: ImageFormat?, name: String, maxPixels: Int, minSide: Int) throws -> ScaledImage {
    let raw = try decodeRaw(&input, format: format, name: name, maxPixels: maxPixels, minSide: minSide, headerOnly: false)
    defer { dc_free(raw.pixels) }
    let count = Int(raw.width) * Int(raw.height) * Int(raw.channels)
    var pixels = [Float](repeating: 0, count: count)
    pixels.withUnsafeMutableBufferPointer { dst in
        switch raw.bytes_per_sample {
        case 4:
            raw.pixels.withMemoryRebound(to: Float.self, capacity: count) { dst.baseAddress!.update(from: $0, count: count) }
        case 2:
            raw.pixels.withMemoryRebound(to: UInt16.self, capacity: count) { src in
                for i in 0..<count { dst[i] = Float(src[i]) * (1 / 65535) }
            }
        default:
            let src = raw.pixels!
            byteToUnit.withUnsafeBufferPointer { unit in
                for i in 0..<count { dst[i] = unit[Int(src[i])] }
            }
        }
    }
    return ScaledImage(image: Image(width: Int(raw.width), height: Int(raw.height), channels: Int(raw.channels), pixels: pixels),
                       sourceWidth: Int(raw.source_width), sourceHeight: Int(raw.source_height), pitch: max(1, Int(raw.pitch)))
}

/// Runs the C decoder; the caller frees `pixels` with dc_free.
private func decodeRaw(_ input: inout dc_input, format: ImageFormat?, name: String, maxPixels: Int, minSide: Int,
                       headerOnly: Bool) throws -> dc_image {
    guard let format else {
        throw ImageError(path: name, kind: .unknownFormat, detail: "not a PNG or JPEG file (unrecognised first bytes); convert it to PNG or JPEG")
    }
    var raw = dc_image()
    var message = [CChar](repeating: 0, count: Int(DC_MESSAGE_SIZE))
    var options = dc_decode_options(max_pixels: UInt64(max(0, maxPixels)), min_side: Int32(clamping: max(0, minSide)),
                                    header_only: headerOnly ? 1 : 0)
    let code: Int32
    switch format {
    case .png: code = dc_png_decode(&input, &options, &raw, &message)
    case .jpeg: code = dc_jpeg_decode(&input, &options, &raw, &message)
    }
    let text = String(cString: message)
    switch Int(code) {
    case Int(DC_OK): return raw
    case Int(DC_ERR_TOO_LARGE):
        throw ImageError(path: name, kind: .tooLarge, detail: "\(text.isEmpty ? "image too large" : text); raise the pixel limit if this image is wanted")
    case Int(DC_ERR_NOMEM):
        throw ImageError(path: name, kind: .outOfMemory, detail: "out of memory while decoding \(format.rawValue.uppercased())\(text.isEmpty ? "" : ": " + text)")
    case Int(DC_ERR_READ):
        throw ImageError(path: name, kind: .unreadable, detail: "\(text.isEmpty ? "read failed" : text); check the file and the disk")
    default:
        throw ImageError(path: name, kind: .corrupt, detail: "corrupt or truncated \(format.rawValue.uppercased()): \(text.isEmpty ? "decoding failed" : text)")
    }
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
