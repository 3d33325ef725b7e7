import Foundation
import XCTest
@testable import DiscoImage
import _CImageCodecs

/// Thousands of mutated and truncated versions of valid PNG and JPEG files: each must decode
/// to an error or a consistent image, never crash or hang, and leave no memory behind.
final class CorruptionTests: XCTestCase {
    func testMutatedAndTruncatedFilesNeverCrash() throws {
        let seeds = ["rgb8.png", "interlaced-rgb8.png", "gray16.png", "palette-trns.png", "rgba8.png",
                     "baseline.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg"]
        let originals = try seeds.map { name -> [UInt8] in [UInt8](try Data(contentsOf: URL(fileURLWithPath: sample(name)))) }
        var rng = SplitMix64(seed: 2024)
        var decoded = 0, failed = 0
        func attempt(_ bytes: [UInt8]) {
            do {
                let image = try decodeImage(bytes: bytes, name: "mutant", maxPixels: 1 << 20)
                XCTAssertEqual(image.pixels.count, image.width * image.height * image.channels)
                XCTAssertTrue(image.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
                decoded += 1
            } catch let error as ImageError {
                XCTAssertTrue(error.description.hasPrefix("mutant: "))
                failed += 1
            } catch {
                XCTFail("unexpected error type: \(error)")
            }
        }
        func round(_ count: Int) {
            for _ in 0..<count {
                var bytes = originals[Int(rng.next() % UInt64(originals.count))]
                switch rng.next() % 4 {
                case 0: // truncate anywhere
                    bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
                case 1: // flip 1-8 random bytes (headers included)
                    for _ in 0...(rng.next() % 8) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
                case 2: // overwrite a run with 0xFF or 0x00 (fake markers, zeroed lengths)
                    let start = Int(rng.next() % UInt64(bytes.count)), length = Int(rng.next() % 16) + 1
                    let fill: UInt8 = rng.next() % 2 == 0 ? 0xFF : 0
                    for i in start..<min(bytes.count, start + length) { bytes[i] = fill }
                default: // duplicate or delete a chunk of the file
                    let start = Int(rng.next() % UInt64(bytes.count)), length = Int(rng.next() % 64) + 1
                    let end = min(bytes.count, start + length)
                    if rng.next() % 2 == 0 { bytes.insert(contentsOf: bytes[start..<end], at: start) } else { bytes.removeSubrange(start..<end) }
                }
                attempt(bytes)
            }
        }
        round(1000) // warm-up: allocator pools, libjpeg/libpng static state
        let before = dc_heap_bytes_in_use()
        let start = Date()
        round(3000)
        let elapsed = Date().timeIntervalSince(start)
        let grown = Int(dc_heap_bytes_in_use()) - Int(before)
        XCTAssertGreaterThan(decoded, 100, "some mutants still decode")
        XCTAssertGreaterThan(failed, 1000, "most mutants are rejected")
        XCTAssertLessThan(grown, 256 << 10, "heap grew by \(grown) bytes over 3000 decodes: a leak")
        XCTAssertLessThan(elapsed, 30, "decoding 3000 tiny files took \(elapsed) s")
    }

    /// Headers claiming huge sizes are refused before allocation: instant, no memory spike.
    func testHugeHeadersAreRefusedQuickly() throws {
        for name in ["huge.png", "huge.jpg"] {
            let start = Date()
            XCTAssertThrowsError(try decodeImage(path: sample("broken/\(name)"))) { error in
                XCTAssertEqual((error as? ImageError)?.kind, .tooLarge)
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)
        }
    }
}
