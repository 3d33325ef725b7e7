import Foundation
import XCTest
@testable import DiscoImage

final class OpsTests: XCTestCase {
    /// Resize matches Pillow's float-mode resize (expected/resize.json) for each filter,
    /// shrinking (antialiased), enlarging, and one axis at a time.
    func testResizeMatchesPillow() throws {
        let cases = try loadJSON("resize.json") as! [[String: Any]]
        XCTAssertEqual(cases.count, 15)
        for c in cases {
            let w = c["width"] as! Int, h = c["height"] as! Int
            let input = (c["input"] as! [Double]).map(Float.init)
            let filter = ResizeFilter(rawValue: c["filter"] as! String)!
            let ow = c["out_width"] as! Int, oh = c["out_height"] as! Int
            let expected = (c["output"] as! [Double]).map(Float.init)
            let out = Image(width: w, height: h, channels: 1, pixels: input).resized(width: ow, height: oh, filter: filter)
            XCTAssertLessThan(maxAbsDifference(out.pixels, expected), 2e-5, "\(filter) \(w)x\(h) -> \(ow)x\(oh)")
        }
    }

    /// Channels are resampled independently: a 3-channel resize equals three 1-channel ones.
    func testResizeChannelsIndependently() {
        var rng = SplitMix64(seed: 5)
        let planes = (0..<3).map { _ in (0..<(17 * 9)).map { _ in Float(rng.next() % 1000) / 999 } }
        let rgb = Image(width: 17, height: 9, channels: 3, pixels: (0..<(17 * 9)).flatMap { i in planes.map { $0[i] } })
        let out = rgb.resized(width: 6, height: 5, filter: .lanczos)
        for c in 0..<3 {
            let single = Image(width: 17, height: 9, channels: 1, pixels: planes[c]).resized(width: 6, height: 5, filter: .lanczos)
            XCTAssertEqual(stride(from: c, to: out.pixels.count, by: 3).map { out.pixels[$0] }, single.pixels)
        }
    }

    /// Shrinking 2x with the triangle filter stretched to support 2 averages each output's
    /// 4 nearest source pixels per axis with weights 1/8, 3/8, 3/8, 1/8 (closed form).
    func testBilinearHalvingWeights() {
        let row: [Float] = [0, 0, 0.8, 0, 0, 0, 0, 0]
        let out = Image(width: 8, height: 1, channels: 1, pixels: row).resized(width: 4, height: 1, filter: .bilinear)
        // Interior output 1 is centred at source coordinate 3.0: sources 1, 2, 3, 4 with weights 1, 3, 3, 1 / 8.
        XCTAssertEqual(out.pixels[1], 0.8 * 3 / 8, accuracy: 1e-6)
        XCTAssertEqual(out.pixels[2], 0.8 * 0, accuracy: 1e-6)
    }

    func testCropsAndFlip() {
        let image = Image(width: 5, height: 4, channels: 2, pixels: (0..<40).map(Float.init))
        let crop = image.cropped(x: 1, y: 2, width: 3, height: 2)
        XCTAssertEqual(crop.pixels, [22, 23, 24, 25, 26, 27, 32, 33, 34, 35, 36, 37])
        XCTAssertEqual(image.centerCrop(width: 3, height: 2), image.cropped(x: 1, y: 1, width: 3, height: 2))
        let flipped = image.flippedHorizontally()
        XCTAssertEqual(flipped[0, 0, 0], image[4, 0, 0])
        XCTAssertEqual(flipped[4, 3, 1], image[0, 3, 1])
        XCTAssertEqual(flipped.flippedHorizontally(), image)
        // Random crops land everywhere possible, always inside, from the given generator.
        var rng = SplitMix64(seed: 1)
        var corners = Set<[Float]>()
        for _ in 0..<200 { corners.insert([image.randomCrop(width: 4, height: 3, using: &rng)[0, 0, 0]]) }
        XCTAssertEqual(corners, Set([[0], [2], [10], [12]]))
        var again = SplitMix64(seed: 1), first = SplitMix64(seed: 1)
        XCTAssertEqual(image.randomCrop(width: 2, height: 2, using: &again), image.randomCrop(width: 2, height: 2, using: &first))
    }

    func testChannelConversion() {
        // RGBA (0.2, 0.4, 1.0, alpha 0.5) on white -> (0.6, 0.7, 1.0); luma 601 of that.
        let rgba = Image(width: 1, height: 1, channels: 4, pixels: [0.2, 0.4, 1.0, 0.5])
        let rgb = rgba.converted(toChannels: 3)
        XCTAssertEqual(rgb.pixels[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(rgb.pixels[1], 0.7, accuracy: 1e-6)
        XCTAssertEqual(rgb.pixels[2], 1.0, accuracy: 1e-6)
        XCTAssertEqual(rgba.converted(toChannels: 1).pixels[0], 0.299 * 0.6 + 0.587 * 0.7 + 0.114 * 1.0, accuracy: 1e-6)
        let grayAlpha = Image(width: 1, height: 1, channels: 2, pixels: [0.2, 0.25])
        XCTAssertEqual(grayAlpha.converted(toChannels: 1).pixels[0], 0.2 * 0.25 + 0.75, accuracy: 1e-6)
        XCTAssertEqual(grayAlpha.converted(toChannels: 3).pixels, [Float](repeating: 0.8, count: 3))
        // Against Pillow's L mode on the sample JPEG's source (integer luma, so within 1 level).
        let expected = try! loadJSON("jpeg.json") as! [String: Any]
        let source = Image(width: 16, height: 12, channels: 3, bytes: (expected["source_rgb"] as! [Int]).map { UInt8($0) })
        let gray = source.converted(toChannels: 1).bytes().map(Int.init)
        let pillow = source.bytes().count / 3 // number of pixels
        XCTAssertEqual(gray.count, pillow)
        for i in 0..<gray.count {
            let r = Int(source.bytes()[3 * i]), g = Int(source.bytes()[3 * i + 1]), b = Int(source.bytes()[3 * i + 2])
            let pil = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16 // Pillow's L = R*299/1000 + ...
            XCTAssertLessThanOrEqual(abs(gray[i] - pil), 1)
        }
    }

    func testSquaredScalesShorterSideThenCentreCrops() {
        // 8x4 with columns 0..7: shorter side 4 -> 2, width 8 -> 4, centre crop 2 keeps the middle.
        let image = Image(width: 8, height: 4, channels: 1, pixels: (0..<32).map { Float($0 % 8) / 7 })
        let square = image.squared(size: 2, filter: .bilinear)
        XCTAssertEqual([square.width, square.height], [2, 2])
        let wide = image.resized(width: 4, height: 2, filter: .bilinear)
        XCTAssertEqual(square, wide.centerCrop(width: 2, height: 2))
    }
}
