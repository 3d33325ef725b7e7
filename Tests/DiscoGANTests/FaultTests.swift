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

/// Faults meet training, checkpointing and translating: a clear error, never a signal, nothing lost.
final class WriteFaultTests: XCTestCase {
    override func tearDown() { FileWriter.resetFaults(failFrom: nil) }

    /// A trainer whose samples and report are written as `disco train` writes them (through the seam).
    func makeTrainer(_ config: TrainConfig, run: String) -> Trainer {
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
