import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore

/// Batches drawn from a seeded generator keyed by (seed, batch index): resumable by construction.
final class SeededBatches: BatchSource {
    let shape: [Int]
    let seed: UInt64
    var index = 0
    init(shape: [Int], seed: UInt64) { self.shape = shape; self.seed = seed }
    func next(a: Tensor, b: Tensor) throws {
        var rng = Xoshiro256(seed: seed &+ UInt64(index) &* 1_000_003)
        for i in 0..<a.count { a[i] = rng.nextUniform() }
        for i in 0..<b.count { b[i] = rng.nextUniform() }
        index += 1
    }
    var state: [String: Int] { ["index": index] }
    func restore(_ state: [String: Int]) throws { index = state["index"] ?? 0 }
    var waitSeconds: Double { 0 }
}

func tinyConfig() -> TrainConfig {
    var c = TrainConfig()
    c.size = 32; c.channels = 1; c.batch = 3; c.iterations = 20
    c.saveEvery = 1000; c.sampleEvery = 1000; c.logEvery = 5
    c.curriculumIterations = 12  // cross the curriculum switch inside the run
    c.seed = 42
    return c
}

func tempDir(_ name: String) -> String {
    let d = NSTemporaryDirectory() + "disco-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

final class TrainerTests: XCTestCase {
    func makeTrainer(_ config: TrainConfig, run: String) -> Trainer { seededTrainer(config, run: run) }

    func allState(_ m: DiscoGAN) -> [Float] {
        m.networks.flatMap { $0.net.parameters.values.array + $0.net.buffers.values.array + $0.opt.m.array + $0.opt.v.array }
    }

    /// 20 iterations straight and 10 + resume + 10 give bit-identical weights, BN statistics and Adam state.
    func testResumeIsBitExact() throws {
        let config = tinyConfig()
        let straightRun = tempDir("straight"), splitRun = tempDir("split")
        defer { try? FileManager.default.removeItem(atPath: straightRun); try? FileManager.default.removeItem(atPath: splitRun) }

        let straight = makeTrainer(config, run: straightRun)
        try straight.prepare(resume: false)
        try straight.train()

        let first = makeTrainer(config, run: splitRun)
        try first.prepare(resume: false)
        try first.train(until: 10)
        try first.save()
        let second = makeTrainer(config, run: splitRun)
        try second.prepare(resume: true)
        XCTAssertEqual(second.iteration, 10)
        try second.train()

        let a = allState(straight.model), b = allState(second.model)
        XCTAssertEqual(a.count, b.count)
        XCTAssertEqual(a, b, "resumed run differs from the unbroken one")
        // The runs really trained: weights moved from their initial values.
        let fresh = DiscoGAN(config: config); fresh.initialize(seed: config.seed)
        XCTAssertNotEqual(fresh.G_AB.parameters.values.array, straight.model.G_AB.parameters.values.array)
        // Only the last two checkpoints are kept.
        XCTAssertEqual(Checkpoint.list(run: splitRun).map { ($0 as NSString).lastPathComponent },
                       ["iter-00000010", "iter-00000020"])
    }

    /// A stop request finishes the step, saves a loadable checkpoint and reports an early stop.
    func testStopSignalSavesLoadableCheckpoint() throws {
        var config = tinyConfig(); config.iterations = 50
        let run = tempDir("signal")
        defer { try? FileManager.default.removeItem(atPath: run); StopSignal.reset() }
        let t = makeTrainer(config, run: run)
        try t.prepare(resume: false)
        t.progress = { it, _, _ in if it == 4 { raise(SIGINT) } }
        StopSignal.install()
        let stoppedEarly = try t.train()
        XCTAssertTrue(stoppedEarly)
        XCTAssertEqual(t.iteration, 4)
        let ckpt = try XCTUnwrap(Checkpoint.latest(run: run))
        let restored = DiscoGAN(config: config)
        try Checkpoint.load(into: restored, checkpoint: ckpt, optimizer: true)
        XCTAssertEqual(restored.G_BA.parameters.values.array, t.model.G_BA.parameters.values.array)
        XCTAssertEqual(try Checkpoint.readState(checkpoint: ckpt).iteration, 4)
    }

    /// A checkpoint of another size is refused with a message naming both.
    func testMismatchedCheckpointIsRefused() throws {
        let config = tinyConfig()
        let run = tempDir("mismatch")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let t = makeTrainer(config, run: run)
        try t.prepare(resume: false)
        let dir = try t.save()
        var other = config; other.size = 64
        let m = DiscoGAN(config: other)
        XCTAssertThrowsError(try Checkpoint.load(into: m, checkpoint: dir, optimizer: false)) { e in
            XCTAssertTrue("\(e)".contains("32x32") && "\(e)".contains("64x64"), "\(e)")
        }
        // Starting a fresh run over existing checkpoints is refused, and they stay intact.
        let again = makeTrainer(config, run: run)
        XCTAssertThrowsError(try again.prepare(resume: false))
        XCTAssertNotNil(Checkpoint.latest(run: run))
    }

    /// The model file is a valid safetensors file with PyTorch-layout weights.
    func testModelFileLayout() throws {
        let config = tinyConfig()
        let m = DiscoGAN(config: config); m.initialize(seed: 1)
        let data = Checkpoint.modelData(model: m, iteration: 7)
        let f = try Safetensors.parse(data, path: "mem")
        XCTAssertEqual(f.metadata["format"], Checkpoint.formatVersion)
        XCTAssertEqual(try f.entry("G_AB.e1.weight").shape, [64, 1, 4, 4])       // Conv2d [out, in, kh, kw]
        XCTAssertEqual(try f.entry("G_AB.d4.weight").shape, [64, 1, 4, 4])       // ConvTranspose2d [in, out, kh, kw]
        XCTAssertEqual(try f.entry("G_AB.d2.weight").shape, [256, 128, 4, 4])
        XCTAssertEqual(try f.entry("D_B.c5.weight").shape, [1, 256, 4, 4])
        XCTAssertEqual(try f.entry("D_A.c2.bn.running_var").floats, [Float](repeating: 1, count: 128))
        // Round trip: PyTorch layout back into disco's.
        let w = m.G_AB.parameters.value("e2.weight")  // [128, 4, 4, 64] OHWI
        let t = try f.tensor("G_AB.e2.weight")      // [128, 64, 4, 4] OIHW
        XCTAssertEqual(t[((5 * 64 + 7) * 4 + 2) * 4 + 3], w[((5 * 4 + 2) * 4 + 3) * 64 + 7])
    }
}

final class VariantTests: XCTestCase {
    /// Every variant and loss runs its D and G steps, updates only the networks it uses, and gives finite losses.
    func testVariantsAndLosses() throws {
        for model in ModelVariant.allCases {
            for loss in AdversarialLoss.allCases {
                var c = tinyConfig(); c.model = model; c.loss = loss; c.recon = model == .recongan ? .l1 : .mse
                let m = DiscoGAN(config: c); m.initialize(seed: 1)
                let before = m.networks.map { $0.net.parameters.values.array }
                var rng = Xoshiro256(seed: 2)
                let a = Tensor.uniform([3, 32, 32, 1], low: 0, high: 1, rng: &rng), b = Tensor.uniform([3, 32, 32, 1], low: 0, high: 1, rng: &rng)
                let d = m.step(iteration: 0, xA: a, xB: b), g = m.step(iteration: 1, xA: a, xB: b)
                for (k, v) in d.losses.entries + g.losses.entries { XCTAssertTrue(v.isFinite, "\(model) \(loss) \(k)") }
                let changed = zip(before, m.networks).map { $0 != $1.net.parameters.values.array }
                // Order: G_AB, G_BA, D_A, D_B.
                let expected: [Bool] = model == .discogan ? [true, true, true, true] : (model == .recongan ? [true, true, false, true] : [true, false, false, true])
                XCTAssertEqual(changed, expected, "\(model) \(loss)")
                XCTAssertEqual(g.losses["recon_A"] != nil, model != .gan)
                XCTAssertEqual(g.losses["gan_A"] != nil, model == .discogan)
            }
        }
    }
}
