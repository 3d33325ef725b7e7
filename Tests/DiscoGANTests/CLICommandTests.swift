import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// End to end, the commands the train/translate/eval test does not run: data, export, info,
/// translate with the default model, and translate and eval of a folder holding unreadable files.
extension CLITests {
    /// A scratch folder with domains a/ and b/ of `images` images each, and a 32 px run trained on
    /// them for `iterations` iterations in root/run.
    func tinyRun(_ tag: String, images: Int, iterations: Int) throws -> (root: String, run: String) {
        let root = NSTemporaryDirectory() + "disco-cli-\(tag)-\(getpid())"
        try makeDomain(root + "/a", count: images, kind: 0)
        try makeDomain(root + "/b", count: images, kind: 1)
        try run(["train", root + "/a", root + "/b", "--size", "32", "--batch", "2", "--iterations", "\(iterations)", "--out", root + "/run"])
        return (root, root + "/run")
    }

    /// `disco data` at 28 px (Fashion-MNIST's own size): the documented counts, test A/B paired by
    /// name, and testB's first image equal to the first shoe (labels 5, 7, 9) of t10k, read here
    /// from Debian's idx files with gzip, independently of disco's reader.
    func testDataBuildsEdgesShoes() throws {
        let root = NSTemporaryDirectory() + "disco-cli-data-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try run(["data", "fashion-mnist", "edges-shoes", "--out", root, "--size", "28"])
        XCTAssertTrue(r.out.contains("built"), r.out)
        let fm = FileManager.default
        for (folder, n) in [("trainA", 9000), ("trainB", 9000), ("testA", 3000), ("testB", 3000)] {
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: root + "/" + folder).filter { $0.hasSuffix(".png") }.count, n, folder)
        }
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: root + "/testA").sorted(), try fm.contentsOfDirectory(atPath: root + "/testB").sorted())
        func gunzip(_ path: String) throws -> [UInt8] {
            let p = Process(), out = Pipe()
            p.executableURL = URL(fileURLWithPath: "/bin/gzip"); p.arguments = ["-dc", path]; p.standardOutput = out
            try p.run()
            let d = out.fileHandleForReading.readDataToEndOfFile(); p.waitUntilExit()
            return [UInt8](d)
        }
        let dir = "/usr/share/datasets/fashion-mnist/"
        let labels = try gunzip(dir + "t10k-labels-idx1-ubyte.gz").dropFirst(8), images = try gunzip(dir + "t10k-images-idx3-ubyte.gz")
        let first = try XCTUnwrap(labels.firstIndex { [5, 7, 9].contains($0) }) - labels.startIndex
        let want = images[(16 + first * 784)..<(16 + (first + 1) * 784)].map { Float($0) / 255 }
        let got = try decodeImage(path: root + "/testB/00001.png")
        XCTAssertEqual([got.width, got.height, got.channels], [28, 28, 1])
        XCTAssertEqual(got.pixels.count, want.count)
        XCTAssertLessThanOrEqual(zip(got.pixels, want).map { abs($0 - $1) }.max() ?? 1, 0.5 / 255)
        let edge = try decodeImage(path: root + "/testA/00001.png")
        XCTAssertNotEqual(edge.pixels, got.pixels, "testA holds edge maps, not the shoes themselves")
    }

    /// `disco info --json`: every field present, the kernel set one of OpenBLAS's, a measured sgemm.
    func testInfoReportsCPUAndKernels() throws {
        let r = try run(["info", "--json", "--sgemm-size", "256"])
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        for key in ["cpu", "cpu_features", "blas_library", "blas_core", "conv_algorithm", "sgemm_gflops", "disco_threads"] {
            XCTAssertNotNil(obj[key], key)
        }
        XCTAssertTrue(["Sandybridge", "Haswell", "SkylakeX", "Cooperlake", "Zen", "Prescott"].contains { (obj["blas_core"] as? String ?? "").contains($0) }, "\(obj)")
        XCTAssertGreaterThan(obj["sgemm_gflops"] as? Double ?? 0, 0)
        let text = try run(["info", "--sgemm-size", "256"]).out
        XCTAssertTrue(text.contains("kernel set:") && text.contains("GFLOP/s"), text)
    }

    /// Export keeps the generators only, and translating with the exported file gives the same
    /// image as translating with the run. The default model (checkpoints/default) translates a
    /// gray 32x32 bag without --checkpoint.
    func testExportAndDefaultModel() throws {
        let (root, run) = try tinyRun("export", images: 4, iterations: 2)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try self.run(["export", "--checkpoint", run, "--output", root + "/export/g.safetensors"])
        let exported = try Safetensors.read(path: root + "/export/g.safetensors")
        XCTAssertFalse(exported.names.isEmpty)
        XCTAssertTrue(exported.names.allSatisfy { $0.hasPrefix("G_AB.") || $0.hasPrefix("G_BA.") }, "\(exported.names.filter { !$0.hasPrefix("G_") })")
        let full = try Safetensors.read(path: run + "/checkpoints/iter-00000002/model.safetensors")
        for name in exported.names { XCTAssertEqual(exported.entries[name]!.floats, full.entries[name]!.floats, name) }
        try self.run(["translate", root + "/a/000.png", "--output", root + "/via-run.png", "--checkpoint", run])
        try self.run(["translate", root + "/a/000.png", "--output", root + "/via-export.png", "--checkpoint", root + "/export/g.safetensors"])
        XCTAssertEqual(try decodeImage(path: root + "/via-run.png").pixels, try decodeImage(path: root + "/via-export.png").pixels)

        // The default model, found from the checkout (the test runs in it, as `make test` does).
        let r = try self.run(["translate", root + "/a/001.png", "--output", root + "/shoe.png"])
        let shoe = try decodeImage(path: root + "/shoe.png")
        XCTAssertEqual([shoe.width, shoe.height], [32, 32], r.out + r.err)
    }

    /// A folder holding a corrupt PNG, a truncated JPEG and a text file beside good images:
    /// translate writes the good ones, names each skipped file and exits 0; eval scores the good
    /// ones and names the skipped files.
    func testFolderWithUnreadableFiles() throws {
        let (root, run) = try tinyRun("unreadable", images: 4, iterations: 1)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var png = try Data(contentsOf: URL(fileURLWithPath: root + "/a/000.png"))
        png.replaceSubrange(40..<min(png.count, 120), with: Data(repeating: 0x5a, count: min(png.count, 120) - 40))
        try png.write(to: URL(fileURLWithPath: root + "/a/bad.png"))
        try encodeJPEG(try decodeImage(path: root + "/a/001.png"), path: root + "/a/cut.jpg", quality: 90)
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: root + "/a/cut.jpg"))
        try jpeg.prefix(jpeg.count / 3).write(to: URL(fileURLWithPath: root + "/a/cut.jpg"))
        FileManager.default.createFile(atPath: root + "/a/readme.txt", contents: Data("text".utf8))

        let t = try self.run(["translate", root + "/a", "--output", root + "/out", "--checkpoint", run])
        let written = try FileManager.default.contentsOfDirectory(atPath: root + "/out").sorted()
        XCTAssertTrue(Set(["000.png", "001.png", "002.png", "003.png"]).isSubset(of: Set(written)), "\(written)")
        XCTAssertFalse(written.contains("bad.png"), "\(written)")
        XCTAssertTrue(t.err.contains("bad.png"), t.err)
        let e = try self.run(["eval", "--checkpoint", run, "--a", root + "/a", "--json"])
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(e.out.utf8)) as? [String: Any])
        let rec = try XCTUnwrap(obj["reconstruction_A"] as? [String: Any])
        // 4 good images, plus the truncated JPEG if libjpeg decodes its first rows (it warns and
        // fills the rest); the corrupt PNG and the text file never count.
        XCTAssertGreaterThanOrEqual(rec["count"] as? Int ?? 0, 4)
        XCTAssertLessThanOrEqual(rec["count"] as? Int ?? 99, 5)
        XCTAssertTrue(e.err.contains("bad.png"), e.err)
    }

    /// `--version` names the commit `git rev-parse HEAD` gives for the checkout the binary sits in;
    /// `--threads` sets disco's workers (seen by `info`) and refuses nonsense naming the option.
    func testVersionAndThreads() throws {
        let checkout = URL(fileURLWithPath: disco).deletingLastPathComponent().path
        let git = Process(), out = Pipe()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        git.arguments = ["-C", checkout, "rev-parse", "HEAD"]; git.standardOutput = out
        try git.run()
        let head = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(12)
        git.waitUntilExit()
        let v = try run(["--version"]).out
        XCTAssertTrue(v.hasPrefix("disco "), v)
        if git.terminationStatus == 0 { XCTAssertTrue(v.contains("(commit \(head))"), "\(v) vs \(head)") }
        let info = try run(["info", "--json", "--sgemm-size", "64", "--threads", "1"]).out
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
        XCTAssertEqual(obj["disco_threads"] as? Int, 1)
        let bad = try run(["info", "--threads", "0"], expect: 64)
        XCTAssertTrue(bad.err.contains("--threads"), bad.err)
    }

    /// `translate DIR --html --paired DIR`: one row per image with its images beside the page, and
    /// distances that agree with the files (each an 8-bit PNG, so within 1/255 in L1).
    func testTranslateResultsPage() throws {
        let (root, run) = try tinyRun("html", images: 3, iterations: 2)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try self.run(["translate", root + "/a", "--output", root + "/out", "--checkpoint", run, "--html", "--paired", root + "/b"])
        XCTAssertTrue(r.out.contains("index.html"), r.out)
        let html = try String(contentsOfFile: root + "/out/index.html", encoding: .utf8)
        let rowPattern = try NSRegularExpression(pattern: "<tr><td class=\"n\">([^<]+)</td>(.*?)</tr>")
        let rows = rowPattern.matches(in: html, range: NSRange(html.startIndex..., in: html))
        XCTAssertEqual(rows.count, 3)
        for m in rows {
            let name = (html as NSString).substring(with: m.range(at: 1))
            let cells = (html as NSString).substring(with: m.range(at: 2))
            let numbers = try NSRegularExpression(pattern: "<td>([0-9.]+)</td>").matches(in: cells, range: NSRange(cells.startIndex..., in: cells))
                .map { Double((cells as NSString).substring(with: $0.range(at: 1)))! }
            XCTAssertEqual(numbers.count, 3, cells)  // reconstruction L1, translation L1, SSIM
            let stem = (name as NSString).deletingPathExtension
            let input = try decodeImage(path: root + "/out/index-files/\(stem)-input.png").pixels
            let rec = try decodeImage(path: root + "/out/index-files/\(stem)-reconstruction.png").pixels
            let fake = try decodeImage(path: root + "/out/" + name).pixels
            let truth = try decodeImage(path: root + "/out/index-files/\(stem)-truth.png").pixels
            XCTAssertEqual(numbers[0], meanAbsolute(input, rec), accuracy: 1.0 / 255 + 1e-4, name)
            XCTAssertEqual(numbers[1], meanAbsolute(fake, truth), accuracy: 1.0 / 255 + 1e-4, name)
        }
        let bad = try self.run(["translate", root + "/a/000.png", "--output", root + "/o.png", "--checkpoint", run, "--html"], expect: 1)
        XCTAssertTrue(bad.err.contains("--html"), bad.err)
    }

    /// report.html follows the log, not only the samples: while a run has logged a few iterations
    /// and drawn no sample yet, the page already shows them.
    func testReportIsRefreshedAtLogLines() throws {
        let root = NSTemporaryDirectory() + "disco-cli-reportlog-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: disco)
        p.arguments = ["train", root + "/a", root + "/b", "--size", "32", "--batch", "2", "--iterations", "100000",
                       "--save-every", "100000", "--sample-every", "100000", "--log-every", "1", "--out", root + "/run"]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
        var shown: Int?
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && shown == nil {
            usleep(100_000)
            guard let html = try? String(contentsOfFile: root + "/run/report.html", encoding: .utf8),
                  let r = html.range(of: "iteration <b>") else { continue }
            if let n = Int(html[r.upperBound...].prefix { $0.isNumber }), n >= 5 { shown = n }
        }
        XCTAssertNotNil(shown, "report.html did not follow the log")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/run/samples"), "a sample was drawn: the test proves nothing")
    }

    /// `--keep-best` keeps in RUN/best the checkpoint whose held-out reconstruction distance is the
    /// lowest: checked against `disco eval` of every checkpoint (all kept with --keep 0).
    func testKeepBestKeepsTheCheckpointEvalScoresBest() throws {
        let root = NSTemporaryDirectory() + "disco-cli-best-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (folder, n, kind) in [("trainA", 6, 0), ("trainB", 6, 1), ("testA", 3, 0), ("testB", 3, 1)] {
            try makeDomain(root + "/data/" + folder, count: n, kind: kind)
        }
        let run = root + "/run"
        try self.run(["train", root + "/data", "--size", "32", "--batch", "2", "--iterations", "5", "--save-every", "1",
                      "--keep", "0", "--keep-best", "--out", run])
        var scores: [(Int, Double)] = []
        for it in 1...5 {
            let ckpt = run + String(format: "/checkpoints/iter-%08d", it)
            let e = try self.run(["eval", "--checkpoint", ckpt, "--a", root + "/data/testA", "--b", root + "/data/testB", "--json"])
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(e.out.utf8)) as? [String: Any])
            func l1(_ k: String) -> Double { ((obj[k] as! [String: Any])["l1"] as! [String: Double])["mean"]! }
            scores.append((it, (l1("reconstruction_A") + l1("reconstruction_B")) / 2))
        }
        let want = scores.min { $0.1 < $1.1 }!
        let record = try XCTUnwrap(Checkpoint.bestRecord(run: run))
        XCTAssertEqual(record.iteration, want.0, "\(scores)")
        XCTAssertEqual(record.distance, want.1, accuracy: 1e-6 * want.1)
        let best = try Data(contentsOf: URL(fileURLWithPath: run + "/best/model.safetensors"))
        let chosen = try Data(contentsOf: URL(fileURLWithPath: run + String(format: "/checkpoints/iter-%08d/model.safetensors", want.0)))
        XCTAssertEqual(best, chosen)
        // RUN/best translates like any checkpoint folder, and --keep-best is part of the run's settings.
        try self.run(["translate", root + "/data/testA/000.png", "--output", root + "/t.png", "--checkpoint", run + "/best"])
        let r = try self.run(["train", root + "/data", "--size", "32", "--batch", "2", "--iterations", "6", "--out", run, "--resume"], expect: 1)
        XCTAssertTrue(r.err.contains("--keep-best"), r.err)
        // Without test folders, the last 5% (here 1) of each training folder is held out.
        try self.run(["train", root + "/data/trainA", root + "/data/trainB", "--size", "32", "--batch", "2", "--iterations", "2",
                      "--save-every", "1", "--keep-best", "--out", root + "/run2"])
        XCTAssertNotNil(Checkpoint.bestRecord(run: root + "/run2"))
        let folder = try ImageFolder(path: root + "/data/trainA")
        let (kept, out) = folder.holdingOut(1)
        XCTAssertEqual(kept.files + out, folder.files)
        XCTAssertEqual(out.map { ($0 as NSString).lastPathComponent }, ["005.png"])
    }
}
