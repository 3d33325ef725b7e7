import Foundation
import XCTest
@testable import DiscoImage

/// datasets/samples in the repository (found from this file's path).
let samplesDirectory: String = {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("datasets/samples").path
}()

func sample(_ name: String) -> String { "\(samplesDirectory)/\(name)" }

/// A fresh empty temporary folder, removed at the end of the test.
func temporaryFolder(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "disco-image-tests-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func loadJSON(_ name: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: sample("expected/\(name)"))))
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

// The closed-form pixel values of the sample PNGs (same formulas as make_samples.py).
let sampleWidth = 9, sampleHeight = 7
func gray8(_ x: Int, _ y: Int) -> Int { (x * 31 + y * 47 + 3) % 256 }
func rgb8(_ x: Int, _ y: Int) -> [Int] { [(x * 37 + y * 11) % 256, (x * 5 + y * 53 + 7) % 256, (x * y * 13 + 100) % 256] }
func alpha8(_ x: Int, _ y: Int) -> Int { (x * 29 + y * 71 + 30) % 256 }
func gray16(_ x: Int, _ y: Int) -> Int { (x * 9001 + y * 3001 + 17) % 65536 }
func rgb16(_ x: Int, _ y: Int) -> [Int] { [gray16(x, y), (gray16(x, y) * 7 + 123) % 65536, (x * 4099 + y * 65011) % 65536] }
let samplePalette = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 200, 10]]
func index2(_ x: Int, _ y: Int) -> Int { (x + 2 * y) % 4 }

/// The expected image from a per-pixel formula of integer samples scaled by 1/`maxValue`.
func expectedImage(channels: Int, maxValue: Float, _ f: (Int, Int) -> [Int]) -> Image {
    var pixels: [Float] = []
    for y in 0..<sampleHeight { for x in 0..<sampleWidth { pixels += f(x, y).map { Float($0) / maxValue } } }
    return Image(width: sampleWidth, height: sampleHeight, channels: channels, pixels: pixels)
}
