import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// The real `disco train` meeting inputs a fuzz run found mishandled: a --batch no machine could
/// hold, folders whose first files are corrupt, two runs writing one folder.
extension CLITests {
    /// A file with PNG's signature and nothing decodable after it: listed as an image, fails to decode.
    func writeCorruptPNG(_ path: String) {
        FileManager.default.createFile(atPath: path, contents: Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array("not really".utf8)))
    }

    /// --batch above 65536 is an option error; one whose tensors cannot fit in this machine's
    /// memory (65536 images of 128x128: 2 TB by the lower bound) is refused at once, naming
    /// --batch and the memory, where it used to crash (a failed allocation) or be killed.
    func testTrainRefusesABatchNoMachineCouldHold() throws {
        let root = NSTemporaryDirectory() + "disco-cli-batch-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 2, kind: 0)
        try makeDomain(root + "/b", count: 2, kind: 1)
        let common = ["train", root + "/a", root + "/b", "--iterations", "1", "--out", root + "/run"]
        let over = try runDisco(common + ["--size", "32", "--batch", "10000000"])
        XCTAssertFalse(over.signaled, over.summary)
        XCTAssertEqual(over.status, 64, over.summary)  // ArgumentParser's validation exit code
        XCTAssertTrue(over.err.contains("--batch must be at most 65536"), over.summary)

        let physical = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
        try XCTSkipIf(physical > 65536 * 2000 * 128 * 128, "this machine has over 2 TB of memory")
        let t0 = Date()
        let huge = try runDisco(common + ["--size", "128", "--batch", "65536"])
        XCTAssertFalse(huge.signaled, huge.summary)
        XCTAssertEqual(huge.status, 1, huge.summary)
        XCTAssertTrue(huge.err.contains("--batch 65536 at 128x128 needs at least") && huge.err.contains("more than this machine's"), huge.summary)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 30, "refused before loading or allocating anything")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/run/checkpoints"), huge.summary)
    }

    /// The sample grid and --keep-best's held-out images take the first (last) files that decode,
    /// however many corrupt ones come first: a folder of good images behind 8 corrupt ones (more
    /// than twice --samples) trains, where it used to stop with "no readable image for the sample
    /// grid"; a corrupt last file no longer leaves --keep-best without a held-out image.
    func testCorruptFilesFirstInAFolderDoNotStopTraining() throws {
        let root = NSTemporaryDirectory() + "disco-cli-corrupt-first-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)  // 000.png ... 003.png
        try makeDomain(root + "/b", count: 4, kind: 1)
        for i in 0..<8 { writeCorruptPNG(root + "/a/" + String(format: "!bad%02d.png", i)) }  // '!' sorts first
        writeCorruptPNG(root + "/b/zzz.png")  // sorts last: --keep-best's held-out slice
        let r = try runDisco(["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                              "--iterations", "2", "--samples", "2", "--keep-best", "--out", root + "/run"])
        XCTAssertFalse(r.signaled, r.summary)
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/run/checkpoints/iter-00000002/model.safetensors"), r.summary)
    }

    /// A second `disco train` on a run folder another one is writing is refused, naming the first's
    /// process; the first runs on undisturbed. Once it has ended (SIGTERM: it saves and exits), the
    /// folder can be resumed: the kernel let go of the lock with the process.
    func testASecondTrainingOfABusyRunFolderIsRefused() throws {
        let root = NSTemporaryDirectory() + "disco-cli-busy-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        let args = ["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                    "--iterations", "100000", "--save-every", "1", "--sample-every", "50", "--out", run]
        let first = Process()
        first.executableURL = URL(fileURLWithPath: disco)
        first.arguments = args
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { first.terminate(); first.waitUntilExit() } }
        // Wait for its first checkpoint: the folder is taken by then.
        let deadline = Date().addingTimeInterval(60)
        while Checkpoint.latest(run: run) == nil && first.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertTrue(first.isRunning, "the first run ended early")
        XCTAssertNotNil(Checkpoint.latest(run: run))

        // Under `timeout`: were it not refused, it would train on, into the same folder.
        let second = try runDisco(["60", disco] + args + ["--resume"], executable: "/usr/bin/timeout")
        XCTAssertFalse(second.signaled, second.summary)
        XCTAssertEqual(second.status, 1, second.summary)
        XCTAssertTrue(second.err.contains("\(run) is in use by another disco run (process \(first.processIdentifier))"), second.summary)
        XCTAssertTrue(first.isRunning, "the refused run stopped the first")

        first.terminate()
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0, "SIGTERM saves and exits cleanly")
        let before = Checkpoint.latest(run: run)!
        let iteration = Int(before.suffix(8))!
        let resumed = try runDisco(["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                                    "--iterations", "\(iteration + 1)", "--save-every", "1", "--sample-every", "50", "--out", run, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.summary)
        XCTAssertEqual(Checkpoint.latest(run: run), run + "/checkpoints/" + String(format: "iter-%08d", iteration + 1))
    }

    /// A folder in checkpoints/ that disco did not write (iter-zzz) is not taken for the latest
    /// checkpoint: translate and --resume read the newest iter-N.
    func testStrayFoldersInCheckpointsAreIgnored() throws {
        let root = NSTemporaryDirectory() + "disco-cli-stray-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        try self.run(["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                      "--iterations", "2", "--save-every", "1", "--out", run])
        for stray in ["iter-zzz", "iter-", "iter-9x", "iter-00000099-copy"] {
            try FileManager.default.createDirectory(atPath: run + "/checkpoints/" + stray, withIntermediateDirectories: true)
        }
        XCTAssertEqual(Checkpoint.list(run: run).map { ($0 as NSString).lastPathComponent }, ["iter-00000001", "iter-00000002"])
        try self.run(["translate", root + "/a/000.png", "-o", root + "/t.png", "--checkpoint", run])
        try self.run(["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2",
                      "--iterations", "3", "--save-every", "1", "--out", run, "--resume"])
    }

    /// --resume checks the images against the checkpoint's record (count and names per domain):
    /// the folders swapped, or an image added, are refused naming the domains; the run's own
    /// folders resume; a state.json from before the record (no "data") resumes unchecked.
    func testResumeRefusesOtherImages() throws {
        let root = NSTemporaryDirectory() + "disco-cli-resume-data-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        func train(_ a: String, _ b: String, _ iterations: Int, resume: Bool = true) throws -> Outcome {
            try runDisco(["train", root + "/" + a, root + "/" + b, "--size", "32", "--channels", "1", "--batch", "2",
                          "--iterations", "\(iterations)", "--save-every", "1", "--out", run] + (resume ? ["--resume"] : []))
        }
        XCTAssertEqual(try train("a", "b", 1, resume: false).status, 0)
        let swapped = try train("b", "a", 2)
        XCTAssertEqual(swapped.status, 1, swapped.summary)
        XCTAssertTrue(swapped.err.contains("was trained on other images (A and B swapped?): domain A: the run's 4 images"), swapped.summary)
        try makeDomain(root + "/a2", count: 5, kind: 0)
        let added = try train("a2", "b", 2)
        XCTAssertEqual(added.status, 1, added.summary)
        XCTAssertTrue(added.err.contains("domain A: the run's 4 images") && added.err.contains("now 5 images") && !added.err.contains("domain B"), added.summary)
        XCTAssertEqual(try train("a", "b", 2).status, 0)

        // An older checkpoint: its state.json without the record.
        let state = Checkpoint.latest(run: run)! + "/state.json"
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state))) as! [String: Any]
        XCTAssertNotNil(json.removeValue(forKey: "data"))
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: state))
        let old = try train("a2", "b", 3)
        XCTAssertEqual(old.status, 0, old.summary)
    }

    /// The second fuzz pass's findings: an empty --output wrote into the filesystem root; gan
    /// eval's --count had no bound (a crash in an allocation); export could overwrite the model it
    /// read, and --resume then went on from a generators-only file with new discriminators; the
    /// memory check ignored `ulimit -v`; gan runs took iter-zzz or iter-5.bak for checkpoints.
    func testSecondFuzzPassFindings() throws {
        let root = NSTemporaryDirectory() + "disco-cli-fuzz2-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        let train = ["train", root + "/a", root + "/b", "--size", "32", "--channels", "1", "--batch", "2", "--save-every", "1", "--out", run]
        try self.run(train + ["--iterations", "2"])

        for args in [["translate", root + "/a", "-o", "", "--checkpoint", run], ["export", "model", "--checkpoint", run, "-o", ""],
                     ["train", root + "/a", root + "/b", "--out", ""], ["gan", "eval", "--checkpoint", run, "--real", root + "/a", "--count", "100000000"]] {
            let r = try runDisco(args)
            XCTAssertFalse(r.signaled, r.summary)
            XCTAssertEqual(r.status, 64, "\(args): \(r.summary)")
            XCTAssertTrue(r.err.contains("is empty; give a path") || r.err.contains("--count must be in 2...100000"), r.summary)
        }

        let ckpt = Checkpoint.latest(run: run)!
        let own = try runDisco(["export", "model", "--checkpoint", run, "-o", ckpt + "/model.safetensors"])
        XCTAssertEqual(own.status, 1, own.summary)
        XCTAssertTrue(own.err.contains("is the model file --checkpoint reads"), own.summary)
        let image = try runDisco(["export", "model", "--checkpoint", run, "-o", root + "/a/000.png"])
        XCTAssertEqual(image.status, 1, image.summary)
        XCTAssertTrue(image.err.contains("is an existing image"), image.summary)
        XCTAssertNoThrow(try decodeImage(path: root + "/a/000.png"), "the image is intact")
        try self.run(["export", "model", "--checkpoint", run, "-o", root + "/g.safetensors"])
        try FileManager.default.removeItem(atPath: ckpt + "/model.safetensors")
        try FileManager.default.copyItem(atPath: root + "/g.safetensors", toPath: ckpt + "/model.safetensors")
        let resumed = try runDisco(train + ["--iterations", "3", "--resume"])
        XCTAssertEqual(resumed.status, 1, resumed.summary)
        XCTAssertTrue(resumed.err.contains("has no D_A") && resumed.err.contains("delete"), resumed.summary)

        let limited = try runDisco(["-c", "ulimit -v 2000000 && exec \"$0\" \"$@\"", disco, "train", root + "/a", root + "/b",
                                    "--size", "64", "--batch", "1000", "--iterations", "1", "--out", root + "/run2"], executable: "/bin/sh")
        XCTAssertFalse(limited.signaled, limited.summary)
        XCTAssertEqual(limited.status, 1, limited.summary)
        XCTAssertTrue(limited.err.contains("address-space limit (ulimit -v)"), limited.summary)

        try FileManager.default.createDirectory(atPath: root + "/gan/checkpoints/iter-00000010", withIntermediateDirectories: true)
        for stray in ["iter-zzz", "iter-00000005.bak", "iter-9"] {
            try FileManager.default.createDirectory(atPath: root + "/gan/checkpoints/" + stray, withIntermediateDirectories: true)
        }
        XCTAssertEqual(GANCheckpoint.list(run: root + "/gan").map { ($0 as NSString).lastPathComponent }, ["iter-9", "iter-00000010"])
    }
}
