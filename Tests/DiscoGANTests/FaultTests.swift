import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore
import DiscoImage

/// Every file under `dir` (recursively), as paths relative to it.
func filesBelow(_ dir: String) -> [String] {
    (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).sorted()
}

/// Temporaries (`*.tmp-PID*`) anywhere below `dir`.
func temporariesBelow(_ dir: String) -> [String] {
    filesBelow(dir).filter { $0.split(separator: "/").contains { FileWriter.isTemporary(String($0)) } }
}

/// A fresh folder in memory (/dev/shm) where there is one, else in the temporary folder: these
/// tests write checkpoints of 47 MB at every step, and their fsyncs on a real disk are slow.
func memoryTempDir(_ name: String) -> String {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDir), isDir.boolValue,
          access("/dev/shm", W_OK) == 0 else { return tempDir(name) }
    let d = "/dev/shm/disco-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// A tiny run that writes everything every iteration: 32 px, gray, batch 2,
/// log / sample grid / hist.json / report / checkpoint at every step.
func everyStepConfig(iterations: Int = 3) -> TrainConfig {
    var c = TrainConfig()
    c.size = 32; c.channels = 1; c.batch = 2; c.iterations = iterations
    c.saveEvery = 1; c.sampleEvery = 1; c.logEvery = 1
    c.seed = 3
    return c
}

/// A trainer whose samples and report are written as `disco train` writes them (through the seam).
func makeWritingTrainer(_ config: TrainConfig, run: String) -> Trainer {
    var rng = Xoshiro256(seed: 5)
    let shape = [config.batch, config.size, config.size, config.channels]
    let sa = Tensor.uniform([2, config.size, config.size, config.channels], low: 0, high: 1, rng: &rng)
    let sb = Tensor.uniform([2, config.size, config.size, config.channels], low: 0, high: 1, rng: &rng)
    let t = Trainer(config: config, run: run, source: SeededBatches(shape: shape, seed: 9), sampleA: sa, sampleB: sb)
    t.log = { _ in }
    t.writeImage = { pixels, w, h, c, path in
        let image = Image(width: w, height: h, channels: c, pixels: pixels)
        try writeImageFile(try encodeImage(image, path: path), path: path)
    }
    t.afterSample = { _ in try? writeReport(runDirectory: run) }  // a report failure is only a warning
    return t
}

/// Faults meet training, checkpointing and translating: a clear error, never a signal, nothing lost.
final class WriteFaultTests: XCTestCase {
    override func tearDown() { FileWriter.resetFaults(failFrom: nil) }

    func makeTrainer(_ config: TrainConfig, run: String) -> Trainer { makeWritingTrainer(config, run: run) }

    func weights(_ m: DiscoGAN) -> [Float] {
        m.networks.flatMap { $0.net.parameters.values.array + $0.net.buffers.values.array + $0.opt.m.array + $0.opt.v.array }
    }

    /// For every write N of a run that saves every step, a run whose Nth write (and every later
    /// one, as on a full disk) fails ends with an error naming the file; it leaves no temporary
    /// behind; the latest checkpoint loads, and resuming from it once the disk has room ends
    /// with exactly the weights of an undisturbed run.
    func testEveryFailedWriteEndsInAnErrorAndTheRunResumes() throws {
        let config = everyStepConfig(iterations: 2)
        let cleanRun = memoryTempDir("fault-clean")
        defer { try? FileManager.default.removeItem(atPath: cleanRun) }
        FileWriter.resetFaults(failFrom: nil)
        let clean = makeTrainer(config, run: cleanRun)
        try clean.prepare(resume: false)
        try clean.train()
        let writes = FileWriter.writes
        let expected = weights(clean.model)
        // config.json + per iteration: log line, sample grid, hist.json, report, 3 checkpoint files.
        XCTAssertGreaterThanOrEqual(writes, 1 + 7 * config.iterations, "writes of a clean run")

        for n in 1...writes {
            let run = memoryTempDir("fault-\(n)")
            defer { try? FileManager.default.removeItem(atPath: run) }
            FileWriter.resetFaults(failFrom: n)
            var failure: Error?
            let t = makeTrainer(config, run: run)
            do { try t.prepare(resume: false); try t.train() } catch { failure = error }
            FileWriter.resetFaults(failFrom: nil)
            let message = failure.map { "\($0)" } ?? ""
            XCTAssertNotNil(failure, "write \(n) failed but the run did not report it")
            XCTAssertTrue(message.contains(run) && message.contains("No space left"), "write \(n): \(message)")
            XCTAssertEqual(temporariesBelow(run), [], "write \(n): temporaries left")

            // The latest checkpoint is complete and loads; the run resumes and ends as an unbroken one.
            let resumed = makeTrainer(config, run: run)
            try resumed.prepare(resume: Checkpoint.latest(run: run) != nil)
            try resumed.train()
            XCTAssertEqual(weights(resumed.model), expected, "write \(n): the resumed run differs from an unbroken one")
        }
    }
}

/// What a kill -9 leaves behind is cleaned up by the next start or resume.
final class InterruptedRunTests: XCTestCase {
    func makeTrainer(_ config: TrainConfig, run: String) -> Trainer { makeWritingTrainer(config, run: run) }

    /// Plants the temporaries a process killed while writing leaves (a checkpoint folder under
    /// its temporary name, half-written files under theirs) in the run folder.
    func plantTemporaries(_ run: String) throws -> [String] {
        let planted = ["checkpoints/iter-00000009.tmp-99999", ".report.html.tmp-99999-7", ".config.json.tmp-99999-1",
                       ".hist.json.tmp-99999-4", "samples/.iter-00000009.png.tmp-99999-12", ".log.jsonl.tmp-99999-3",
                       "tb/.events.out.tfevents.disco.tmp-99999-5"]
        try FileManager.default.createDirectory(atPath: run + "/" + planted[0], withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: run + "/" + planted[0] + "/model.safetensors", contents: Data(repeating: 1, count: 100))
        for p in planted.dropFirst() {
            try FileManager.default.createDirectory(atPath: run + "/" + (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            XCTAssertTrue(FileManager.default.createFile(atPath: run + "/" + p, contents: Data("half".utf8)))
        }
        XCTAssertEqual(temporariesBelow(run).count, planted.count + 1)
        return planted
    }

    func testStaleTemporariesAreRemovedOnStartAndResume() throws {
        let config = everyStepConfig(iterations: 2)
        let run = memoryTempDir("stale")
        defer { try? FileManager.default.removeItem(atPath: run) }
        // A fresh start over the leftovers of a run killed before its first checkpoint.
        _ = try plantTemporaries(run)
        let first = makeTrainer(config, run: run)
        try first.prepare(resume: false)
        XCTAssertEqual(temporariesBelow(run), [])
        try first.train(until: 1)
        // A resume over the leftovers of a run killed while saving.
        _ = try plantTemporaries(run)
        let second = makeTrainer(config, run: run)
        try second.prepare(resume: true)
        XCTAssertEqual(temporariesBelow(run), [])
        XCTAssertEqual(second.iteration, 1)
        try second.train()
        XCTAssertEqual(Checkpoint.list(run: run).map { ($0 as NSString).lastPathComponent }, ["iter-00000001", "iter-00000002"])
        // Files the user put there that merely look alike stay.
        FileManager.default.createFile(atPath: run + "/notes.tmp-draft", contents: Data())
        try makeTrainer(config, run: run).prepare(resume: true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/notes.tmp-draft"))
    }

    /// The iterations of log.jsonl, in order (lines that are not JSON objects with "iter" fail).
    func loggedIterations(_ run: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Int] {
        let text = try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8)
        XCTAssertTrue(text.isEmpty || text.hasSuffix("\n"), "log ends in a fragment", file: file, line: line)
        return try text.split(separator: "\n").map { l in
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], String(l), file: file, line: line)
            return try XCTUnwrap(obj["iter"] as? Int, String(l), file: file, line: line)
        }
    }

    /// A run killed after logging iterations its last checkpoint does not hold (and in the middle
    /// of a log line) logs them again when resumed: the log is cut back to the checkpoint first.
    func testResumeCutsTheLogBackToTheCheckpoint() throws {
        var config = everyStepConfig(iterations: 5)
        config.saveEvery = 2; config.sampleEvery = 100
        let run = memoryTempDir("log-cut")
        defer { try? FileManager.default.removeItem(atPath: run) }
        // Killed before its first checkpoint: a fresh start empties the log.
        let zeroth = makeTrainer(config, run: run)
        try zeroth.prepare(resume: false)
        try zeroth.train(until: 1)
        try FileManager.default.removeItem(atPath: Checkpoint.directory(run: run))
        XCTAssertEqual(try loggedIterations(run), [1])
        let first = makeTrainer(config, run: run)
        try first.prepare(resume: false)
        try first.train(until: 3)  // checkpoints 2 and 3
        XCTAssertEqual(try loggedIterations(run), [1, 2, 3])
        // Killed after logging 3 (and half of 4) but before checkpoint 3 was in place.
        try FileManager.default.removeItem(atPath: Checkpoint.directory(run: run) + "/iter-00000003")
        let log = FileHandle(forWritingAtPath: run + "/log.jsonl")!
        log.seekToEndOfFile(); log.write(Data(#"{"iter":4,"gen_tot"#.utf8)); try log.close()
        let second = makeTrainer(config, run: run)
        try second.prepare(resume: true)
        XCTAssertEqual(second.iteration, 2)
        XCTAssertEqual(try loggedIterations(run), [1, 2])
        try second.train()
        XCTAssertEqual(try loggedIterations(run), [1, 2, 3, 4, 5])
        // A resume at the end of the log leaves it alone.
        let before = try Data(contentsOf: URL(fileURLWithPath: run + "/log.jsonl"))
        try makeTrainer(config, run: run).prepare(resume: true)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/log.jsonl")), before)
    }
}

/// A run whose numbers turn non-finite stops with a message and keeps its last good checkpoint.
final class DivergenceTests: XCTestCase {
    func allFinite(_ m: DiscoGAN) -> Bool {
        m.networks.allSatisfy { n in
            [n.net.parameters.values, n.net.buffers.values, n.opt.m, n.opt.v].allSatisfy { $0.array.allSatisfy(\.isFinite) }
        }
    }

    /// Trains 2 iterations (checkpoints 1 and 2), spoils the model with `poison`, trains on: the
    /// run must stop with an error containing `expected`, save nothing more, and checkpoint 2 loads.
    func checkStops(poison: (DiscoGAN) -> Void, expected: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let config = everyStepConfig(iterations: 4)
        let run = memoryTempDir("diverge")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let t = makeWritingTrainer(config, run: run)
        try t.prepare(resume: false)
        try t.train(until: 2)
        poison(t.model)
        XCTAssertThrowsError(try t.train(), file: file, line: line) { e in
            for s in expected + ["lower --lr"] { XCTAssertTrue("\(e)".contains(s), "\(e)", file: file, line: line) }
            XCTAssertFalse("\(e)".contains("full disk"), "\(e)", file: file, line: line)
        }
        XCTAssertEqual(Checkpoint.list(run: run).map { ($0 as NSString).lastPathComponent }, ["iter-00000001", "iter-00000002"],
                       file: file, line: line)
        let m = DiscoGAN(config: config)
        try Checkpoint.load(into: m, checkpoint: try XCTUnwrap(Checkpoint.latest(run: run)), optimizer: true)
        XCTAssertTrue(allFinite(m), "the kept checkpoint holds non-finite values", file: file, line: line)
        XCTAssertEqual(temporariesBelow(run), [], file: file, line: line)
    }

    /// A NaN weight makes the next step's losses NaN: the run stops naming the iteration and a loss term.
    func testNonFiniteLossStopsTheRunAndKeepsTheLastGoodCheckpoint() throws {
        try checkStops(poison: { m in m.G_AB.parameters.values[0] = .nan },
                       expected: ["iteration 3", "is nan", "iter-00000002"])
    }

    /// Non-finite Adam moments spoil the weights in the update after finite losses: the save refuses them.
    func testNonFiniteWeightsAreNeverSaved() throws {
        try checkStops(poison: { m in for n in m.networks { n.opt.m[0] = .infinity } },
                       expected: ["iteration 3", "G_AB", "iter-00000002"])
    }
}
