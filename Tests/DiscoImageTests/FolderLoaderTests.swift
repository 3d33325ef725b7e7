import Foundation
import XCTest
@testable import DiscoImage

final class FolderLoaderTests: XCTestCase {
    /// A domain folder of `count` 6x4 gray PNGs, image i filled with the value i / 255
    /// (so every prepared pixel says which file it came from), in nested folders.
    func makeDomain(count: Int, in dir: String, offset: Int = 0) throws -> String {
        let root = "\(dir)/domain\(offset)"
        for i in 0..<count {
            let sub = "\(root)/part\(i % 3)"
            try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
            let image = Image(width: 6, height: 4, channels: 1, value: Float(i + offset) / 255)
            try encodePNG(image, path: "\(sub)/img\(i).png")
        }
        return root
    }

    /// File ids of each image of an NHWC batch (pixel 0 of each image, times 255).
    func ids(_ batch: [Float], size: Int, channels: Int) -> [Int] {
        stride(from: 0, to: batch.count, by: size * size * channels).map { Int((batch[$0] * 255).rounded()) }
    }

    func testMixedFolderOfGoodBrokenAndOtherFiles() throws {
        let dir = try temporaryFolder(self)
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(dir)/nested/deeper", withIntermediateDirectories: true)
        let good = ["rgb8.png", "gray16.png", "rgba8.png", "baseline.jpg", "cmyk.jpg"]
        for (k, name) in good.enumerated() {
            try fm.copyItem(atPath: sample(name), toPath: "\(dir)/\(k % 2 == 0 ? "nested/deeper/" : "")\(name)")
        }
        let broken = ["truncated.png", "truncated.jpg", "bad-crc.png", "garbage.jpg", "huge.png", "huge.jpg"]
        for name in broken { try fm.copyItem(atPath: sample("broken/\(name)"), toPath: "\(dir)/nested/\(name)") }
        for name in ["empty.png", "notes.txt", "text-named.png"] {
            try fm.copyItem(atPath: sample("broken/\(name)"), toPath: "\(dir)/\(name)")
        }
        let folder = try ImageFolder(path: dir)
        // Recognised by content: the broken PNG/JPEGs count as images; empty and text files do not.
        XCTAssertEqual(folder.count, good.count + broken.count)
        XCTAssertEqual(folder.skippedCount, 3)
        XCTAssertEqual(folder.files, folder.files.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        XCTAssertTrue(folder.skippedWarning!.contains("skipped 3 files"), folder.skippedWarning!)

        // Two full epochs: every batch is full, in [0, 1], and comes only from the good files.
        var options = LoaderOptions()
        options.batch = 4; options.size = 8; options.channels = 3; options.seed = 9
        let loader = UnpairedLoader(a: folder, b: folder, options: options)
        for _ in 0..<6 {
            let batch = try loader.next()
            XCTAssertEqual(batch.a.count, 4 * 8 * 8 * 3)
            XCTAssertTrue(batch.a.allSatisfy { $0 >= 0 && $0 <= 1 })
        }
        // 6 batches x 4 = 24 good images drawn = 4.8 epochs of 5 good files: the cursor has
        // passed 24 good + 6 broken per epoch visited.
        XCTAssertEqual(loader.state.a.epoch, 4)
        XCTAssertGreaterThan(loader.waitSeconds, 0)
    }

    func testFolderErrorsNameTheFolder() throws {
        let dir = try temporaryFolder(self)
        XCTAssertThrowsError(try ImageFolder(path: "\(dir)/missing")) { XCTAssertTrue("\($0)".contains("\(dir)/missing: folder not found")) }
        try FileManager.default.copyItem(atPath: sample("broken/notes.txt"), toPath: "\(dir)/notes.txt")
        XCTAssertThrowsError(try ImageFolder(path: dir)) { XCTAssertTrue("\($0)".contains("no PNG or JPEG images found"), "\($0)") }
        try FileManager.default.copyItem(atPath: sample("broken/truncated.png"), toPath: "\(dir)/t.png")
        XCTAssertThrowsError(try ImageFolder(path: dir)) { XCTAssertTrue("\($0)".hasPrefix("\(dir): none of the 1"), "\($0)") }
    }

    func testResolveDomains() throws {
        let dir = try temporaryFolder(self)
        for sub in ["x", "y", "set/trainA", "set/trainB", "set/testA", "set/testB", "half/trainA"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
        }
        XCTAssertEqual(try resolveDomains(paths: ["\(dir)/x", "\(dir)/y"]), DomainPaths(a: "\(dir)/x", b: "\(dir)/y"))
        XCTAssertEqual(try resolveDomains(paths: ["\(dir)/set"]),
                       DomainPaths(a: "\(dir)/set/trainA", b: "\(dir)/set/trainB", testA: "\(dir)/set/testA", testB: "\(dir)/set/testB"))
        XCTAssertThrowsError(try resolveDomains(paths: ["\(dir)/half"])) { XCTAssertTrue("\($0)".contains("no trainB/")) }
        XCTAssertThrowsError(try resolveDomains(paths: ["\(dir)/x", "\(dir)/nope"])) { XCTAssertTrue("\($0)".contains("nope")) }
        XCTAssertThrowsError(try resolveDomains(paths: [])) { XCTAssertTrue("\($0)".contains("got 0")) }
    }

    /// Every file appears exactly once per epoch; A and B shuffle independently; the same
    /// seed gives the same batches, another seed other ones; with or without the cache.
    func testEpochsShuffleEachFileOncePerEpoch() throws {
        let dir = try temporaryFolder(self)
        let a = try ImageFolder(path: try makeDomain(count: 10, in: dir))
        let b = try ImageFolder(path: try makeDomain(count: 10, in: dir, offset: 100))
        func draws(seed: UInt64, cache: Bool) throws -> ([Int], [Int]) {
            var options = LoaderOptions()
            options.batch = 5; options.size = 4; options.channels = 1; options.seed = seed
            options.cacheBytes = cache ? 1 << 20 : 0
            let loader = UnpairedLoader(a: a, b: b, options: options)
            var idsA: [Int] = [], idsB: [Int] = []
            for _ in 0..<6 {
                let batch = try loader.next()
                idsA += ids(batch.a, size: 4, channels: 1)
                idsB += ids(batch.b, size: 4, channels: 1)
            }
            XCTAssertEqual(loader.iterationsPerEpoch, 2)
            return (idsA, idsB)
        }
        let (idsA, idsB) = try draws(seed: 1, cache: true)
        for epoch in 0..<3 {
            XCTAssertEqual(Set(idsA[(epoch * 10)..<(epoch * 10 + 10)]), Set(0..<10))
            XCTAssertEqual(Set(idsB[(epoch * 10)..<(epoch * 10 + 10)]), Set(100..<110))
        }
        XCTAssertNotEqual(Array(idsA[0..<10]), Array(idsA[10..<20]), "each epoch reshuffles")
        XCTAssertNotEqual(idsA.map { $0 + 100 }, idsB, "A and B use different streams")
        let (againA, againB) = try draws(seed: 1, cache: false)
        XCTAssertEqual(againA, idsA)
        XCTAssertEqual(againB, idsB)
        XCTAssertNotEqual(try draws(seed: 2, cache: true).0, idsA)
    }

    /// A loader started from the state after k batches serves exactly the batches an unbroken
    /// loader serves after its first k, augmentation included, and with domains of different sizes.
    func testResumeIsExact() throws {
        let dir = try temporaryFolder(self)
        let a = try ImageFolder(path: try makeDomain(count: 7, in: dir))
        let bRoot = try makeDomain(count: 11, in: dir, offset: 50)
        // A gradient image so crops and flips change the pixels.
        var gradient = Image(width: 12, height: 10, channels: 3)
        for y in 0..<10 { for x in 0..<12 { for c in 0..<3 { gradient[x, y, c] = Float(x * 10 + y + c) / 200 } } }
        try encodePNG(gradient, path: "\(bRoot)/gradient.png")
        let b = try ImageFolder(path: bRoot)
        var options = LoaderOptions()
        options.batch = 3; options.size = 8; options.channels = 3; options.seed = 77; options.augment = true
        let unbroken = UnpairedLoader(a: a, b: b, options: options)
        var reference: [UnpairedBatch] = []
        for _ in 0..<12 { reference.append(try unbroken.next()) }
        for k in [1, 5, 9] {
            let resumed = UnpairedLoader(a: a, b: b, options: options, state: reference[k - 1].state)
            for j in k..<12 {
                let batch = try resumed.next()
                XCTAssertEqual(batch.a, reference[j].a, "A batch \(j) after resuming at \(k)")
                XCTAssertEqual(batch.b, reference[j].b, "B batch \(j) after resuming at \(k)")
                XCTAssertEqual(batch.state, reference[j].state)
            }
        }
        // The state round-trips through JSON (as in a checkpoint).
        let state = reference[4].state
        XCTAssertEqual(try JSONDecoder().decode(LoaderState.self, from: JSONEncoder().encode(state)), state)
    }

    /// Data-parallel slices (`LoaderOptions.slice`): the ranks' slices of each batch, side by side,
    /// are the batch one loader serves, crops and flips included, across epoch ends; every rank's
    /// state is the whole loader's (so a checkpoint does not depend on the rank count), and a
    /// loader resumed from it serves the same.
    func testSlicesOfABatchAreTheBatch() throws {
        let dir = try temporaryFolder(self)
        let a = try ImageFolder(path: try makeDomain(count: 7, in: dir))
        let bRoot = try makeDomain(count: 11, in: dir, offset: 50)
        var gradient = Image(width: 12, height: 10, channels: 3)
        for y in 0..<10 { for x in 0..<12 { for c in 0..<3 { gradient[x, y, c] = Float(x * 10 + y + c) / 200 } } }
        try encodePNG(gradient, path: "\(bRoot)/gradient.png")
        let b = try ImageFolder(path: bRoot)
        var options = LoaderOptions()
        options.batch = 6; options.size = 8; options.channels = 3; options.seed = 5; options.augment = true
        let whole = UnpairedLoader(a: a, b: b, options: options)
        var reference: [UnpairedBatch] = []
        for _ in 0..<9 { reference.append(try whole.next()) }   // 54 images of A: 7 epochs of 7
        for slices in [[0..<3, 3..<6], [0..<2, 2..<4, 4..<6]] {
            var loaders: [UnpairedLoader] = []
            for r in slices { var o = options; o.slice = r; loaders.append(UnpairedLoader(a: a, b: b, options: o)) }
            for (j, ref) in reference.enumerated() {
                let parts = try loaders.map { try $0.next() }
                XCTAssertEqual(parts.flatMap(\.a), ref.a, "A batch \(j), \(slices.count) slices")
                XCTAssertEqual(parts.flatMap(\.b), ref.b, "B batch \(j), \(slices.count) slices")
                for p in parts { XCTAssertEqual(p.state, ref.state, "state after batch \(j)") }
            }
            // Resumed from the state after batch 4, a slice goes on as before.
            var o = options; o.slice = slices[1]
            let resumed = UnpairedLoader(a: a, b: b, options: o, state: reference[3].state)
            let per = 8 * 8 * 3
            for j in 4..<9 {
                let r = slices[1]
                XCTAssertEqual(try resumed.next().a, Array(reference[j].a[(r.lowerBound * per)..<(r.upperBound * per)]))
            }
        }
    }

    /// With augmentation, one image is served with different crops/flips; without, identically.
    func testAugmentationVariesCropAndFlip() throws {
        let dir = try temporaryFolder(self)
        var gradient = Image(width: 12, height: 10, channels: 1)
        for y in 0..<10 { for x in 0..<12 { gradient[x, y, 0] = Float(x * 10 + y) / 200 } }
        try encodePNG(gradient, path: "\(dir)/gradient.png")
        let folder = try ImageFolder(path: dir)
        for augment in [false, true] {
            var options = LoaderOptions()
            options.batch = 8; options.size = 8; options.channels = 1; options.augment = augment
            XCTAssertEqual(options.augmentedLoadSize, 9)
            let batch = try UnpairedLoader(a: folder, b: folder, options: options).next()
            let images = Set(stride(from: 0, to: batch.a.count, by: 64).map { Array(batch.a[$0..<($0 + 64)]) })
            if augment { XCTAssertGreaterThan(images.count, 2) } else { XCTAssertEqual(images.count, 1) }
        }
    }

    func testLoadSquareImage() throws {
        let image = try loadSquareImage(path: sample("rgba8.png"), size: 5, channels: 1)
        XCTAssertEqual([image.width, image.height, image.channels], [5, 5, 1])
        let direct = try decodeImage(path: sample("rgba8.png")).converted(toChannels: 1).squared(size: 5)
        XCTAssertEqual(image, direct)
    }
}
