import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore
import DiscoImage

/// The training options of issue 13 (--keep, --decay-from, --pool-size, --identity, --load-size,
/// --no-flip): each saved in config.json, read with its default from older files, checked on resume.
final class TrainingOptionsTests: XCTestCase {
    /// The checkpoint folders of a run, by name.
    func checkpointNames(_ run: String) -> [String] {
        Checkpoint.list(run: run).map { ($0 as NSString).lastPathComponent }
    }

    /// --keep N keeps the newest N checkpoints; --keep 0 keeps every one.
    func testKeepPrunesToTheNewestN() throws {
        for (keep, expected) in [(3, [4, 5, 6]), (0, [1, 2, 3, 4, 5, 6]), (2, [5, 6])] {
            var c = tinyConfig(); c.iterations = 6; c.saveEvery = 1; c.keep = keep
            let run = tempDir("keep\(keep)")
            defer { try? FileManager.default.removeItem(atPath: run) }
            let t = seededTrainer(c, run: run)
            try t.prepare(resume: false)
            try t.train()
            XCTAssertEqual(checkpointNames(run), expected.map { String(format: "iter-%08d", $0) }, "--keep \(keep)")
        }
    }

    /// A config.json or state.json written before a setting existed reads as its default; a
    /// present but bad value is refused naming the field.
    func testOlderFilesWithoutNewFieldsLoadWithDefaults() throws {
        let (run, ckpt) = try savedTinyRun("older-files")
        defer { try? FileManager.default.removeItem(atPath: run) }
        for field in TrainConfig.defaultedFields {
            try editJSON(run + "/config.json", field, nil)
            try editJSON(ckpt + "/state.json", "config." + field, nil)
        }
        let text = try String(contentsOfFile: run + "/config.json", encoding: .utf8)
        for field in TrainConfig.defaultedFields { XCTAssertFalse(text.contains("\"\(field)\""), field) }
        XCTAssertEqual(try TrainConfig.read(file: run + "/config.json"), tinyConfig())
        XCTAssertEqual(try Checkpoint.readState(checkpoint: ckpt).config, tinyConfig())
        try seededTrainer(tinyConfig(), run: run).prepare(resume: true)

        try editJSON(run + "/config.json", "keep", -1)
        XCTAssertThrowsError(try TrainConfig.read(file: run + "/config.json")) { e in
            XCTAssertTrue("\(e)".contains("field 'keep' is -1"), "\(e)")
        }
        for (field, value) in [("keep", "two"), ("flip", "yes"), ("flip", 7), ("loadSize", 20), ("poolSize", -2), ("decayFrom", 20),
                               ("identityWeight", -1)] as [(String, Any)] {
            try editJSON(run + "/config.json", "keep", 2)
            try editJSON(run + "/config.json", field, value)
            XCTAssertThrowsError(try TrainConfig.read(file: run + "/config.json"), "\(field) = \(value)") { e in
                XCTAssertTrue("\(e)".contains("config.json") && "\(e)".contains("field '\(field)'"), "\(field) = \(value): \(e)")
            }
            try editJSON(run + "/config.json", field, nil)
        }
    }

    /// TrainConfig's hand-written decoder reads every field: a config with each field away from its
    /// default survives config.json. (A field added to TrainConfig but not set here fails the first check.)
    func testEveryFieldSurvivesConfigJSON() throws {
        var c = TrainConfig()
        c.size = 32; c.channels = 1; c.batch = 5; c.iterations = 77; c.model = .recongan; c.loss = .lsgan; c.recon = .l1
        c.adam = .init(learningRate: 1e-3, beta1: 0.6, beta2: 0.99, eps: 1e-7, weightDecay: 0)
        c.curriculumIterations = 9; c.startingRate = 0.02; c.defaultRate = 0.4; c.updateInterval = 4
        c.ganWeight = 0.2; c.fmWeight = 0.8; c.seed = 3; c.saveEvery = 11; c.sampleEvery = 12; c.logEvery = 13
        c.keep = 5; c.keepBest = true; c.decayFrom = 40; c.poolSize = 7; c.identityWeight = 0.3; c.loadSize = 36; c.flip = true
        c.bf16 = true
        let defaults = Dictionary(uniqueKeysWithValues: Mirror(reflecting: TrainConfig()).children.map { ($0.label!, "\($0.value)") })
        for child in Mirror(reflecting: c).children {
            XCTAssertNotEqual("\(child.value)", defaults[child.label!], "set \(child.label!) away from its default in this test")
        }
        let adamDefaults = Mirror(reflecting: Adam.Hyperparameters()).children.map { "\($0.value)" }
        for (k, child) in Mirror(reflecting: c.adam).children.enumerated() { XCTAssertNotEqual("\(child.value)", adamDefaults[k], child.label!) }
        let run = tempDir("config-roundtrip")
        defer { try? FileManager.default.removeItem(atPath: run) }
        XCTAssertEqual(c.problems(), [])
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        try enc.encode(c).write(to: URL(fileURLWithPath: run + "/config.json"))
        XCTAssertEqual(try TrainConfig.read(file: run + "/config.json"), c)
    }

    /// --keep changes no result: a run may resume with another.
    func testKeepMayChangeOnResume() throws {
        let (run, _) = try savedTinyRun("keep-resume")
        defer { try? FileManager.default.removeItem(atPath: run) }
        var c = tinyConfig(); c.keep = 0; c.iterations = 6; c.saveEvery = 1
        let t = seededTrainer(c, run: run)
        try t.prepare(resume: true)
        try t.train()
        XCTAssertEqual(checkpointNames(run), [4, 5, 6].map { String(format: "iter-%08d", $0) })
    }
}

extension TrainingOptionsTests {
    /// --decay-from D: lr(i) = lr for i < D, lr * (N - i) / (N - D) from D on, 0 at N = --iterations.
    func testDecayScheduleMatchesClosedForm() {
        var c = TrainConfig(); c.iterations = 100; c.adam.learningRate = 2e-4
        for i in 0...100 { XCTAssertEqual(c.learningRate(at: i), 2e-4, "no decay, iteration \(i)") }
        c.decayFrom = 60
        for i in 0...100 {
            let expected: Double = i < 60 ? 2e-4 : Double(Float(2e-4)) * Double(100 - i) / 40
            XCTAssertEqual(Double(c.learningRate(at: i)), expected, accuracy: 1e-7 * expected + 1e-15, "iteration \(i)")
        }
        XCTAssertEqual(c.learningRate(at: 59), 2e-4)
        XCTAssertEqual(c.learningRate(at: 60), 2e-4)
        XCTAssertEqual(Double(c.learningRate(at: 80)), 1e-4, accuracy: 1e-11)
        XCTAssertEqual(c.learningRate(at: 100), 0)
        c.decayFrom = 0
        XCTAssertEqual(Double(c.learningRate(at: 50)), 1e-4, accuracy: 1e-11)
        XCTAssertEqual(TensorBoard.tag(for: "lr"), "schedule/learning_rate")
    }

    /// Adam takes the rate in force: on its first step every parameter moves by at most lr (about
    /// lr where the gradient is not tiny), so one D step at iteration 6 of a 10-iteration run
    /// decaying from 0 moves D_B's weights by 2e-4 * 4/10, not 2e-4. The step reports it as `lr`.
    func testAdamUsesTheDecayedRate() {
        var c = tinyConfig(); c.iterations = 10; c.decayFrom = 0
        let model = DiscoGAN(config: c)
        model.initialize(seed: 3)
        var rng = Xoshiro256(seed: 8)
        let shape = [c.batch, c.size, c.size, c.channels]
        let xA = Tensor.uniform(shape, low: 0, high: 1, rng: &rng), xB = Tensor.uniform(shape, low: 0, high: 1, rng: &rng)
        let before = (0..<model.D_B.parameters.values.count).map { model.D_B.parameters.values[$0] }
        let (kind, losses) = model.step(iteration: 6, xA: xA, xB: xB)
        XCTAssertEqual(kind, "D")
        let lr: Float = 2e-4 * 4 / 10
        XCTAssertEqual(losses["lr"], lr)
        var largest: Float = 0
        for i in before.indices { largest = max(largest, abs(model.D_B.parameters.values[i] - before[i])) }
        XCTAssertEqual(largest, lr, accuracy: lr * 1e-3, "largest first-step update")
    }

    /// The rate in force is logged as `lr` at every logged iteration.
    func testLearningRateIsLogged() throws {
        var c = tinyConfig(); c.iterations = 6; c.decayFrom = 2; c.logEvery = 1
        let run = tempDir("lr-log")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let t = seededTrainer(c, run: run)
        try t.prepare(resume: false)
        try t.train()
        let lines = try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        for line in lines {
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let iter = try XCTUnwrap(obj["iter"] as? Int)
            // Logged after iteration `iter`, whose step ran at index iter - 1.
            XCTAssertEqual(try XCTUnwrap(obj["lr"] as? Double), Double(c.learningRate(at: iter - 1)), accuracy: 1e-12, "iter \(iter)")
        }
    }
}

extension TrainingOptionsTests {
    /// A batch of n 2x2x1 images, image k filled with ids[k].
    func batch(_ ids: [Float]) -> Tensor { Tensor(shape: [ids.count, 2, 2, 1], values: ids.flatMap { [$0, $0, $0, $0] }) }
    func ids(_ t: Tensor) -> [Float] { (0..<t.shape[0]).map { t[$0 * 4] } }

    /// ImagePool against CycleGAN's definition: until full, each image is stored and returned;
    /// then, per image, a draw u in [0, 1): u > 0.5 returns the stored image of slot
    /// (next draw mod capacity) and stores the new one there, otherwise the new one is returned.
    /// The draws are replayed here from a copy of the pool's generator.
    func testPoolFollowsItsDefinition() {
        let empty = ImagePool(capacity: 0, seed: 1)
        let x = batch([1, 2, 3])
        XCTAssertTrue(empty.query(x) === x, "--pool-size 0 must hand D the batch itself")
        XCTAssertTrue(empty.images.isEmpty)

        let pool = ImagePool(capacity: 4, seed: 11)
        var rng = pool.rng
        var expectedPool: [Float] = []
        var fromPool = 0, drawn = 0
        var next: Float = 1
        for round in 0..<100 {
            let input = (0..<3).map { _ -> Float in defer { next += 1 }; return next }
            var expected: [Float] = []
            for id in input {
                if expectedPool.count < 4 { expectedPool.append(id); expected.append(id); continue }
                drawn += 1
                if rng.nextUniform() > 0.5 {
                    let slot = Int(rng.next() % 4)
                    expected.append(expectedPool[slot]); expectedPool[slot] = id; fromPool += 1
                } else {
                    expected.append(id)
                }
            }
            XCTAssertEqual(ids(pool.query(batch(input))), expected, "round \(round)")
            XCTAssertEqual(pool.images.map { $0[0] }, expectedPool, "round \(round)")
            XCTAssertTrue(pool.images.allSatisfy { $0.allSatisfy { $0 == $0 } && $0.count == 4 })
        }
        // The first four are stored and returned unchanged; about half of the rest come from the pool.
        XCTAssertEqual(drawn, 296)
        XCTAssertTrue((118...178).contains(fromPool), "\(fromPool) of \(drawn) from the pool")
    }

    /// With a pool, 12 iterations straight and 6 + resume + 6 are bit-identical (weights, Adam,
    /// pool images and generator); the pool is in the checkpoint and changes training.
    func testResumeIsBitExactWithAPool() throws {
        var c = tinyConfig(); c.iterations = 12; c.poolSize = 4
        let straightRun = tempDir("pool-straight"), splitRun = tempDir("pool-split"), noPoolRun = tempDir("pool-none")
        defer { for r in [straightRun, splitRun, noPoolRun] { try? FileManager.default.removeItem(atPath: r) } }
        func state(_ m: DiscoGAN) -> [Float] {
            m.networks.flatMap { $0.net.parameters.values.array + $0.net.buffers.values.array + $0.opt.m.array + $0.opt.v.array }
        }
        let straight = seededTrainer(c, run: straightRun)
        try straight.prepare(resume: false)
        try straight.train()
        let first = seededTrainer(c, run: splitRun)
        try first.prepare(resume: false)
        try first.train(until: 6)
        let ckpt = try first.save()
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt + "/pool.safetensors"))
        XCTAssertEqual(first.model.poolB.images.count, 4)
        let second = seededTrainer(c, run: splitRun)
        try second.prepare(resume: true)
        XCTAssertEqual(second.model.poolA.images, first.model.poolA.images)
        XCTAssertEqual(second.model.poolB.rng, first.model.poolB.rng)
        try second.train()
        XCTAssertEqual(state(second.model), state(straight.model), "resumed run with a pool differs from the unbroken one")
        XCTAssertEqual(second.model.poolB.images, straight.model.poolB.images)
        XCTAssertEqual(second.model.poolA.rng, straight.model.poolA.rng)

        var none = c; none.poolSize = 0
        let plain = seededTrainer(none, run: noPoolRun)
        try plain.prepare(resume: false)
        try plain.train()
        XCTAssertNotEqual(state(plain.model), state(straight.model), "the pool changed nothing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: Checkpoint.latest(run: noPoolRun)! + "/pool.safetensors"))

        // A checkpoint without its pool, or with a damaged one, is refused naming the file.
        let latest = try XCTUnwrap(Checkpoint.latest(run: splitRun))
        let poolFile = latest + "/pool.safetensors"
        let saved = try Data(contentsOf: URL(fileURLWithPath: poolFile))
        try FileManager.default.removeItem(atPath: poolFile)
        var more = c; more.iterations = 14
        XCTAssertThrowsError(try seededTrainer(more, run: splitRun).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains("pool.safetensors") && "\(e)".contains("--pool-size 4"), "\(e)")
        }
        var tensors: [(String, Tensor)] = []
        var metadata = ["format": Checkpoint.formatVersion, "A.count": "9", "A.rng": "1,2,3,4", "B.count": "0", "B.rng": "1,2,3,4"]
        try Safetensors.serialize(tensors, metadata: metadata).write(to: URL(fileURLWithPath: poolFile))
        XCTAssertThrowsError(try seededTrainer(more, run: splitRun).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains("pool.safetensors") && "\(e)".contains("A.count"), "\(e)")
        }
        metadata["A.count"] = "0"; metadata["B.rng"] = "0,0,0,0"
        try Safetensors.serialize(tensors, metadata: metadata).write(to: URL(fileURLWithPath: poolFile))
        XCTAssertThrowsError(try seededTrainer(more, run: splitRun).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains("B.rng"), "\(e)")
        }
        metadata["B.rng"] = "1,2,3,4"; metadata["B.count"] = "1"
        tensors = [("B.images", Tensor(filling: .nan, shape: [1, 32, 32, 1]))]
        try Safetensors.serialize(tensors, metadata: metadata).write(to: URL(fileURLWithPath: poolFile))
        XCTAssertThrowsError(try seededTrainer(more, run: splitRun).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains("B.images") && "\(e)".contains("NaN"), "\(e)")
        }
        try saved.write(to: URL(fileURLWithPath: poolFile))
        try seededTrainer(more, run: splitRun).prepare(resume: true)
    }
}

extension PyTorchFixtureTests {
    /// --identity W: the step's idt_A / idt_B against L1 computed by hand from the generators'
    /// outputs, gen_total grown by exactly W (idt_A + idt_B), and G's gradients (identity
    /// included) against finite differences of the reference G loss plus the identity terms.
    func testIdentityLossValueAndGradients() throws {
        var config = TrainConfig()
        config.size = 32; config.channels = 1; config.batch = 4; config.identityWeight = 0.7
        var plainConfig = config; plainConfig.identityWeight = 0
        let seeds = ["G_AB": 11, "G_BA": 12, "D_A": 13, "D_B": 14]
        func model(_ c: TrainConfig) throws -> DiscoGAN {
            let m = DiscoGAN(config: c)
            for (n, net, _) in m.networks { try hashInit(net, seed: seeds[n]!) }
            return m
        }
        var rng = Xoshiro256(seed: 21)
        let a = Tensor.uniform([4, 32, 32, 1], low: 0, high: 1, rng: &rng), b = Tensor.uniform([4, 32, 32, 1], low: 0, high: 1, rng: &rng)
        /// mean |g(x) - x| in Double, train mode (batch statistics), at g's current weights.
        func l1(_ g: Network, _ x: Tensor) -> Double {
            let y = g.forward(x, record: false).output
            var s = 0.0
            for i in 0..<x.count { s += abs(Double(y[i]) - Double(x[i])) }
            return s / Double(x.count)
        }
        let m = try model(config), plain = try model(plainConfig)
        let idtB = l1(m.G_AB, b), idtA = l1(m.G_BA, a)
        let rate = config.rate(at: 1)
        let losses = m.generatorStep(xA: a, xB: b, rate: rate)
        let plainLosses = plain.generatorStep(xA: a, xB: b, rate: rate)
        XCTAssertEqual(Double(try XCTUnwrap(losses["idt_B"])), idtB, accuracy: 1e-6 * idtB)
        XCTAssertEqual(Double(try XCTUnwrap(losses["idt_A"])), idtA, accuracy: 1e-6 * idtA)
        XCTAssertNil(plainLosses["idt_A"]); XCTAssertNil(plainLosses["idt_B"])
        XCTAssertEqual(Double(losses["gen_total"]!) - Double(plainLosses["gen_total"]!), 0.7 * (idtA + idtB), accuracy: 1e-5)
        for term in ["gan_A", "gan_B", "fm_A", "fm_B", "recon_A", "recon_B"] { XCTAssertEqual(losses[term], plainLosses[term], term) }

        let fd = try model(config)
        for (n, net, _) in fd.networks where n.hasPrefix("G_") {
            let analytic = m.networks.first { $0.name == n }!.net.parameters.grads.copy()
            assertFiniteDifferences(net, analytic: analytic, "identity G step \(n)", rng: &rng) {
                Self.referenceGLoss(fd, a, b, rate: Double(rate)) + 0.7 * (l1(fd.G_AB, b) + l1(fd.G_BA, a))
            }
        }
    }
}

extension CLITests {
    /// Each training option of issue 13 is in `disco train --help` with its default, and a bad
    /// value is refused naming the option (exit 64, no signal).
    func testTrainingOptionsHelpAndValidation() throws {
        let help = try run(["train", "--help"]).out.replacingOccurrences(of: "\n", with: " ")
            .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        for (option, def) in TrainingOptionsTests.options {
            XCTAssertTrue(help.contains(option), "\(option) not in --help")
            guard let def else { continue }
            let after = help.components(separatedBy: option).dropFirst().joined()
            XCTAssertTrue(after.prefix(200).contains("(default: \(def))"), "\(option): no default \(def) in --help")
        }
        for (args, option) in TrainingOptionsTests.badValues {
            let r = try run(["train", "/nonexistent-a", "/nonexistent-b"] + args, expect: 64)
            XCTAssertTrue(r.err.contains(option), "\(args): \(r.err)")
        }
    }
}

extension CLITests {
    /// --load-size and --flip/--no-flip reach config.json (flips by default with a crop, as CycleGAN),
    /// while the sample images (the test folders) are never cropped or flipped.
    func testLoadSizeAndFlipAsAUserRunsThem() throws {
        let root = NSTemporaryDirectory() + "disco-cli-augment-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/data/trainA", count: 4, kind: 0)
        try makeDomain(root + "/data/trainB", count: 4, kind: 1)
        try makeDomain(root + "/data/testA", count: 2, kind: 0)
        try makeDomain(root + "/data/testB", count: 2, kind: 1)
        let common = ["train", root + "/data", "--size", "32", "--batch", "2", "--iterations", "1", "--sample-every", "1", "--samples", "2"]
        func config(_ run: String) throws -> TrainConfig { try TrainConfig.read(file: run + "/config.json") }
        try run(common + ["--load-size", "40", "--out", root + "/crop"])
        XCTAssertEqual(try config(root + "/crop").loadSize, 40)
        XCTAssertTrue(try config(root + "/crop").flip)
        try run(common + ["--load-size", "40", "--no-flip", "--out", root + "/noflip"])
        XCTAssertFalse(try config(root + "/noflip").flip)
        try run(common + ["--flip", "--out", root + "/flip"])
        XCTAssertEqual(try config(root + "/flip").loadSize, 0)
        XCTAssertTrue(try config(root + "/flip").flip)
        try run(common + ["--out", root + "/plain"])
        XCTAssertEqual(try config(root + "/plain").loadSize, 0)
        XCTAssertFalse(try config(root + "/plain").flip)
        // The loader takes them: after one D step on the same seed, each run's D differs from the plain one's.
        func model(_ run: String) -> Data? { FileManager.default.contents(atPath: run + "/checkpoints/iter-00000001/model.safetensors") }
        XCTAssertNotNil(model(root + "/plain"))
        for run in ["crop", "noflip", "flip"] { XCTAssertNotEqual(model(root + "/" + run), model(root + "/plain"), run) }
        XCTAssertNotEqual(model(root + "/crop"), model(root + "/noflip"))
        // Row 0 of the sample grid (x_A, at 2-pixel gutters) is testA's first image resized to 32: no crop, no flip.
        let grid = try decodeImage(path: root + "/crop/samples/iter-00000001.png")
        let expected = try loadSquareImage(path: root + "/data/testA/000.png", size: 32, channels: 3)
        var worst: Float = 0
        for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
            worst = max(worst, abs(grid[2 + x, 2 + y, c] - expected[x, y, c]))
        } } }
        XCTAssertLessThanOrEqual(worst, 1.01 / 255, "sample image differs from the resized test image")
        // A changed --load-size or flip is refused on resume, naming it.
        let r = try run(common.map { $0 == "1" ? "2" : $0 } + ["--load-size", "36", "--out", root + "/crop", "--resume"], expect: 1)
        XCTAssertTrue(r.err.contains("--load-size 36 (the run has 40)"), r.err)
    }
}

extension TrainingOptionsTests {
    /// The options and their defaults as `--help` shows them (nil: a flag).
    static let options: [(String, String?)] = [("--keep", "2"), ("--decay-from", "none"), ("--pool-size", "0"), ("--identity", "0.0"), ("--load-size", nil), ("--no-flip", nil)]
    /// Values refused by `disco train`, with the option the message must name.
    static let badValues: [([String], String)] = [
        (["--keep", "-1"], "--keep"),
        (["--decay-from", "-1"], "--decay-from"), (["--decay-from", "10", "--iterations", "10"], "--decay-from"),
        (["--pool-size", "-1"], "--pool-size"), (["--identity", "-0.5"], "--identity"), (["--identity", "nan"], "--identity"),
        (["--load-size", "31", "--size", "32"], "--load-size"), (["--load-size", "4096"], "--load-size"),
    ]
}
