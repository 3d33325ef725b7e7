import Foundation
import XCTest
@testable import DiscoImage

/// --load-size and --no-flip (issue 13): the loader's random crops are size x size windows of the
/// image resized to loadSize, its flips mirror them, and both are pure functions of the seed.
final class AugmentationTests: XCTestCase {
    /// One 13x11 gray image whose pixels all differ and whose columns are not symmetric.
    func folder() throws -> (ImageFolder, String) {
        let dir = try temporaryFolder(self)
        var image = Image(width: 13, height: 11, channels: 1)
        for y in 0..<11 { for x in 0..<13 { image[x, y, 0] = Float((x * 17 + y * 5) % 97) / 96 } }
        try encodePNG(image, path: "\(dir)/one.png")
        return (try ImageFolder(path: dir), "\(dir)/one.png")
    }

    /// The windows (x0, y0) of side `size` of a prepared (resized, 8-bit) image, and their mirrors.
    func windows(of path: String, load: Int, size: Int) throws -> (plain: [[Float]], mirrored: [[Float]]) {
        let bytes = try loadSquareImage(path: path, size: load, channels: 1).bytes()
        var plain: [[Float]] = [], mirrored: [[Float]] = []
        for y0 in 0...(load - size) { for x0 in 0...(load - size) {
            var p: [Float] = [], m: [Float] = []
            for y in 0..<size { for x in 0..<size {
                p.append(byteToUnit[Int(bytes[(y0 + y) * load + x0 + x])])
                m.append(byteToUnit[Int(bytes[(y0 + y) * load + x0 + size - 1 - x])])
            } }
            plain.append(p); mirrored.append(m)
        } }
        return (plain, mirrored)
    }

    /// The 32 images of domain A of 4 batches of 8 (each epoch reshuffles the one file).
    func served(_ folder: ImageFolder, loadSize: Int?, flip: Bool, seed: UInt64 = 5) throws -> [[Float]] {
        var o = LoaderOptions()
        o.batch = 8; o.size = 8; o.channels = 1; o.seed = seed; o.loadSize = loadSize; o.flip = flip
        let loader = UnpairedLoader(a: folder, b: folder, options: o)
        var out: [[Float]] = []
        for _ in 0..<4 {
            let a = try loader.next().a
            for i in 0..<8 { out.append(Array(a[i * 64..<(i + 1) * 64])) }
        }
        return out
    }

    func testCropsAreWindowsOfTheResizedImageAndFlipsOnlyWhenAsked() throws {
        let (folder, path) = try folder()
        let w = try windows(of: path, load: 12, size: 8)
        XCTAssertTrue(Set(w.plain).isDisjoint(with: Set(w.mirrored)), "the test image must not be symmetric")

        // --load-size 12 --no-flip: every image a window of the 12x12 image, several windows, never mirrored.
        let crops = try served(folder, loadSize: 12, flip: false)
        for image in crops { XCTAssertTrue(w.plain.contains(image), "a crop that is no 8x8 window of the 12x12 image") }
        XCTAssertGreaterThan(Set(crops).count, 8)
        // With flips: windows and mirrored windows, both seen, about half each.
        let flipped = try served(folder, loadSize: 12, flip: true)
        let mirrored = flipped.filter { w.mirrored.contains($0) }.count
        XCTAssertEqual(flipped.filter { w.plain.contains($0) }.count + mirrored, 32)
        XCTAssertTrue((6...26).contains(mirrored), "\(mirrored) of 32 mirrored")
        // The same crops are drawn with and without flips; seeded: the same again, another seed differs.
        for (c, f) in zip(crops, flipped) { XCTAssertTrue(f == c || w.mirrored[w.plain.firstIndex(of: c)!] == f) }
        XCTAssertEqual(try served(folder, loadSize: 12, flip: true), flipped)
        XCTAssertNotEqual(try served(folder, loadSize: 12, flip: true, seed: 6), flipped)

        // No --load-size: the 8x8 resized image, mirrored only with flips; the default is untouched.
        let whole = try windows(of: path, load: 8, size: 8)
        XCTAssertEqual(Set(try served(folder, loadSize: nil, flip: false)), [whole.plain[0]])
        XCTAssertEqual(Set(try served(folder, loadSize: 8, flip: false)), [whole.plain[0]])
        XCTAssertEqual(Set(try served(folder, loadSize: nil, flip: true)), [whole.plain[0], whole.mirrored[0]])
    }
}
