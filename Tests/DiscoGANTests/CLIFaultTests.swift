import XCTest
import Foundation
import DiscoCore
import DiscoGAN

/// The real `disco` binary meeting full disks (real and injected): an error and exit code 1, never a signal.
extension CLITests {
    struct Outcome {
        let status: Int32
        let signaled: Bool
        let out: String, err: String
        var summary: String { "status \(status)\(signaled ? " (signal)" : ""):\n\(out)\n\(err)" }
    }

    /// Runs `disco` with extra environment variables; returns however it ended.
    func runDisco(_ args: [String], environment extra: [String: String] = [:], executable: String? = nil) throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable ?? disco)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Outcome(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                       out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }

    /// A real full disk under log.jsonl (a link to /dev/full): an error naming the log, exit 1.
    func testFullDiskUnderTheLogIsAnErrorNotASignal() throws {
        let root = NSTemporaryDirectory() + "disco-cli-full-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        try FileManager.default.createDirectory(atPath: root + "/run", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/run/log.jsonl", withDestinationPath: "/dev/full")
        let r = try runDisco(["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                              "--iterations", "2", "--out", root + "/run"])
        XCTAssertFalse(r.signaled, r.summary)
        XCTAssertEqual(r.status, 1, r.summary)
        XCTAssertTrue(r.err.contains(root + "/run/log.jsonl") && r.err.contains("No space left"), r.summary)
    }

    /// `disco train` (every file written every step, TensorBoard events too) and `disco translate` with their Nth write
    /// failing as on a full disk, for every N: exit 1 with a message naming the file (a report
    /// that cannot be written is only a warning), no temporaries left, the latest checkpoint loads.
    func testEveryFailedWriteOfTrainAndTranslateIsAnError() throws {
        let root = NSTemporaryDirectory() + "disco-cli-faults-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        var config = TrainConfig(); config.size = 32; config.channels = 1
        let train = ["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2", "--iterations", "1",
                     "--save-every", "1", "--sample-every", "1", "--log-every", "1", "--samples", "2", "--tensorboard"]
        var n = 1
        while true {
            let run = root + "/run-\(n)"
            let r = try runDisco(train + ["--out", run], environment: ["DISCO_FAULT_WRITE": "\(n)"])
            XCTAssertFalse(r.signaled, "write \(n): \(r.summary)")
            XCTAssertEqual(temporariesBelow(run), [], "write \(n)")
            if let ckpt = Checkpoint.latest(run: run) {
                XCTAssertNoThrow(try Checkpoint.load(into: DiscoGAN(config: config), checkpoint: ckpt, optimizer: true), "write \(n)")
            }
            if r.status == 0 {
                if !r.err.contains("cannot write") { break }  // N is past the last write: a clean run
                XCTAssertTrue(r.err.contains(run + "/report.html") || r.err.contains(run + "/tb/"),
                              "write \(n): only a report or TensorBoard failure may be a warning: \(r.summary)")
            } else {
                XCTAssertEqual(r.status, 1, "write \(n): \(r.summary)")
                XCTAssertTrue(r.err.contains(run + "/") && r.err.contains("No space left"), "write \(n): \(r.summary)")
            }
            n += 1
            guard n < 40 else { return XCTFail("a 1-iteration run writes more than 40 files?") }
        }
        // config, log, grid, hist, report, events, 3 checkpoint files, final report and events
        XCTAssertGreaterThanOrEqual(n - 1, 11, "writes of a clean 1-iteration run")

        let model = root + "/run-\(n)"
        for k in 1...5 {
            let out = root + "/out-\(k)"
            let r = try runDisco(["translate", root + "/a", "--output", out, "--checkpoint", model, "--batch", "1"],
                                 environment: ["DISCO_FAULT_WRITE": "\(k)"])
            XCTAssertFalse(r.signaled, "translate, write \(k): \(r.summary)")
            XCTAssertEqual(temporariesBelow(out), [], "translate, write \(k)")
            if k <= 4 {  // 4 images, 4 writes
                XCTAssertEqual(r.status, 1, "translate, write \(k): \(r.summary)")
                XCTAssertTrue(r.err.contains(out + "/") && r.err.contains("No space left"), "translate, write \(k): \(r.summary)")
            } else {
                XCTAssertEqual(r.status, 0, r.summary)
                XCTAssertEqual(filesBelow(out).count, 4)
            }
        }
        let one = try runDisco(["translate", root + "/a/000.png", "--output", root + "/one.png", "--checkpoint", model],
                               environment: ["DISCO_FAULT_WRITE": "1"])
        XCTAssertFalse(one.signaled, one.summary)
        XCTAssertEqual(one.status, 1, one.summary)
        XCTAssertTrue(one.err.contains(root + "/one.png") && one.err.contains("No space left"), one.summary)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/one.png"))
        XCTAssertEqual(temporariesBelow(root), [])
    }

    /// The kill loop: `disco train` saving every step, SIGKILLed at random moments 12 times and
    /// resumed each time (a fresh start while no checkpoint exists). Afterwards a last resume runs
    /// to its end; its latest checkpoint loads, no temporary is left, and log.jsonl holds every
    /// iteration once, in increasing order.
    func testKilledAtRandomMomentsTheRunResumesCleanly() throws {
        let root = NSTemporaryDirectory() + "disco-cli-kill-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        var config = TrainConfig(); config.size = 32; config.channels = 1
        let train = ["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                     "--save-every", "1", "--sample-every", "1", "--log-every", "1", "--samples", "2", "--out", run]
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = Xoshiro256(seed: seed)
        var killed = 0, killedWithTemporaries = 0, history = ["seed \(seed)"]
        while killed < 12 {
            let resume = Checkpoint.latest(run: run) != nil
            let delay = 0.1 + 1.6 * Double(rng.nextUniform())
            let p = Process()
            p.executableURL = URL(fileURLWithPath: disco)
            p.arguments = train + ["--iterations", "100000"] + (resume ? ["--resume"] : [])
            p.standardOutput = FileHandle.nullDevice
            let errFile = root + "/stderr-\(killed)"
            FileManager.default.createFile(atPath: errFile, contents: nil)
            p.standardError = FileHandle(forWritingAtPath: errFile)
            try p.run()
            usleep(useconds_t(delay * 1e6))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
            guard p.terminationReason == .uncaughtSignal, p.terminationStatus == SIGKILL else {
                return XCTFail("seed \(seed), start \(killed + 1) (resume: \(resume)) ended by itself, status \(p.terminationStatus): \(err)\n\(history)")
            }
            killed += 1
            if !temporariesBelow(run).isEmpty { killedWithTemporaries += 1 }
            history.append("\(delay)s -> \(Checkpoint.latest(run: run).map { ($0 as NSString).lastPathComponent } ?? "none")")
        }
        let reached = try Checkpoint.latest(run: run).map { try Checkpoint.readState(checkpoint: $0).iteration } ?? 0
        let end = reached + 2
        let r = try runDisco(train + ["--iterations", "\(end)"] + (reached > 0 ? ["--resume"] : []))
        XCTAssertEqual(r.status, 0, "\(history)\n\(r.summary)")
        let latest = try XCTUnwrap(Checkpoint.latest(run: run))
        XCTAssertEqual(try Checkpoint.readState(checkpoint: latest).iteration, end)
        XCTAssertNoThrow(try Checkpoint.load(into: DiscoGAN(config: config), checkpoint: latest, optimizer: true))
        XCTAssertEqual(temporariesBelow(run), [], "\(history)")
        let iterations = try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8).split(separator: "\n").map { line -> Int in
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return try XCTUnwrap(obj?["iter"] as? Int, String(line))
        }
        XCTAssertEqual(iterations, Array(1...end), "log.jsonl iterations after \(killed) kills: \(history)")
        print("kill loop: \(killed) kills (\(killedWithTemporaries) left temporaries), reached iteration \(reached): \(history)")
    }
}

extension CLITests {
    /// Messages to a standard error that cannot be written (a full disk) are lost, not a SIGILL.
    func testUnwritableStandardErrorIsNotASignal() throws {
        let root = NSTemporaryDirectory() + "disco-cli-stderr-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let train = ["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2", "--out", root + "/run"]
        try run(train + ["--iterations", "1"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: disco)
        p.arguments = train + ["--iterations", "2", "--resume"]  // logs "resuming ..." to stderr
        p.standardOutput = FileHandle.nullDevice
        p.standardError = try XCTUnwrap(FileHandle(forWritingAtPath: "/dev/full"))
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(Checkpoint.latest(run: root + "/run")?.hasSuffix("iter-00000002"), true)
    }
}
