import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// End-to-end runs of the built `disco` executable on tiny data, as a user would run it.
final class CLITests: XCTestCase {
    /// `disco` beside the test bundle (.build/<config>/disco).
    var disco: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("disco").path,
                          dir.deletingLastPathComponent().appendingPathComponent("disco").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    @discardableResult
    func run(_ args: [String], expect code: Int32 = 0, environment: [String: String] = [:],
             file: StaticString = #filePath, line: UInt = #line) throws -> (out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: disco)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let result = (String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        XCTAssertEqual(p.terminationStatus, code, "disco \(args.joined(separator: " ")):\n\(result.0)\n\(result.1)", file: file, line: line)
        return result
    }

    /// Writes `count` 40x36 RGB images: domain A dark squares on light, domain B light discs on dark.
    func makeDomain(_ dir: String, count: Int, kind: Int) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for i in 0..<count {
            var img = Image(width: 40, height: 36, channels: 3, value: kind == 0 ? 0.9 : 0.1)
            for y in 0..<36 { for x in 0..<40 {
                let inside = kind == 0 ? (abs(x - 20 - i) < 8 && abs(y - 18) < 8) : ((x - 20) * (x - 20) + (y - 18 + i) * (y - 18 + i) < 90)
                if inside { for c in 0..<3 { img.pixels[(y * 40 + x) * 3 + c] = kind == 0 ? 0.1 : 0.8 + 0.05 * Float(c) } }
            } }
            try encodePNG(img, path: dir + String(format: "/%03d.png", i))
        }
    }

    func testTrainTranslateEvalAndResume() throws {
        let root = NSTemporaryDirectory() + "disco-cli-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/data/trainA", count: 8, kind: 0)
        try makeDomain(root + "/data/trainB", count: 8, kind: 1)
        try makeDomain(root + "/data/testA", count: 3, kind: 0)
        try makeDomain(root + "/data/testB", count: 3, kind: 1)
        FileManager.default.createFile(atPath: root + "/data/trainA/notes.txt", contents: Data("not an image".utf8))
        let run = root + "/run"
        let common = ["--size", "32", "--channels", "3", "--batch", "4", "--sample-every", "3", "--save-every", "3", "--out", run]

        try self.run(["train", root + "/data", "--iterations", "4"] + common)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/report.html"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/samples/iter-00000003.png"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/iter-00000004/model.safetensors"))
        let log = try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8)
        XCTAssertTrue(log.contains("\"gen_total\"") && log.contains("\"dis_total\""), log)
        // A second start without --resume is refused and leaves the checkpoints alone.
        let refused = try self.run(["train", root + "/data", "--iterations", "6"] + common, expect: 1)
        XCTAssertTrue(refused.err.contains("--resume"), refused.err)
        try self.run(["train", root + "/data", "--iterations", "6", "--resume"] + common)
        // Three saves (3, 4, 6): the oldest is pruned, the last two kept (--keep 2, the default).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints").sorted(),
                       ["iter-00000004", "iter-00000006"])
        // Resumed through the real loader, the run ends bit-identical to one never interrupted.
        let straight = root + "/straight"
        try self.run(["train", root + "/data", "--iterations", "6"] + common.dropLast(2) + ["--out", straight])
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let resumed = try Safetensors.read(path: run + "/checkpoints/iter-00000006/" + file)
            let uninterrupted = try Safetensors.read(path: straight + "/checkpoints/iter-00000006/" + file)
            XCTAssertEqual(resumed.names, uninterrupted.names, file)
            for name in resumed.names where resumed.entries[name]!.floats != uninterrupted.entries[name]!.floats {
                XCTFail("\(file) \(name): resumed run differs from the uninterrupted one")
            }
        }

        // Translate one file (any size in; model size out, or input size with --keep-size) and a folder.
        try self.run(["translate", root + "/data/testA/000.png", "--output", root + "/one.png", "--checkpoint", run])
        XCTAssertEqual(try decodeImage(path: root + "/one.png").width, 32)
        try self.run(["translate", root + "/data/testA/000.png", "--output", root + "/one.jpg", "--checkpoint", run, "--keep-size", "--direction", "b2a"])
        let kept = try decodeImage(path: root + "/one.jpg")
        XCTAssertEqual([kept.width, kept.height], [40, 36])
        try self.run(["translate", root + "/data/testB", "--output", root + "/outB", "--checkpoint", run, "--direction", "b2a"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/outB").sorted(), ["000.png", "001.png", "002.png"])

        // Eval: JSON with reconstruction and paired scores.
        let ev = try self.run(["eval", "--checkpoint", run, "--a", root + "/data/testA", "--b", root + "/data/testB",
                               "--paired-b", root + "/data/testB", "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(ev.out.utf8)) as! [String: Any]
        for key in ["reconstruction_A", "reconstruction_B", "translation_AB_vs_paired_B", "identity_baseline_A_vs_paired_B"] {
            let r = try XCTUnwrap(obj[key] as? [String: Any], key)
            XCTAssertEqual(r["count"] as? Int, 3)
            let ssim = try XCTUnwrap(r["ssim"] as? [String: Double])
            XCTAssertTrue((-1...1).contains(ssim["mean"]!))
        }
        // Eval's numbers, recomputed here from the files: the test images at the model's size, and
        // translate's PNGs of testA. Those are 8-bit, off eval's float x_AB by at most d = 1/510 per
        // value, so L1 may differ by d and MSE by 2 d L1 + d^2; the identity baseline must agree.
        try self.run(["translate", root + "/data/testA", "--output", root + "/outA", "--checkpoint", run])
        func mean(_ key: String, _ metric: String) -> Double { ((obj[key] as! [String: Any])[metric] as! [String: Double])["mean"]! }
        var own = (mseAB: 0.0, l1AB: 0.0, mseId: 0.0, l1Id: 0.0, psnrId: 0.0, ssimId: 0.0)
        for i in 0..<3 {
            let name = String(format: "%03d.png", i)
            let a = try loadSquareImage(path: root + "/data/testA/" + name, size: 32, channels: 3).pixels
            let b = try loadSquareImage(path: root + "/data/testB/" + name, size: 32, channels: 3).pixels
            let ab = try decodeImage(path: root + "/outA/" + name).pixels
            XCTAssertEqual(ab.count, b.count)
            let mseId = meanSquared(a, b)
            own.mseAB += meanSquared(ab, b) / 3
            own.l1AB += meanAbsolute(ab, b) / 3
            own.mseId += mseId / 3
            own.l1Id += meanAbsolute(a, b) / 3
            own.psnrId += 10 * log10(1 / mseId) / 3
            let ssim = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
                Metrics.ssim(pa.baseAddress!, pb.baseAddress!, height: 32, width: 32, channels: 3) } }
            own.ssimId += ssim / 3
        }
        let d = 1.0 / 510, id = "identity_baseline_A_vs_paired_B", tr = "translation_AB_vs_paired_B"
        // (eval sums MSE and L1 per image in Float: 1e-6 relative)
        XCTAssertEqual(mean(id, "mse"), own.mseId, accuracy: 1e-6 * own.mseId)
        XCTAssertEqual(mean(id, "l1"), own.l1Id, accuracy: 1e-6 * own.l1Id)
        XCTAssertEqual(mean(id, "psnr"), own.psnrId, accuracy: 1e-6)
        XCTAssertEqual(mean(id, "ssim"), own.ssimId, accuracy: 1e-9)
        XCTAssertEqual(mean(tr, "l1"), own.l1AB, accuracy: d + 1e-7)
        XCTAssertEqual(mean(tr, "mse"), own.mseAB, accuracy: 2 * d * own.l1AB + d * d + 1e-7)
        XCTAssertGreaterThan(abs(mean(tr, "mse") - mean(id, "mse")), 1e-4, "translation scored like the identity")
    }

    func meanSquared(_ x: [Float], _ y: [Float]) -> Double {
        var s = 0.0
        for (u, v) in zip(x, y) { let e = Double(u) - Double(v); s += e * e }
        return s / Double(x.count)
    }

    func meanAbsolute(_ x: [Float], _ y: [Float]) -> Double {
        var s = 0.0
        for (u, v) in zip(x, y) { s += abs(Double(u) - Double(v)) }
        return s / Double(x.count)
    }

    /// SIGINT mid-run: the step finishes, a loadable checkpoint is saved, exit code 0, and --resume continues.
    func testSigintSavesAndExitsCleanly() throws {
        let root = NSTemporaryDirectory() + "disco-cli-sigint-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 8, kind: 0)
        try makeDomain(root + "/b", count: 8, kind: 1)
        let run = root + "/run"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: disco)
        p.arguments = ["train", root + "/a", root + "/b", "--size", "32", "--batch", "4", "--iterations", "100000",
                       "--save-every", "100000", "--sample-every", "100000", "--log-every", "1", "--out", run]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        // Wait until a few iterations are logged, then interrupt.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let log = try? String(contentsOfFile: run + "/log.jsonl", encoding: .utf8),
               log.split(separator: "\n").count >= 3 { break }
            usleep(50_000)
        }
        kill(p.processIdentifier, SIGINT)
        let e = err.fileHandleForReading.readDataToEndOfFile()
        _ = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, String(decoding: e, as: UTF8.self))
        XCTAssertTrue(String(decoding: e, as: UTF8.self).contains("--resume"))
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")
        XCTAssertEqual(ckpts.count, 1, "\(ckpts)")
        let stopped = Int(ckpts[0].dropFirst("iter-".count))!
        XCTAssertGreaterThanOrEqual(stopped, 3)
        try self.run(["translate", root + "/a/000.png", "--output", root + "/t.png", "--checkpoint", run])
        try self.run(["train", root + "/a", root + "/b", "--size", "32", "--batch", "4", "--iterations", "\(stopped + 2)",
                      "--out", run, "--resume"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + String(format: "/checkpoints/iter-%08d", stopped + 2)))
    }

    func testBadInputGetsOneLineErrors() throws {
        let root = NSTemporaryDirectory() + "disco-cli-bad-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        var r = try run(["train", root + "/missing-a", root + "/missing-b"], expect: 1)
        XCTAssertTrue(r.err.contains("missing-a"), r.err)
        r = try run(["train", root + "/empty", root + "/empty"], expect: 1)
        XCTAssertTrue(r.err.contains("empty"), r.err)
        r = try run(["train", root, root, "--size", "48"], expect: 64)
        XCTAssertTrue(r.err.contains("--size"), r.err)
        r = try run(["translate", root + "/nothing.png", "--output", root + "/o.png", "--checkpoint", root + "/no-run"], expect: 1)
        XCTAssertTrue(r.err.contains("no-run"), r.err)
        FileManager.default.createFile(atPath: root + "/fake.safetensors", contents: Data("garbage".utf8))
        r = try run(["eval", "--checkpoint", root + "/fake.safetensors", "--a", root + "/empty"], expect: 1)
        XCTAssertTrue(r.err.contains("fake.safetensors"), r.err)
        // An output path that cannot be written: a regular file stands where the run folder would go.
        try makeDomain(root + "/a", count: 4, kind: 0)
        FileManager.default.createFile(atPath: root + "/blocker", contents: Data())
        r = try run(["train", root + "/a", root + "/a", "--size", "32", "--batch", "2", "--iterations", "1", "--out", root + "/blocker/run"], expect: 1)
        XCTAssertTrue(r.err.contains("blocker"), r.err)
    }

    /// `--bf16`: training runs with bfloat16 GEMMs (and says so) where the CPU has AVX512-BF16 and
    /// an OpenBLAS with cblas_sbgemm is found (`make openblas-bf16`); otherwise one line says why not
    /// and what to do, and nothing is trained.
    func testBF16FlagTrainsOrExplains() throws {
        let root = NSTemporaryDirectory() + "disco-cli-bf16-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let hasBF16 = BLAS.CPUFeatures.current().avx512bf16
        func train(_ out: String) -> [String] {
            ["train", root + "/a", root + "/b", "--size", "32", "--batch", "2", "--iterations", "2", "--bf16", "--out", root + "/" + out]
        }
        var (out, err) = try run(train("run"), expect: hasBF16 ? 0 : 1)
        if hasBF16 {
            XCTAssertTrue(out.contains("bfloat16 GEMMs"), out)
            XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/run/checkpoints/iter-00000002/model.safetensors"), out + err)
            // The run records it: resuming in float32 is refused, naming the option.
            let r = try run(["train", root + "/a", root + "/b", "--size", "32", "--batch", "2", "--iterations", "3", "--out", root + "/run", "--resume"], expect: 1)
            XCTAssertTrue(r.err.contains("--bf16 off (the run has on)"), r.err)
        } else {
            XCTAssertTrue(err.contains("AVX512-BF16"), err)
        }
        // Without the second library (unless the system's OpenBLAS has sbgemm itself).
        guard !(try BLAS.load().hasOwnSbgemm) else { return }
        (out, err) = try run(train("run2"), expect: 1, environment: ["DISCO_SBGEMM_LIBRARY": root + "/nowhere/libopenblas.so"])
        XCTAssertTrue(err.contains(hasBF16 ? "make openblas-bf16" : "AVX512-BF16"), err)
        if hasBF16 { XCTAssertTrue(err.contains(root + "/nowhere/libopenblas.so: not found"), err) }
        XCTAssertEqual(err.split(separator: "\n").count, 1, "one line: \(err)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/run2/checkpoints"))
    }

    /// A command whose results cannot be written to stdout (here /dev/full: ENOSPC on every write)
    /// fails: exit 1 and a message on stderr. Each command that prints results is run so; they
    /// all used to exit 0 with the results lost.
    func testStdoutWriteErrorsFailTheCommand() throws {
        let root = NSTemporaryDirectory() + "disco-cli-full-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 3, kind: 0)
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("checkpoints/default/model.safetensors").path
        let commands: [[String]] = [
            ["eval", "--checkpoint", model, "--a", root + "/a", "--json"],
            ["eval", "--checkpoint", model, "--a", root + "/a"],
            ["info", "--json", "--sgemm-size", "64"],
            ["info", "--sgemm-size", "64"],
            ["translate", root + "/a", "--output", root + "/out", "--checkpoint", model],
            ["bench", "train", "--batch", "2", "--size", "32", "--channels", "1", "--iterations", "2", "--warmup", "0", "--json"],
            ["--help"],
        ]
        for args in commands {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: disco)
            p.arguments = args
            let full = try XCTUnwrap(FileHandle(forWritingAtPath: "/dev/full"))
            let err = Pipe()
            p.standardOutput = full; p.standardError = err
            try p.run()
            let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            try full.close()
            let what = "disco \(args.joined(separator: " ")) > /dev/full: \(e)"
            XCTAssertEqual(p.terminationReason, .exit, what)
            XCTAssertEqual(p.terminationStatus, 1, what)
            XCTAssertTrue(e.contains("standard output") && e.contains("No space left on device"), what)
        }
        // The translation itself was still done.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/out").count, 3)
    }
}
