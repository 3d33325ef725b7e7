import Foundation
import XCTest
@testable import DiscoImage

final class CodecTests: XCTestCase {
    /// Every PNG kind decodes to the closed-form values it was written with.
    func testPNGKindsMatchKnownPixels() throws {
        let cases: [(String, Int, Float, (Int, Int) -> [Int])] = [
            ("gray8.png", 1, 255, { [gray8($0, $1)] }),
            ("gray1.png", 1, 255, { [($0 + $1) % 2 * 255] }),
            ("gray16.png", 1, 65535, { [gray16($0, $1)] }),
            ("interlaced-gray16.png", 1, 65535, { [gray16($0, $1)] }),
            ("gray-alpha8.png", 2, 255, { [gray8($0, $1), alpha8($0, $1)] }),
            ("rgb8.png", 3, 255, { rgb8($0, $1) }),
            ("interlaced-rgb8.png", 3, 255, { rgb8($0, $1) }),
            ("rgb16.png", 3, 65535, { rgb16($0, $1) }),
            ("rgba8.png", 4, 255, { rgb8($0, $1) + [alpha8($0, $1)] }),
            ("palette2.png", 3, 255, { samplePalette[index2($0, $1)] }),
            ("palette-trns.png", 4, 255, { samplePalette[index2($0, $1)] + [[255, 128, 0, 255][index2($0, $1)]] }),
        ]
        for (name, channels, maxValue, formula) in cases {
            let image = try decodeImage(path: sample(name))
            let expected = expectedImage(channels: channels, maxValue: maxValue, formula)
            XCTAssertEqual(image.channels, channels, name)
            XCTAssertEqual([image.width, image.height], [sampleWidth, sampleHeight], name)
            XCTAssertLessThan(maxAbsDifference(image.pixels, expected.pixels), 1e-6, name)
        }
    }

    /// JPEG kinds decode to what Pillow decodes (expected/jpeg.json), within 2 levels of 255
    /// (the two libjpeg-turbo builds may differ in the last bit of IDCT/upsampling rounding).
    func testJPEGKindsMatchPillow() throws {
        let expected = try loadJSON("jpeg.json") as! [String: Any]
        for name in ["baseline.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg"] {
            let e = expected[name] as! [String: Any]
            let image = try decodeImage(path: sample(name))
            XCTAssertEqual(image.width, e["width"] as? Int, name)
            XCTAssertEqual(image.height, e["height"] as? Int, name)
            XCTAssertEqual(image.channels, e["channels"] as? Int, name)
            let reference = (e["pixels"] as! [Int]).map { Float($0) / 255 }
            XCTAssertLessThanOrEqual(maxAbsDifference(image.pixels, reference), 2.001 / 255, name)
        }
        // And they are close to the source pixels (lossy, quality 90-95): an independent check
        // that CMYK was converted with the right inversion.
        let source = (expected["source_rgb"] as! [Int]).map { Float($0) / 255 }
        for name in ["baseline.jpg", "progressive.jpg", "cmyk.jpg"] {
            let image = try decodeImage(path: sample(name))
            let meanError = zip(image.pixels, source).map { abs($0 - $1) }.reduce(0, +) / Float(source.count)
            XCTAssertLessThan(meanError, 4 / 255, name)
        }
    }

    func testFormatIsRecognisedFromBytesNotName() throws {
        let dir = try temporaryFolder(self)
        let renamed = "\(dir)/actually-a-png.jpg"
        try FileManager.default.copyItem(atPath: sample("rgb8.png"), toPath: renamed)
        XCTAssertEqual(ImageFormat.detect(path: renamed), .png)
        XCTAssertEqual(try decodeImage(path: renamed), try decodeImage(path: sample("rgb8.png")))
        XCTAssertEqual(ImageFormat.detect(path: sample("gray.jpg")), .jpeg)
        XCTAssertNil(ImageFormat.detect(path: sample("broken/text-named.png")))
    }

    /// Each broken sample fails with an ImageError that names the file and the problem.
    func testBrokenFilesGiveErrorsNamingTheFile() {
        let cases: [(String, ImageError.Kind, String)] = [
            ("empty.png", .empty, "empty"),
            ("truncated.png", .corrupt, "truncated"),
            ("truncated.jpg", .corrupt, "JPEG"),
            ("bad-crc.png", .corrupt, "CRC"),
            ("garbage.jpg", .corrupt, "JPEG"),
            ("huge.png", .tooLarge, "200000x200000"),
            ("huge.jpg", .tooLarge, "60000x60000"),
            ("notes.txt", .unknownFormat, "not a PNG or JPEG"),
            ("text-named.png", .unknownFormat, "not a PNG or JPEG"),
            ("does-not-exist.png", .unreadable, "No such file"),
        ]
        for (name, kind, words) in cases {
            let path = sample("broken/\(name)")
            XCTAssertThrowsError(try decodeImage(path: path), name) { error in
                guard let e = error as? ImageError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(e.kind, kind, "\(name): \(e)")
                XCTAssertTrue(e.description.hasPrefix(path + ": "), e.description)
                XCTAssertTrue(e.description.contains(words), e.description)
            }
        }
    }

    /// The pixel limit is settable and applies to width x height (9 x 7 = 63 pixels).
    func testPixelLimit() throws {
        for name in ["rgb8.png", "baseline.jpg"] {
            let image = try decodeImage(path: sample(name))
            let n = image.width * image.height
            XCTAssertNoThrow(try decodeImage(path: sample(name), maxPixels: n))
            XCTAssertThrowsError(try decodeImage(path: sample(name), maxPixels: n - 1)) { error in
                XCTAssertEqual((error as? ImageError)?.kind, .tooLarge)
            }
        }
    }

    func testPNGRoundTripIsExactAt8Bits() throws {
        for channels in 1...4 {
            var rng = SplitMix64(seed: UInt64(channels))
            let bytes = (0..<(13 * 5 * channels)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let image = Image(width: 13, height: 5, channels: channels, bytes: bytes)
            let decoded = try decodeImage(bytes: try encodePNG(image))
            XCTAssertEqual(decoded.channels, channels)
            XCTAssertEqual(decoded.bytes(), bytes)
        }
    }

    func testJPEGRoundTripAndQuality() throws {
        // A smooth RGB image: JPEG at quality 95 keeps it within a few levels.
        var image = Image(width: 32, height: 24, channels: 3)
        for y in 0..<24 { for x in 0..<32 {
            image[x, y, 0] = Float(x) / 31; image[x, y, 1] = Float(y) / 23; image[x, y, 2] = 0.5
        } }
        let high = try encodeJPEG(image, quality: 95), low = try encodeJPEG(image, quality: 20)
        XCTAssertGreaterThan(high.count, low.count)
        let decoded = try decodeImage(bytes: high)
        XCTAssertEqual([decoded.width, decoded.height, decoded.channels], [32, 24, 3])
        XCTAssertLessThan(maxAbsDifference(decoded.pixels, image.pixels), 12 / 255) // 4:2:0 chroma
        // Gray stays gray; RGBA is composited on white.
        XCTAssertEqual(try decodeImage(bytes: try encodeJPEG(image.converted(toChannels: 1))).channels, 1)
        let transparent = Image(width: 8, height: 8, channels: 4, pixels: [Float](repeating: 0, count: 256))
        let white = try decodeImage(bytes: try encodeJPEG(transparent))
        XCTAssertEqual(white.pixels.min()!, 1, accuracy: 1 / 255)
    }

    func testDCTScalingDecodesSmallerButAtLeastMinSide() throws {
        var image = Image(width: 64, height: 48, channels: 3, value: 0.25)
        image[10, 10, 0] = 1
        let bytes = try encodeJPEG(image, quality: 90)
        let full = try decodeImage(bytes: bytes)
        XCTAssertEqual([full.width, full.height], [64, 48])
        let half = try decodeImage(bytes: bytes, minSide: 16) // 1/4 would leave 12 < 16 rows
        XCTAssertEqual([half.width, half.height], [32, 24])
        let eighth = try decodeImage(bytes: bytes, minSide: 6)
        XCTAssertEqual([eighth.width, eighth.height], [8, 6])
    }

    func testSaveImageByExtension() throws {
        let dir = try temporaryFolder(self)
        let image = try decodeImage(path: sample("rgb8.png"))
        try saveImage(image, path: "\(dir)/a.png")
        try saveImage(image, path: "\(dir)/b.JPEG")
        XCTAssertEqual(ImageFormat.detect(path: "\(dir)/a.png"), .png)
        XCTAssertEqual(ImageFormat.detect(path: "\(dir)/b.JPEG"), .jpeg)
        XCTAssertEqual(try decodeImage(path: "\(dir)/a.png"), image)
        XCTAssertThrowsError(try saveImage(image, path: "\(dir)/c.bmp")) { error in
            XCTAssertTrue("\(error)".contains("c.bmp"))
        }
        XCTAssertThrowsError(try saveImage(image, path: "\(dir)/missing/d.png")) { error in
            XCTAssertEqual((error as? ImageError)?.kind, .unwritable)
        }
    }
}
