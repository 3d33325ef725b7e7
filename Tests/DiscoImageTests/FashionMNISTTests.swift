import Foundation
import XCTest
@testable import DiscoImage

final class FashionMNISTTests: XCTestCase {
    /// Writes a tiny fake Fashion-MNIST (gzipped IDX, same layout as the Debian package).
    func makeFakeSource(in dir: String, train labels: [UInt8], test testLabels: [UInt8]) throws {
        func write(_ bytes: [UInt8], _ name: String) throws {
            let path = "\(dir)/\(name)"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["gzip", "-f", path]
            try p.run(); p.waitUntilExit()
        }
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        for (split, labs) in [("train", labels), ("t10k", testLabels)] {
            var images = be32(0x0803) + be32(labs.count) + be32(28) + be32(28)
            for (i, label) in labs.enumerated() {
                // A bright rectangle whose brightness and width encode the image index, on black.
                var pixels = [UInt8](repeating: 0, count: 28 * 28)
                for y in 8..<20 { for x in 6..<(12 + 2 * i) { pixels[y * 28 + x] = UInt8(100 + i) } }
                _ = label
                images += pixels
            }
            try write(images, "\(split)-images-idx3-ubyte")
            try write(be32(0x0801) + be32(labs.count) + labs, "\(split)-labels-idx1-ubyte")
        }
    }

    /// classes: every image in the folder of its label, named by its index in the split, pixels
    /// as in the source (28x28: no resize).
    func testBuildsClassFolders() throws {
        let dir = NSTemporaryDirectory() + "disco-fmnist-classes-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let train: [UInt8] = [3, 8, 8, 0, 9], test: [UInt8] = [7, 1]
        try makeFakeSource(in: dir, train: train, test: test)
        let out = dir + "/classes"
        let counts = try buildFashionMNISTClasses(out: out, source: dir)
        XCTAssertEqual(counts, ["train": 5, "test": 2])
        let fm = FileManager.default
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: out + "/train").sorted(), FashionMNIST.classNames)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: out + "/train/8-bag").sorted(), ["00002.png", "00003.png"])
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: out + "/test/1-trouser"), ["00002.png"])
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: out + "/train/5-sandal"), [])
        // Image 4 of train (index 3, label 0): the fake's rectangle of brightness 103, x 6..<18.
        let img = try decodeImage(path: out + "/train/0-tshirt/00004.png")
        XCTAssertEqual([img.width, img.height, img.channels], [28, 28, 1])
        XCTAssertEqual(img.pixels[10 * 28 + 6], Float(103) / 255, accuracy: 1e-6)
        XCTAssertEqual(img.pixels[10 * 28 + 18], 0)
        XCTAssertTrue(fm.fileExists(atPath: out + "/dataset.json"))
    }

    func testBuildsBothTasksInCycleGANLayout() throws {
        let dir = try temporaryFolder(self)
        // train: 2 bags, 4 shoes (5, 7, 9, 9), 2 others; test: 1 bag, 2 shoes, 1 other.
        try makeFakeSource(in: dir, train: [8, 5, 0, 7, 8, 9, 3, 9], test: [9, 8, 1, 5])
        let split = try FashionMNIST.load(split: "train", directory: dir)
        XCTAssertEqual([split.count, split.rows, split.cols], [8, 28, 28])
        XCTAssertEqual(split.indices(labeled: [FashionMNIST.bag]), [0, 4])

        let bags = "\(dir)/bags"
        let counts = try buildFashionMNIST(task: .bagsShoes, out: bags, size: 32, channels: 1, source: dir)
        XCTAssertEqual(counts, ["trainA": 2, "trainB": 4, "testA": 1, "testB": 2])
        let first = try decodeImage(path: "\(bags)/trainB/00001.png") // train index 1 (the sandal)
        XCTAssertEqual([first.width, first.height, first.channels], [32, 32, 1])
        XCTAssertEqual(first[11, 16, 0], Float(101) / 255, accuracy: 0.5 / 255) // inside the rectangle (6..<14, 8..<20 in 28 px)
        XCTAssertEqual(first[1, 1, 0], 0)
        XCTAssertEqual(try ImageFolder(path: "\(bags)/trainB").count, 4)

        let edges = "\(dir)/edges"
        try buildFashionMNIST(task: .edgesShoes, out: edges, size: 32, channels: 3, source: dir)
        let trainA = try ImageFolder(path: "\(edges)/trainA"), trainB = try ImageFolder(path: "\(edges)/trainB")
        XCTAssertEqual([trainA.count, trainB.count], [2, 2])
        // Train halves come from different images: no edge map matches the edges of a B image.
        let edgesOfB = try trainB.files.map { edgeMap(try decodeImage(path: $0).converted(toChannels: 1)).bytes() }
        for file in trainA.files {
            XCTAssertFalse(edgesOfB.contains(try decodeImage(path: file).converted(toChannels: 1).bytes()))
        }
        // Test pairs share names: testA/00001 is the edge map of testB/00001.
        let b1 = try decodeImage(path: "\(edges)/testB/00001.png"), a1 = try decodeImage(path: "\(edges)/testA/00001.png")
        XCTAssertEqual(b1.channels, 3)
        XCTAssertEqual(edgeMap(b1.converted(toChannels: 1)).bytes(), a1.converted(toChannels: 1).bytes())
        // Rebuilding over an earlier build is allowed; over another folder it is not.
        XCTAssertNoThrow(try buildFashionMNIST(task: .bagsShoes, out: edges, size: 16, source: dir))
        XCTAssertThrowsError(try buildFashionMNIST(task: .bagsShoes, out: dir, size: 16, source: dir)) {
            XCTAssertTrue("\($0)".contains("not an earlier `disco data` build"))
        }
    }

    /// The edge map of a bright square on black is a thin dark outline on white.
    func testEdgeMapOfASquare() {
        var image = Image(width: 32, height: 32, channels: 1)
        for y in 10..<22 { for x in 10..<22 { image[x, y, 0] = 1 } }
        let edges = edgeMap(image)
        XCTAssertEqual(edges[2, 2, 0], 1)   // far outside: white
        XCTAssertEqual(edges[16, 16, 0], 1) // deep inside: white
        // Each row through the middle crosses exactly two thin lines (left and right side).
        for y in 13..<19 {
            let dark = (0..<32).filter { edges[$0, y, 0] == 0 }
            XCTAssertEqual(dark.count, 2, "row \(y): \(dark)")
            XCTAssertTrue(dark.allSatisfy { (8...11).contains($0) || (20...23).contains($0) }, "row \(y): \(dark)")
        }
        XCTAssertEqual(edgeMap(Image(width: 4, height: 4, channels: 1, value: 0.3)).pixels, [Float](repeating: 1, count: 16))
    }
}
