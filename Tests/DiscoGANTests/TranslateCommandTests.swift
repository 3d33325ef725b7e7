import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore
import DiscoImage

/// `disco translate` end to end: what it writes against the training code's eval-mode forward.
final class TranslateCommandTests: XCTestCase {
    override func setUp() {
        super.setUp()
        XCTAssertNoThrow(try BLAS.load())
    }

    /// `disco translate` on a folder (many images: streams and Winograd) and on one image (direct)
    /// writes what the eval-mode forward of the training code gives, to the 8-bit rounding;
    /// sub-folders are kept.
    /// A freshly initialised 32x32 gray model's generators, as `disco export` writes them.
    func writeGrayModel(to path: String, seed: UInt64) throws {
        var config = TrainConfig()
        config.size = 32; config.channels = 1
        let model = DiscoGAN(config: config)
        model.initialize(seed: seed)
        try Checkpoint.writeAtomically(Checkpoint.modelData(model: model, iteration: 0, generatorsOnly: true), to: path)
    }

    func testTranslateCommandMatchesEvalForward() throws {
        let root = tempDir("translate-eval")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var config = TrainConfig()
        config.size = 32; config.channels = 3
        let model = DiscoGAN(config: config)
        model.initialize(seed: 5)
        for (net, seed) in [(model.G_AB, 1), (model.G_BA, 2)] {
            let r = randomizedGenerator(size: 32, channels: 3, seed: UInt64(seed))
            net.parameters.values.copy(from: r.parameters.values)
            net.buffers.values.copy(from: r.buffers.values)
        }
        let file = root + "/model.safetensors"
        try Checkpoint.writeAtomically(Checkpoint.modelData(model: model, iteration: 0, generatorsOnly: true), to: file)
        var rng = Xoshiro256(seed: 4)
        var names: [String] = []
        for i in 0..<40 {
            let name = (i % 5 == 0 ? "sub/" : "") + String(format: "%03d.png", i)
            let side = 32 + 4 * (i % 3)  // some need a resize
            let px = (0..<(side * side * 3)).map { _ in rng.nextUniform() }
            try FileManager.default.createDirectory(atPath: root + "/in/sub", withIntermediateDirectories: true)
            try encodePNG(Image(width: side, height: side, channels: 3, pixels: px), path: root + "/in/" + name)
            names.append(name)
        }
        try runDisco(["translate", root + "/in", "-o", root + "/out", "--checkpoint", file, "--direction", "b2a", "--batch", "16"])
        try runDisco(["translate", root + "/in/" + names[1], "-o", root + "/one.png", "--checkpoint", file, "--direction", "b2a"])

        let inputs = try names.map { try loadSquareImage(path: root + "/in/" + $0, size: 32, channels: 3) }
        let x = Tensor(uninitialized: [inputs.count, 32, 32, 3])
        for (k, im) in inputs.enumerated() { for i in 0..<im.pixels.count { x[k * im.pixels.count + i] = im.pixels[i] } }
        let want = model.G_BA.forward(x, mode: .eval, record: false).output
        let per = 32 * 32 * 3
        func check(_ path: String, _ k: Int) throws {
            let got = try decodeImage(path: path)
            XCTAssertEqual([got.width, got.height, got.channels], [32, 32, 3], path)
            var worst: Float = 0
            for i in 0..<per { worst = max(worst, abs(got.pixels[i] - want[k * per + i])) }
            // 8-bit rounding (half a level) plus float differences.
            XCTAssertLessThanOrEqual(worst, 0.5 / 255 + 1e-4, path)
        }
        for (k, name) in names.enumerated() { try check(root + "/out/" + name, k) }
        try check(root + "/one.png", 1)
    }

    /// A relative folder with a sub-folder: names and sub-folders are kept (they used to be
    /// flattened, and the nested inputs then not found).
    func testRelativeFolderKeepsSubfolders() throws {
        let root = tempDir("translate-relative")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeGrayModel(to: root + "/m.safetensors", seed: 2)
        try FileManager.default.createDirectory(atPath: root + "/in/sub", withIntermediateDirectories: true)
        for name in ["a.png", "sub/b.png"] { try encodePNG(Image(width: 40, height: 32, channels: 3, value: 0.3), path: root + "/in/" + name) }
        try runDisco(["translate", "in", "-o", "out", "--checkpoint", "m.safetensors"], in: root)
        for name in ["a.png", "sub/b.png"] {
            let im = try decodeImage(path: root + "/out/" + name)
            XCTAssertEqual([im.width, im.height, im.channels], [32, 32, 1], name)
        }
    }

    /// A model without G_BA (variant gan) refuses b2a with a one-line error naming the file.
    func testTranslateRefusesMissingDirection() throws {
        let root = tempDir("translate-gan")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var config = TrainConfig()
        config.size = 32; config.channels = 1; config.model = .gan
        let model = DiscoGAN(config: config)
        model.initialize(seed: 1)
        // A gan-variant export without G_BA.
        var tensors: [(String, Tensor)] = []
        for (k, t) in model.G_AB.stateDict() { tensors.append(("G_AB.\(k)", t)) }
        let file = root + "/gan.safetensors"
        try Checkpoint.writeAtomically(Safetensors.serialize(tensors, metadata: [
            "format": Checkpoint.formatVersion, "size": "32", "channels": "1", "model": "gan", "iteration": "0"]), to: file)
        try encodePNG(Image(width: 32, height: 32, channels: 1, value: 0.5), path: root + "/a.png")
        try runDisco(["translate", root + "/a.png", "-o", root + "/o.png", "--checkpoint", file])
        let err = try runDisco(["translate", root + "/a.png", "-o", root + "/o2.png", "--checkpoint", file, "--direction", "b2a"], expect: 1)
        XCTAssertTrue(err.contains("gan.safetensors") && err.contains("G_BA"), err)
    }

    /// An output name without a known image extension ("a", "a.bmp", "sub/a") is refused before
    /// anything is loaded or created, with an error naming --output and the extensions understood.
    /// "a" used to die with SIGILL (Foundation's deletingLastPathComponent traps on one-character
    /// names); `disco export -o m` shared the trap.
    func testOutputWithoutKnownExtensionIsRefused() throws {
        let root = tempDir("translate-ext")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeGrayModel(to: root + "/m.safetensors", seed: 3)
        try encodePNG(Image(width: 32, height: 32, channels: 1, value: 0.5), path: root + "/x.png")
        for output in ["a", "a.bmp", "sub/a", "b."] {
            let err = try runDisco(["translate", "x.png", "--output", output, "--checkpoint", "m.safetensors"], expect: 1, in: root)
            XCTAssertTrue(err.contains("--output") && err.contains(output) && err.contains(".png") && err.contains(".jpg"), err)
            XCTAssertFalse(err.contains("Program crashed"), err)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).sorted(), ["m.safetensors", "x.png"])
        // Upper-case extensions are understood; one-character names in the working folder work.
        try runDisco(["translate", "x.png", "--output", "o.PNG", "--checkpoint", "m.safetensors"], in: root)
        XCTAssertEqual(try decodeImage(path: root + "/o.PNG").width, 32)
        try runDisco(["export", "--checkpoint", "m.safetensors", "-o", "e"], in: root)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/e"))
    }

    /// `disco` beside the test bundle.
    var disco: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("disco").path,
                          dir.deletingLastPathComponent().appendingPathComponent("disco").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    /// Runs disco; returns stderr.
    @discardableResult
    /// Nothing is lost: translating a folder into itself, or one image onto itself, is refused
    /// before anything is written (the inputs stay byte for byte); two inputs that would become
    /// one output file (a.gif and a.webp, PNG inside, both written as a.png) are refused, naming both.
    func testTranslateRefusesToOverwriteInputsOrMergeTwoIntoOneFile() throws {
        let root = tempDir("translate-overwrite")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try writeGrayModel(to: root + "/m.safetensors", seed: 3)
        try FileManager.default.createDirectory(atPath: root + "/in", withIntermediateDirectories: true)
        for (name, v) in [("a.png", 0.2), ("b.png", 0.7)] as [(String, Float)] {
            try encodePNG(Image(width: 32, height: 32, channels: 1, value: v), path: root + "/in/" + name)
        }
        let before = try ["a.png", "b.png"].map { try Data(contentsOf: URL(fileURLWithPath: root + "/in/" + $0)) }
        var err = try runDisco(["translate", "in", "-o", "in", "--checkpoint", "m.safetensors"], expect: 1, in: root)
        XCTAssertTrue(err.contains("would replace the input image") && err.contains("choose another --output"), err)
        err = try runDisco(["translate", "in/a.png", "-o", "./in/../in/a.png", "--checkpoint", "m.safetensors"], expect: 1, in: root)
        XCTAssertTrue(err.contains("would replace the input image"), err)
        let after = try ["a.png", "b.png"].map { try Data(contentsOf: URL(fileURLWithPath: root + "/in/" + $0)) }
        XCTAssertEqual(before, after, "the inputs are untouched")

        try FileManager.default.createDirectory(atPath: root + "/two", withIntermediateDirectories: true)
        for name in ["a.gif", "a.webp", "c.png"] {
            try encodePNG(Image(width: 32, height: 32, channels: 1, value: 0.5), path: root + "/two/" + name)
        }
        err = try runDisco(["translate", "two", "-o", "out", "--checkpoint", "m.safetensors"], expect: 1, in: root)
        XCTAssertTrue(err.contains("two/a.gif and two/a.webp would both be written to out/a.png"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out/c.png"), "refused before writing anything")
    }

    /// Files left out of a folder are said, with the reason: not PNG or JPEG inside (a text file,
    /// a text file named .png), or not readable (a file and a sub-folder without permissions:
    /// as root, the command runs as user nobody, for whom they are closed).
    func testTranslateSaysWhichFilesItLeavesOutAndWhy() throws {
        let root = tempDir("translate-left-out")
        defer {
            chmod(root + "/in/b.png", 0o644); chmod(root + "/in/sub", 0o755)
            try? FileManager.default.removeItem(atPath: root)
        }
        chmod(root, 0o755)
        try writeGrayModel(to: root + "/m.safetensors", seed: 3)
        try FileManager.default.createDirectory(atPath: root + "/in/sub", withIntermediateDirectories: true)
        for name in ["a.png", "b.png", "sub/c.png"] {
            try encodePNG(Image(width: 32, height: 32, channels: 1, value: 0.4), path: root + "/in/" + name)
        }
        FileManager.default.createFile(atPath: root + "/in/notes.txt", contents: Data("notes".utf8))
        FileManager.default.createFile(atPath: root + "/in/fake.png", contents: Data("not a png".utf8))
        // Readable by all (files may be written 0600), then closed: b.png and sub/.
        for f in ["m.safetensors", "in/a.png", "in/b.png", "in/sub/c.png", "in/notes.txt", "in/fake.png"] { chmod(root + "/" + f, 0o644) }
        chmod(root + "/in/b.png", 0o000); chmod(root + "/in/sub", 0o000)
        try FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        chmod(root + "/out", 0o777)
        let p = Process()
        if getuid() == 0 {
            // A copy of the binary every user can run (the build folder may not be).
            let copy = root + "/disco"
            try FileManager.default.copyItem(atPath: disco, toPath: copy)
            chmod(copy, 0o755)
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", copy]
        } else {
            p.executableURL = URL(fileURLWithPath: disco)
            p.arguments = []
        }
        p.arguments! += ["translate", root + "/in", "-o", root + "/out/t", "--checkpoint", root + "/m.safetensors"]
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice; p.standardError = err
        try p.run()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, e)
        XCTAssertTrue(e.contains("skipped 2 files that are not PNG or JPEG (e.g. fake.png, notes.txt)"), e)
        XCTAssertTrue(e.contains("skipped 2 files or folders that cannot be opened (b.png: Permission denied; sub: Permission denied)"), e)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/out/t/a.png"), e)
    }

    func runDisco(_ args: [String], expect code: Int32 = 0, in folder: String? = nil,
                  file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: disco)
        p.arguments = args
        if let folder { p.currentDirectoryURL = URL(fileURLWithPath: folder) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        _ = out.fileHandleForReading.readDataToEndOfFile()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, code, "disco \(args.joined(separator: " ")): \(e)", file: file, line: line)
        return e
    }
}
