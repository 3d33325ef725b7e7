import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// `disco gan train` and `disco gan sample` as a user runs them (the built binary, tiny folders).
final class GANCLITests: XCTestCase {
    /// `disco` beside the test bundle, run with `args`; the exit code must be `code`.
    @discardableResult
    func run(_ args: [String], expect code: Int32? = 0, environment: [String: String] = [:],
             file: StaticString = #filePath, line: UInt = #line) throws -> (out: String, err: String) {
        let p = discoProcess(args)
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let result = (String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        lastStatus = p.terminationStatus
        if let code { XCTAssertEqual(p.terminationStatus, code, "disco \(args.joined(separator: " ")):\n\(result.0)\n\(result.1)", file: file, line: line) }
        return result
    }

    var lastStatus: Int32 = 0

    func discoProcess(_ args: [String]) -> Process {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let p = Process()
        p.executableURL = [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("disco") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? dir.appendingPathComponent("disco")
        p.arguments = args
        return p
    }

    func testTrainSampleAndErrors() throws {
        let root = NSTemporaryDirectory() + "disco-gancli-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeGANFolder(root + "/data")
        let run = root + "/run"
        let out = try self.run(["gan", "train", root + "/data", "--arch", "dcgan", "--conditional", "--width", "4",
                                "--epochs", "1", "--batch", "8", "--out", run])
        XCTAssertTrue(out.out.contains("read 24 images (3 labels)"), out.out)
        for f in ["report.html", "config.json", "log.jsonl", "samples/epoch-0001.png", "checkpoints/iter-00000003/state.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + f), f)
        }
        // --resume to a second epoch.
        try self.run(["gan", "train", root + "/data", "--arch", "dcgan", "--conditional", "--width", "4",
                      "--epochs", "2", "--batch", "8", "--out", run, "--resume"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/iter-00000006"))
        // A grid with one row per label, a folder of PNGs of one label (by name), the same seed the same images.
        try self.run(["gan", "sample", "--checkpoint", run, "--count", "6", "--output", root + "/grid.png"])
        let grid = try decodeImage(path: root + "/grid.png")
        XCTAssertEqual(grid.width, 2 * 28 + 3 * 2); XCTAssertEqual(grid.height, 3 * 28 + 4 * 2)
        try self.run(["gan", "sample", "--checkpoint", run, "--count", "3", "--label", "1-class1", "--seed", "4", "--output", root + "/one/"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/one").sorted(),
                       ["00000-1-class1.png", "00001-1-class1.png", "00002-1-class1.png"])
        let model = try GANCheckpoint.loadModel(checkpoint: run + "/checkpoints/iter-00000006")
        let direct = try model.sample(count: 3, labels: [1, 1, 1], seed: 4)
        let written = try decodeImage(path: root + "/one/00001-1-class1.png")
        for i in 0..<(28 * 28) { XCTAssertEqual(written.pixels[i], direct[28 * 28 + i], accuracy: 0.5 / 255 + 1e-6) }
        // Errors name the option or file.
        var e = try self.run(["gan", "sample", "--checkpoint", run, "--label", "7", "--output", root + "/x.png"], expect: 1)
        XCTAssertTrue(e.err.contains("--label 7"), e.err)
        e = try self.run(["gan", "sample", "--checkpoint", run, "--output", root + "/x.txt"], expect: 1)
        XCTAssertTrue(e.err.contains("--output"), e.err)
        try makeGANFolder(root + "/plain", labelled: false)
        e = try self.run(["gan", "train", root + "/plain", "--conditional", "--epochs", "1", "--batch", "8", "--out", root + "/r2"], expect: 1)
        XCTAssertTrue(e.err.contains("--conditional") && e.err.contains("no label subfolders"), e.err)
        e = try self.run(["gan", "train", root + "/data", "--loss", "lsgan", "--g-loss", "minimax", "--epochs", "1", "--out", root + "/r3"], expect: 1)
        XCTAssertTrue(e.err.contains("--g-loss minimax"), e.err)
        e = try self.run(["gan", "train", root + "/data", "--width", "8", "--epochs", "1", "--out", root + "/r5"], expect: 1)
        XCTAssertTrue(e.err.contains("--width 8"), e.err)
        e = try self.run(["gan", "train", root + "/data", "--epochs", "1", "--out", root + "/r4"], expect: 1)
        XCTAssertTrue(e.err.contains("--batch 500"), e.err)
    }

    /// `disco bench gan --json`: both models, the per-epoch figure = seconds per iteration x floor(60000 / batch).
    func testBenchGAN() throws {
        let out = try run(["bench", "gan", "--mlp-iterations", "1", "--dcgan-iterations", "1", "--warmup", "0", "--json"]).out
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        let results = obj["results"] as! [[String: Any]]
        XCTAssertEqual(results.map { $0["arch"] as! String }, ["mlp", "conditional dcgan"])
        for r in results {
            let b = r["batch"] as! Int, perIter = r["sec_per_iter"] as! Double
            XCTAssertEqual(r["iterations_per_epoch"] as! Int, 60_000 / b)
            XCTAssertEqual(r["sec_per_epoch_extrapolated"] as! Double, perIter * Double(60_000 / b), accuracy: 1e-9)
            XCTAssertGreaterThan(perIter, 0)
        }
        XCTAssertTrue((obj["pytorch_side_by_side"] as! [String]).allSatisfy { $0.contains("scripts/torch_gan.py") })
    }

    /// SIGINT in mid-run: exit 0, a checkpoint of the iteration reached, and --resume goes on from it.
    func testSigintSavesAndExitsCleanly() throws {
        let root = NSTemporaryDirectory() + "disco-gancli-int-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeGANFolder(root + "/data")
        let run = root + "/run"
        let p = discoProcess(["gan", "train", root + "/data", "--epochs", "100000", "--batch", "8", "--out", run])
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let log = try? String(contentsOfFile: run + "/log.jsonl", encoding: .utf8), log.split(separator: "\n").count >= 4 { break }
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGINT)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        _ = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, e)
        XCTAssertTrue(e.contains("stopped at iteration") && e.contains("--resume"), e)
        let latest = try XCTUnwrap(GANCheckpoint.latest(run: run))
        let state = try GANCheckpoint.readState(checkpoint: latest)
        XCTAssertGreaterThanOrEqual(state.iteration, 4)
        let loggedLast = try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8).split(separator: "\n").count
        XCTAssertEqual(loggedLast, state.iteration)
        try self.run(["gan", "train", root + "/data", "--epochs", "\(state.epoch + 2)", "--batch", "8", "--out", run, "--resume"])
        XCTAssertEqual(try GANCheckpoint.readState(checkpoint: GANCheckpoint.latest(run: run)!).iteration, (state.epoch + 2) * 3)
    }

    /// Every write of a one-epoch run failing in turn as on a full disk: exit 1 naming the file
    /// (report.html only a warning), no temporaries left, and any checkpoint left loads.
    func testEveryFailedWriteIsAnError() throws {
        let root = NSTemporaryDirectory() + "disco-gancli-faults-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeGANFolder(root + "/data", classes: 2, perClass: 4)
        var n = 1
        while true {
            let run = root + "/run-\(n)"
            let r = try self.run(["gan", "train", root + "/data", "--arch", "dcgan", "--width", "2", "--epochs", "1", "--batch", "4",
                                  "--out", run], expect: nil, environment: ["DISCO_FAULT_WRITE": "\(n)"])
            XCTAssertEqual(temporariesBelow(run), [], "write \(n)")
            if let c = GANCheckpoint.latest(run: run) { XCTAssertNoThrow(try GANCheckpoint.loadModel(checkpoint: c), "write \(n)") }
            if lastStatus == 0 {
                if !r.err.contains("cannot write") { break }
                XCTAssertTrue(r.err.contains(run + "/report.html"), "write \(n): only the report may fail as a warning: \(r.err)")
            } else {
                XCTAssertEqual(lastStatus, 1, "write \(n): \(r.err)")
                XCTAssertTrue(r.err.contains(run + "/") && r.err.contains("No space left"), "write \(n): \(r.err)")
            }
            n += 1
            guard n < 60 else { return XCTFail("a one-epoch run writes more than 60 files?") }
        }
        XCTAssertGreaterThan(n, 10)
    }

    /// `disco gan eval --checkpoint RUN`: a run of `disco gan train` scored by a classifier of its
    /// labels (trained here on the same tiny folder), the figures equal to the library's on the
    /// same draw.
    func testEvalOfATrainedRun() throws {
        let root = NSTemporaryDirectory() + "disco-gancli-eval-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeGANFolder(root + "/data")
        let run = root + "/run"
        try self.run(["gan", "train", root + "/data", "--arch", "mlp", "--conditional", "--epochs", "1", "--batch", "8", "--out", run])
        let real = try EvalImages.load(labelledFolder: root + "/data", option: "--real")
        _ = try BLAS.load()
        let classifier = FashionClassifier.train(on: real, settings: .init(epochs: 1, batch: 8, learningRate: 1e-3, seed: 0))
        try classifier.save(to: root + "/classifier", info: .init(classes: real.classNames, testAccuracy: 1, testCount: 24, testData: "data",
                                                                    trainCount: 24, trainData: "data", settings: .init(), seconds: 0))
        let out = try self.run(["gan", "eval", "--checkpoint", run, "--real", root + "/data", "--classifier", root + "/classifier",
                                "--count", "30", "--seed", "2", "--json"]).out
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        let expected = try GANEvaluation.evaluate(sampler: GANCheckpoint.loadModel(checkpoint: GANCheckpoint.latest(run: run)!),
                                                  real: real, count: 30, seed: 2, classifier: FashionClassifier.load(from: root + "/classifier"))
        XCTAssertEqual(try XCTUnwrap(obj["label_accuracy"] as? Double), try XCTUnwrap(expected.labelAccuracy), accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(obj["frechet_distance"] as? Double), expected.frechetDistance, accuracy: 1e-9 * max(1, expected.frechetDistance))
        XCTAssertEqual(obj["checkpoint"] as? String, run)
    }
}
