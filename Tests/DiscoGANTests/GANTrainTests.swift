import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// Writes `perClass` 28x28 gray PNGs per label: label k a bright bar at row 4 + 8k (label 0..2),
/// shifted a pixel per image, on black. `labelled: false` writes them all in `dir` itself.
func makeGANFolder(_ dir: String, classes: Int = 3, perClass: Int = 8, labelled: Bool = true) throws {
    for k in 0..<classes {
        let sub = labelled ? dir + "/\(k)-class\(k)" : dir
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        for i in 0..<perClass {
            var img = Image(width: 28, height: 28, channels: 1, value: 0)
            for y in (4 + 8 * k)..<(8 + 8 * k) { for x in (2 + i)..<(20 + i) { img.pixels[y * 28 + x] = 0.9 } }
            try encodePNG(img, path: sub + String(format: "/%d-%03d.png", k, i))
        }
    }
}

/// `disco gan train`'s library: data folders, the losses, one step, sampling, the training loop's
/// files, exact resume after a finished run and after a stop in mid-epoch, and refusals.
final class GANTrainTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        _ = try BLAS.load()
        root = NSTemporaryDirectory() + "disco-gan-\(getpid())-\(UUID().uuidString.prefix(8))"
        try makeGANFolder(root + "/data")
        StopSignal.reset()
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: root)
        StopSignal.reset()
    }

    func config(_ arch: GANArch, conditional: Bool = false, batch: Int = 8, epochs: Int = 2) -> GANConfig {
        var c = GANConfig()
        c.arch = arch; c.batch = batch; c.epochs = epochs; c.width = 4
        if conditional { c.classNames = ["0-class0", "1-class1", "2-class2"] }
        return c
    }

    func testLabelledAndPlainFolders() throws {
        let d = try LabelledImages.load(folder: root + "/data")
        XCTAssertEqual(d.classNames, ["0-class0", "1-class1", "2-class2"])
        XCTAssertEqual(d.images.shape, [24, 28, 28, 1])
        XCTAssertEqual(d.labels, [Int](repeating: 0, count: 8) + [Int](repeating: 1, count: 8) + [Int](repeating: 2, count: 8))
        // Image 8 (label 1, the first): its bar on rows 12...15, columns 2...19; 0.9 quantised to 8 bits.
        XCTAssertEqual(d.images[(8 * 28 + 12) * 28 + 2], 0.9, accuracy: 0.5 / 255 + 1e-6)
        XCTAssertEqual(d.images[(8 * 28 + 4) * 28 + 2], 0)
        // A file that looks like a PNG but does not decode is left out and reported.
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]).write(to: URL(fileURLWithPath: root + "/data/1-class1/bad.png"))
        let withBad = try LabelledImages.load(folder: root + "/data")
        XCTAssertEqual(withBad.count, 24); XCTAssertEqual(withBad.failures.map { ($0.0 as NSString).lastPathComponent }, ["bad.png"])
        XCTAssertEqual(withBad.labels, d.labels)
        XCTAssertEqual(withBad.images.array, d.images.array)
        try makeGANFolder(root + "/plain", labelled: false)
        let p = try LabelledImages.load(folder: root + "/plain")
        XCTAssertNil(p.classNames); XCTAssertEqual(p.count, 24); XCTAssertEqual(p.labels, [])
        // The layout folder instead of its train/ folder; images beside label folders; a missing folder.
        try makeGANFolder(root + "/layout/train")
        XCTAssertThrowsError(try LabelledImages.load(folder: root + "/layout")) { XCTAssertTrue("\($0)".contains("DIR/train"), "\($0)") }
        try FileManager.default.copyItem(atPath: root + "/data/0-class0/0-000.png", toPath: root + "/data/loose.png")
        XCTAssertThrowsError(try LabelledImages.load(folder: root + "/data")) { XCTAssertTrue("\($0)".contains("loose.png"), "\($0)") }
        XCTAssertThrowsError(try LabelledImages.load(folder: root + "/nope")) { XCTAssertTrue("\($0)".contains("not found"), "\($0)") }
    }

    /// The DCGAN's space: 28x28 in [0, 1] padded to 32x32 in [-1, 1] and back.
    func testModelImagesRoundTrip() throws {
        let m = GANModel(config: config(.dcgan))
        var rng = Xoshiro256(seed: 1)
        let x = Tensor.uniform([2, 28, 28, 1], low: 0, high: 1, rng: &rng)
        let y = m.modelImages(x)
        XCTAssertEqual(y.shape, [2, 32, 32, 1])
        XCTAssertEqual(y[0], -1); XCTAssertEqual(y[(1 * 32 + 31) * 32 + 31], -1)
        XCTAssertEqual(y[(1 * 32 + 2) * 32 + 2], 2 * x[(1 * 28 + 0) * 28 + 0] - 1)
        XCTAssertLessThan(maxAbsDifference(m.images(fromModel: y), x), 1e-6)
    }

    /// The losses against their formulas, computed in Double; gradients against finite differences.
    func testLossesAgainstFormulas() {
        let d = Tensor(shape: [4, 1], values: [-2, -0.3, 0.4, 3])
        func sig(_ v: Float) -> Double { 1 / (1 + exp(-Double(v))) }
        func check(_ loss: GANLoss, _ g: GANGeneratorLoss, _ expectedD0: Double, _ expectedG: Double) {
            var c = config(.mlp); c.loss = loss; c.generatorLoss = g
            let m = GANModel(config: c)
            let lD = m.discriminatorLoss(d, target: 0), lG = m.generatorLoss(d)
            XCTAssertEqual(Double(lD.loss), expectedD0, accuracy: 1e-6, "\(loss) D(fake)")
            XCTAssertEqual(Double(lG.loss), expectedG, accuracy: 1e-6, "\(loss) \(g) G")
            for i in 0..<4 {
                let h: Float = 1e-2
                let p = d.copy(), q = d.copy(); p[i] += h; q[i] -= h
                let fd = (Double(m.generatorLoss(p).loss) - Double(m.generatorLoss(q).loss)) / Double(2 * h)
                XCTAssertEqual(Double(lG.grad[i]), fd, accuracy: 1e-3, "\(loss) \(g) G gradient \(i)")
            }
        }
        let v = d.array
        let meanLog1m = v.map { log(1 - sig($0)) }.reduce(0, +) / 4
        let meanLog = v.map { log(sig($0)) }.reduce(0, +) / 4
        check(.bce, .nonsaturating, -meanLog1m, -meanLog)
        check(.bce, .minimax, -meanLog1m, meanLog1m)
        let sq0 = v.map { Double($0) * Double($0) }.reduce(0, +) / 4, sq1 = v.map { (Double($0) - 1) * (Double($0) - 1) }.reduce(0, +) / 4
        check(.lsgan, .nonsaturating, 0.5 * sq0, 0.5 * sq1)
    }

    /// One MLP step: D's loss and outputs are those of D before its update, computed here from
    /// the same weights.
    func testStepReportsDBeforeItsUpdate() throws {
        let data = try LabelledImages.load(folder: root + "/data")
        let m = GANModel(config: config(.mlp, conditional: true))
        m.initialize(seed: 5)
        var rng = Xoshiro256(seed: 6)
        let (x, labels) = data.batch((0..<8).map { $0 * 3 }[...])
        let z = m.noise(8, rng: &rng)
        let real = m.discriminate(x, labels: labels)
        let fake = m.discriminate(m.generate(z: z, labels: labels), labels: labels)
        func sig(_ v: Float) -> Double { 1 / (1 + exp(-Double(v))) }
        let realTerm: Double = real.map { log(sig($0)) }.reduce(0, +)
        let fakeTerm: Double = fake.map { log(1 - sig($0)) }.reduce(0, +)
        let expected = -(realTerm + fakeTerm) / 8
        let s = m.step(real: m.modelImages(x), labels: labels, z: z)
        XCTAssertEqual(Double(s.lossD), expected, accuracy: 1e-5)
        XCTAssertEqual(Double(s.dReal), real.map(sig).reduce(0, +) / 8, accuracy: 1e-6)
        XCTAssertEqual(Double(s.dFake), fake.map(sig).reduce(0, +) / 8, accuracy: 1e-6)
        XCTAssertEqual(m.G.optimizer.step, 1); XCTAssertEqual(m.D.optimizer.step, 1)
    }

    func testSampleInterface() throws {
        let m = GANModel(config: config(.dcgan, conditional: true))
        m.initialize(seed: 2)
        let a = try m.sample(count: 5, labels: [0, 1, 2, 2, 0], seed: 7), b = try m.sample(count: 5, labels: [0, 1, 2, 2, 0], seed: 7)
        XCTAssertEqual(a.shape, [5, 28, 28, 1])
        XCTAssertEqual(a.array, b.array)
        XCTAssertTrue(a.array.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertNotEqual(try m.sample(count: 5, labels: nil, seed: 8).array, a.array)
        XCTAssertThrowsError(try m.sample(count: 2, labels: [0, 3], seed: 0)) { XCTAssertTrue("\($0)".contains("label 3"), "\($0)") }
        let u = GANModel(config: config(.mlp))
        XCTAssertThrowsError(try u.sample(count: 1, labels: [0], seed: 0)) { XCTAssertTrue("\($0)".contains("unconditional"), "\($0)") }
    }

    func files(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    func assertSameCheckpoint(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for name in ["model.safetensors", "optimizer.safetensors"] {
            let x = try Safetensors.read(path: a + "/" + name), y = try Safetensors.read(path: b + "/" + name)
            XCTAssertEqual(x.names, y.names, file: file, line: line)
            for n in x.names where x.entries[n]!.floats != y.entries[n]!.floats { XCTFail("\(name) \(n) differs", file: file, line: line) }
        }
        let s = try GANCheckpoint.readState(checkpoint: a), t = try GANCheckpoint.readState(checkpoint: b)
        XCTAssertEqual(s.generator, t.generator, file: file, line: line)
        XCTAssertEqual(s.iteration, t.iteration, file: file, line: line)
    }

    /// A whole run's files, and --resume after a finished run and after a stop in mid-epoch, each
    /// bit-identical to the unbroken run (conditional DCGAN: batch norm statistics, labels, z).
    func testRunFilesAndExactResume() throws {
        let data = try LabelledImages.load(folder: root + "/data")
        let c = config(.dcgan, conditional: true, epochs: 2)
        // Unbroken: 2 epochs of 3 iterations.
        let straight = try GANTrainer(config: c, run: root + "/straight", data: data)
        try straight.prepare(resume: false)
        XCTAssertFalse(try straight.train())
        XCTAssertEqual(straight.iteration, 6)
        XCTAssertEqual(files(root + "/straight/checkpoints"), ["iter-00000003", "iter-00000006"])
        XCTAssertEqual(files(root + "/straight/samples"), ["epoch-0000.json", "epoch-0000.png", "epoch-0001.json", "epoch-0001.png", "epoch-0002.json", "epoch-0002.png"])
        let lines = try String(contentsOfFile: root + "/straight/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(Set(first.keys), ["iter", "epoch", "time", "loss_D", "loss_G", "D_x", "D_G_z"])
        // The grid: one row of 10 per label (3 rows of 28 + gutters).
        let grid = try decodeImage(path: root + "/straight/samples/epoch-0002.png")
        XCTAssertEqual(grid.width, 10 * 28 + 11 * 2); XCTAssertEqual(grid.height, 3 * 28 + 4 * 2)
        let hist = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/straight/samples/epoch-0002.json"))) as! [String: Any]
        XCTAssertEqual((hist["real"] as! [Int]).reduce(0, +), 24)
        XCTAssertEqual((hist["fake"] as! [Int]).reduce(0, +), 24)
        try writeGANReport(runDirectory: root + "/straight")
        let page = try String(contentsOfFile: root + "/straight/report.html", encoding: .utf8)
        for want in ["id=\"d-out\"", "id=\"losses\"", "id=\"dhist-0\"", "id=\"dhist-2\"", "samples after epoch 2", "conditional dcgan"] {
            XCTAssertTrue(page.contains(want), want)
        }

        // One epoch, then --resume to two.
        var one = c; one.epochs = 1
        let a = try GANTrainer(config: one, run: root + "/resumed", data: data)
        try a.prepare(resume: false); try a.train()
        let b = try GANTrainer(config: c, run: root + "/resumed", data: data)
        try b.prepare(resume: true); try b.train()
        try assertSameCheckpoint(root + "/resumed/checkpoints/iter-00000006", root + "/straight/checkpoints/iter-00000006")

        // Stopped (SIGINT) after iteration 4, in the middle of epoch 2; then resumed.
        StopSignal.install()
        let s = try GANTrainer(config: c, run: root + "/stopped", data: data)
        s.progress = { it, _, _ in if it == 4 { raise(SIGINT) } }
        try s.prepare(resume: false)
        XCTAssertTrue(try s.train())
        signal(SIGINT, SIG_DFL); StopSignal.reset()
        XCTAssertEqual(files(root + "/stopped/checkpoints"), ["iter-00000003", "iter-00000004"])
        let mid = try GANCheckpoint.readState(checkpoint: root + "/stopped/checkpoints/iter-00000004")
        XCTAssertEqual([mid.epoch, mid.position], [1, 1])
        let r = try GANTrainer(config: c, run: root + "/stopped", data: data)
        try r.prepare(resume: true); try r.train()
        try assertSameCheckpoint(root + "/stopped/checkpoints/iter-00000006", root + "/straight/checkpoints/iter-00000006")
        let resumedLog = try String(contentsOfFile: root + "/stopped/log.jsonl", encoding: .utf8)
        XCTAssertEqual(resumedLog.split(separator: "\n").count, 6)
    }

    func testRefusals() throws {
        let data = try LabelledImages.load(folder: root + "/data")
        func refused(_ c: GANConfig, _ d: LabelledImages, _ want: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try GANTrainer(config: c, run: root + "/r", data: d), file: file, line: line) {
                XCTAssertTrue("\($0)".contains(want), "\($0)", file: file, line: line)
            }
        }
        var c = config(.mlp); c.batch = 25
        refused(c, data, "--batch 25")
        c = config(.mlp); c.loss = .lsgan; c.generatorLoss = .minimax
        refused(c, data, "--g-loss minimax")
        try makeGANFolder(root + "/plain", labelled: false)
        refused(config(.mlp, conditional: true), try LabelledImages.load(folder: root + "/plain"), "--conditional")
        // Resume with another learning rate: refused, naming the option and both values.
        let t = try GANTrainer(config: config(.mlp, epochs: 1), run: root + "/run", data: data)
        try t.prepare(resume: false); try t.train()
        var other = config(.mlp, epochs: 2); other.learningRate = 1e-3
        let u = try GANTrainer(config: other, run: root + "/run", data: data)
        XCTAssertThrowsError(try u.prepare(resume: true)) { XCTAssertTrue("\($0)".contains("--lr 0.001 (the run's: 0.0002)"), "\($0)") }
        // Starting again over existing checkpoints without --resume.
        let v = try GANTrainer(config: config(.mlp, epochs: 1), run: root + "/run", data: data)
        XCTAssertThrowsError(try v.prepare(resume: false)) { XCTAssertTrue("\($0)".contains("--resume"), "\($0)") }
    }

    /// A loss that turns NaN stops the run naming the iteration; nothing of it is saved, the last
    /// checkpoint stays the newest.
    func testDivergenceStopsWithoutSaving() throws {
        let data = try LabelledImages.load(folder: root + "/data")
        let t = try GANTrainer(config: config(.mlp, epochs: 1), run: root + "/run", data: data)
        try t.prepare(resume: false); try t.train()
        let u = try GANTrainer(config: config(.mlp, epochs: 2), run: root + "/run", data: data)
        try u.prepare(resume: true)
        u.model.D.values[0] = .nan
        XCTAssertThrowsError(try u.train()) { e in
            XCTAssertTrue(e is GANTrainer.Diverged, "\(e)")
            XCTAssertTrue("\(e)".contains("diverged at iteration 4") && "\(e)".contains("iter-00000003"), "\(e)")
        }
        XCTAssertEqual(GANCheckpoint.list(run: root + "/run").map { ($0 as NSString).lastPathComponent }, ["iter-00000003"])
    }
}
