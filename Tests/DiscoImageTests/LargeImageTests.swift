import Foundation
import XCTest
@testable import DiscoImage
import _CImageCodecs

/// Decoding big images in bounded memory: a file is read as it is decoded, and an image much
/// larger than the size it is wanted at is reduced (box filter over k x k blocks) as its rows
/// arrive. A 16-bit 10000x10000 RGB PNG used to take 2.4 GB to decode for a 32x32 model.
final class LargeImageTests: XCTestCase {
    /// `disco translate` of a 16-bit 2400x1800 RGB PNG (26 MB of samples) peaks at no more than
    /// that of a 48x36 one plus a quarter of those samples (it used to take four times them more).
    func testLargePNGTranslatesInBoundedMemory() throws {
        let dir = try temporaryFolder(self)
        let (w, h) = (2400, 1800)
        try writeTestPNG(path: "\(dir)/big.png", width: w, height: h, channels: 3, bitDepth: 16) { x, y, c in texture(x, y, c, 65535) }
        try writeTestPNG(path: "\(dir)/small.png", width: 48, height: 36, channels: 3, bitDepth: 16) { x, y, c in texture(x, y, c, 65535) }
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("checkpoints/default/model.safetensors").path
        let small = try peakRSS(disco, ["translate", "\(dir)/small.png", "-o", "\(dir)/s.png", "--checkpoint", model])
        let big = try peakRSS(disco, ["translate", "\(dir)/big.png", "-o", "\(dir)/b.png", "--checkpoint", model])
        let samples = w * h * 3 * 2
        XCTAssertLessThanOrEqual(big, small + samples / 4,
                                 "peak RSS \(big >> 20) MB for \(w)x\(h) RGB16 (\(samples >> 20) MB of samples), \(small >> 20) MB for 48x36")
        let out = try decodeImage(path: "\(dir)/b.png")
        XCTAssertEqual([out.width, out.height, out.channels], [32, 32, 1])
    }

    /// The reduced decode (`minSide`) against a full decode then the same resize, on 8- and 16-bit,
    /// gray, gray+alpha, RGB and RGBA PNGs (Adam7 interlaced too, odd sizes) and a JPEG (whose
    /// DCT scaling comes first). Tolerance: 4/255 for any pixel, 1/255 on average, on a texture
    /// harsher than photographs (2-pixel checkers, sawtooth alpha with hard edges) whose detail
    /// beyond the output's resolution the two paths alias differently (measured: at most
    /// 3.5/255 and 0.73/255; the reduction itself equals a k x k mean of the full decode to
    /// float rounding, checked below).
    func testReducedDecodeMatchesDecodeThenResize() throws {
        let dir = try temporaryFolder(self)
        struct Case { let name: String, width: Int, height: Int, channels: Int, depth: Int, interlaced: Bool }
        let cases = [
            Case(name: "rgb16", width: 600, height: 450, channels: 3, depth: 16, interlaced: false),
            Case(name: "gray-alpha8-adam7", width: 500, height: 701, channels: 2, depth: 8, interlaced: true),
            Case(name: "rgba16-adam7", width: 301, height: 517, channels: 4, depth: 16, interlaced: true),
            Case(name: "gray8", width: 397, height: 211, channels: 1, depth: 8, interlaced: false),
        ]
        var files: [(path: String, width: Int, height: Int)] = []
        for c in cases {
            let path = "\(dir)/\(c.name).png"
            let top = (1 << c.depth) - 1
            try writeTestPNG(path: path, width: c.width, height: c.height, channels: c.channels, bitDepth: c.depth,
                             interlaced: c.interlaced) { x, y, ch in
                // Alpha: opaque, transparent and partial regions.
                ch == c.channels - 1 && (c.channels == 2 || c.channels == 4) ? alphaPattern(x, y, top) : texture(x, y, ch, top)
            }
            files.append((path, c.width, c.height))
        }
        var rgb = Image(width: 1600, height: 1200, channels: 3, value: 0)
        for y in 0..<1200 { for x in 0..<1600 { for c in 0..<3 { rgb[x, y, c] = Float(texture(x, y, c, 255)) / 255 } } }
        try encodeJPEG(rgb, path: "\(dir)/big.jpg", quality: 95)
        files.append(("\(dir)/big.jpg", 1600, 1200))

        for (path, width, height) in files {
            for (size, channels) in [(16, 3), (32, 1), (64, 3)] {
                // The shorter side is reduced by k = floor(shorter / (3 * size)) when k >= 2.
                let isJPEG = path.hasSuffix(".jpg")
                let raw = try decodeImage(path: path, minSide: size)
                let scaled = isJPEG ? [8, 4, 2, 1].first { min(width, height) / $0 >= size }! : 1
                let (sw, sh) = ((width + scaled - 1) / scaled, (height + scaled - 1) / scaled)
                let k = min(sw, sh) / (3 * size)
                let want = k >= 2 ? [(sw + k - 1) / k, (sh + k - 1) / k] : [sw, sh]
                XCTAssertEqual([raw.width, raw.height], want, "\(path) at \(size)")

                let got = try loadSquareImage(path: path, size: size, channels: channels)
                let full = try decodeImage(path: path)
                let reference = full.hasAlpha || channels < full.channels
                    ? full.converted(toChannels: channels).squared(size: size)
                    : full.squared(size: size).converted(toChannels: channels)
                XCTAssertEqual([got.width, got.height, got.channels], [size, size, channels])
                if k >= 2 && !isJPEG { try checkBlockMeans(raw, full, k: k, path: path) }
                let diffs = zip(got.pixels, reference.pixels).map { abs($0 - $1) }
                let worst = diffs.max()!, mean = diffs.reduce(0, +) / Float(diffs.count)
                XCTAssertLessThanOrEqual(worst, 4 / 255, "\(path) at \(size)x\(channels): max |diff| \(worst * 255)/255")
                XCTAssertLessThanOrEqual(mean, 1 / 255, "\(path) at \(size)x\(channels): mean |diff| \(mean * 255)/255")
            }
        }
    }

    /// A large file cut short fails while being reduced (PNG rows, Adam7 passes, JPEG scanlines),
    /// with an error naming it and nothing leaked.
    func testTruncatedLargeImagesFailCleanly() throws {
        let dir = try temporaryFolder(self)
        try writeTestPNG(path: "\(dir)/a.png", width: 400, height: 300, channels: 3, bitDepth: 16) { x, y, c in texture(x, y, c, 65535) }
        try writeTestPNG(path: "\(dir)/b.png", width: 400, height: 300, channels: 4, bitDepth: 8, interlaced: true) { x, y, c in texture(x, y, c, 255) }
        var rgb = Image(width: 400, height: 300, channels: 3, value: 0)
        for y in 0..<300 { for x in 0..<400 { for c in 0..<3 { rgb[x, y, c] = Float(texture(x, y, c, 255)) / 255 } } }
        try encodeJPEG(rgb, path: "\(dir)/c.jpg")
        let names = ["a.png", "b.png", "c.jpg"]
        for name in names {
            let path = "\(dir)/\(name)"
            XCTAssertNotNil(try? decodeImage(path: path, minSide: 16))
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            XCTAssertEqual(truncate(path, off_t(size * 2 / 3)), 0)
        }
        func decodeTruncated() {
            for name in names {
                XCTAssertThrowsError(try decodeImage(path: "\(dir)/\(name)", minSide: 16), name) { error in
                    let e = error as? ImageError
                    XCTAssertEqual(e?.kind, .corrupt, "\(error)")
                    XCTAssertTrue("\(error)".contains(name) && "\(error)".contains("truncated"), "\(error)")
                }
            }
        }
        // The first round warms up what the process allocates once (error-path globals of the
        // runtime and libraries); every later round must give back all it took: a decoder's rows
        // or reduction buffers left behind would be tens of kilobytes a round.
        decodeTruncated()
        let before = dc_heap_bytes_in_use()
        for _ in 0..<3 { decodeTruncated() }
        XCTAssertLessThanOrEqual(dc_heap_bytes_in_use(), before + 4096)
    }

    /// Sizes are read from the header alone (`--keep-size`), also of images over the pixel limit.
    func testImageSizeReadsTheHeaderOnly() throws {
        let dir = try temporaryFolder(self)
        try writeTestPNG(path: "\(dir)/a.png", width: 300, height: 200, channels: 1, bitDepth: 16) { x, _, _ in x }
        XCTAssertTrue(try imageSize(path: "\(dir)/a.png") == (300, 200))
        XCTAssertThrowsError(try decodeImage(path: "\(dir)/a.png", maxPixels: 1000))
        XCTAssertTrue(try imageSize(path: sample("progressive.jpg")) == (try decodeImage(path: sample("progressive.jpg"))).size)
    }
}

extension Image {
    var size: (Int, Int) { (width, height) }
}

/// `reduced` is the k x k block means of `full` (partial blocks at the edges), colour weighted by
/// alpha when there is alpha, to float rounding.
func checkBlockMeans(_ reduced: Image, _ full: Image, k: Int, path: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let c = full.channels, alpha = full.hasAlpha
    XCTAssertEqual([reduced.width, reduced.height, reduced.channels], [(full.width + k - 1) / k, (full.height + k - 1) / k, c])
    var worst = 0.0
    for oy in 0..<reduced.height {
        for ox in 0..<reduced.width {
            var sums = [Double](repeating: 0, count: c), n = 0.0
            for y in (oy * k)..<min(full.height, oy * k + k) {
                for x in (ox * k)..<min(full.width, ox * k + k) {
                    n += 1
                    let a = alpha ? Double(full[x, y, c - 1]) : 1
                    for ch in 0..<c { sums[ch] += Double(full[x, y, ch]) * (alpha && ch < c - 1 ? a : 1) }
                }
            }
            for ch in 0..<c {
                let want = alpha && ch < c - 1 ? (sums[c - 1] > 0 ? sums[ch] / sums[c - 1] : 0) : sums[ch] / n
                worst = max(worst, abs(want - Double(reduced[ox, oy, ch])))
            }
        }
    }
    XCTAssertLessThanOrEqual(worst, 1e-6, "\(path): block means of the full decode", file: file, line: line)
}

/// A smooth-and-detailed test pattern (gradients, sinusoids of several frequencies, fine
/// checks), sample values 0...top.
func texture(_ x: Int, _ y: Int, _ c: Int, _ top: Int) -> Int {
    let fx = Double(x), fy = Double(y)
    var v = 0.5 + 0.2 * sin(fx / 23 + Double(c)) * cos(fy / 31)
    v += 0.15 * sin((fx + 2 * fy) / 3.7 + Double(c) * 2)
    v += 0.1 * Double((x / 2 + y / 2 + c) % 2) - 0.05
    v += 0.1 * (fx / 2000 - fy / 3000)
    return Int((min(max(v, 0), 1) * Double(top)).rounded())
}

func alphaPattern(_ x: Int, _ y: Int, _ top: Int) -> Int {
    let v = (x / 40 + y / 50) % 3
    return v == 0 ? top : v == 1 ? 0 : (x * 7 + y * 3) % (top + 1)
}

/// `disco` beside the test bundle.
var disco: String {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [dir.appendingPathComponent("disco").path,
                      dir.deletingLastPathComponent().appendingPathComponent("disco").path]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}

/// Runs `exe args` (stdout and stderr inherited), requires exit 0, and returns the child's peak
/// resident set size in bytes (getrusage of that child alone, through wait4).
func peakRSS(_ exe: String, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Int {
    var argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, exe, nil, nil, &argv, environ)
    guard spawned == 0 else { throw ImageError(path: exe, kind: .unreadable, detail: "cannot spawn: \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    XCTAssertEqual(status, 0, "\(exe) \(args.joined(separator: " ")): wait status \(status)", file: file, line: line)
    return usage.ru_maxrss * 1024
}

/// Writes a PNG without holding the image: rows are made by `sample(x, y, channel)` (0...2^depth-1)
/// as they are written, stored in uncompressed deflate blocks. Gray, gray+alpha, RGB, RGBA at 8
/// or 16 bits, Adam7-interlaced or not. (A test's own writer: disco's encoder writes 8-bit only.)
func writeTestPNG(path: String, width: Int, height: Int, channels: Int, bitDepth: Int, interlaced: Bool = false,
                  sample: (Int, Int, Int) -> Int) throws {
    guard let f = fopen(path, "wb") else { throw ImageError(path: path, kind: .unwritable, detail: "cannot create") }
    defer { fclose(f) }
    func put(_ bytes: [UInt8]) { bytes.withUnsafeBufferPointer { _ = fwrite($0.baseAddress, 1, $0.count, f) } }
    func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
    func chunk(_ type: String, _ data: [UInt8]) {
        let body = Array(type.utf8) + data
        put(be32(data.count) + body + be32(Int(crc32(body))))
    }
    put([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    let colorType = [0, 4, 2, 6][channels - 1]
    chunk("IHDR", be32(width) + be32(height) + [UInt8(bitDepth), UInt8(colorType), 0, 0, interlaced ? 1 : 0])
    // The zlib stream: header, stored blocks of at most 65535 bytes (one IDAT each), Adler-32.
    chunk("IDAT", [0x78, 0x01])
    var pending: [UInt8] = [], a: UInt32 = 1, b: UInt32 = 0
    func block(final: Bool) {
        let n = pending.count
        chunk("IDAT", [final ? 1 : 0, UInt8(n & 255), UInt8(n >> 8), UInt8(~n & 255), UInt8((~n >> 8) & 255)] + pending)
        pending.removeAll(keepingCapacity: true)
    }
    func emit(_ bytes: [UInt8]) {
        for chunkStart in stride(from: 0, to: bytes.count, by: 5552) {
            for byte in bytes[chunkStart..<min(chunkStart + 5552, bytes.count)] { a += UInt32(byte); b += a }
            a %= 65521; b %= 65521
        }
        var i = 0
        while i < bytes.count {
            let take = min(65535 - pending.count, bytes.count - i)
            pending += bytes[i..<(i + take)]
            i += take
            if pending.count == 65535 { block(final: false) }
        }
    }
    let passes = interlaced ? [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]
                            : [(0, 0, 1, 1)]
    var row: [UInt8] = []
    for (y0, x0, dy, dx) in passes {
        let xs = Array(stride(from: x0, to: width, by: dx))
        guard !xs.isEmpty else { continue }
        for y in stride(from: y0, to: height, by: dy) {
            row.removeAll(keepingCapacity: true)
            row.append(0)  // filter: none
            for x in xs {
                for c in 0..<channels {
                    let v = sample(x, y, c)
                    if bitDepth == 16 { row.append(UInt8(v >> 8 & 255)) }
                    row.append(UInt8(v & 255))
                }
            }
            emit(row)
        }
    }
    block(final: true)
    chunk("IDAT", be32(Int(b << 16 | a)))
    chunk("IEND", [])
}

private let crcTable: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1 }
    return c
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in bytes { c = crcTable[Int((c ^ UInt32(byte)) & 255)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}
