import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore

/// A trainer of `config` in `run` fed by `SeededBatches`, logging nowhere.
func seededTrainer(_ config: TrainConfig, run: String) -> Trainer {
    let shape = [config.batch, config.size, config.size, config.channels]
    var rng = Xoshiro256(seed: 5)
    let sa = Tensor.uniform([2, config.size, config.size, config.channels], low: 0, high: 1, rng: &rng)
    let sb = Tensor.uniform([2, config.size, config.size, config.channels], low: 0, high: 1, rng: &rng)
    let t = Trainer(config: config, run: run, source: SeededBatches(shape: shape, seed: 9), sampleA: sa, sampleB: sb)
    t.log = { _ in }
    return t
}

/// Reads a JSON object, sets (or with nil removes) the value at a dotted key path, writes it back.
func editJSON(_ path: String, _ keyPath: String, _ value: Any?) throws {
    let data = try XCTUnwrap(FileManager.default.contents(atPath: path), path)
    let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], path)
    func set(_ o: [String: Any], _ keys: ArraySlice<Substring>) -> [String: Any] {
        var o = o
        let k = String(keys.first!)
        if keys.count == 1 { o[k] = value } else { o[k] = set(o[k] as? [String: Any] ?? [:], keys.dropFirst()) }
        return o
    }
    let edited = set(obj, keyPath.split(separator: ".")[...])
    try JSONSerialization.data(withJSONObject: edited, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
}

/// A tiny run (32x32 gray, batch 3) trained 4 iterations and saved; returns (run, checkpoint).
func savedTinyRun(_ name: String, config: TrainConfig = tinyConfig(), iterations: Int = 4) throws -> (run: String, checkpoint: String) {
    let run = tempDir(name)
    let t = seededTrainer(config, run: run)
    try t.prepare(resume: false)
    try t.train(until: iterations)
    return (run, try t.save())
}

final class StateValidationTests: XCTestCase {
    /// Defect 6: hand-edited state.json fields (negative loader position or Adam step count, out-of-range
    /// iteration, broken settings, wrong types, missing keys) are refused on resume with an error naming
    /// the file and the field, never a crash or an endless loop.
    func testEditedStateFieldsAreRefused() throws {
        let (run, ckpt) = try savedTinyRun("state-edit")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let statePath = ckpt + "/state.json"
        let original = try XCTUnwrap(FileManager.default.contents(atPath: statePath))
        // The untouched checkpoint resumes.
        try seededTrainer(tinyConfig(), run: run).prepare(resume: true)

        let cases: [(String, Any?, String)] = [
            ("adamSteps.G_AB", -3, "adamSteps.G_AB"),
            ("adamSteps.D_B", 1_000_000_000_000, "adamSteps.D_B"),
            ("adamSteps.D_A", nil, "adamSteps.D_A"),
            ("adamSteps.E_X", 1, "E_X"),
            ("adamSteps.G_BA", "two", "adamSteps.G_BA"),
            ("iteration", -1, "iteration"),
            ("iteration", 1000, "iteration"),
            ("iteration", 4.5, "iteration"),
            ("config.batch", 0, "config.batch"),
            ("config.size", 48, "config.size"),
            ("config.size", "big", "config.size"),
            ("config.channels", 2, "config.channels"),
            ("config.saveEvery", 0, "config.saveEvery"),
            ("config.logEvery", -1, "config.logEvery"),
            ("config.updateInterval", 0, "config.updateInterval"),
            ("config.adam.learningRate", -1, "config.adam.learningRate"),
            ("config.adam.beta2", 1.5, "config.adam.beta2"),
            ("config.adam.eps", nil, "config.adam.eps"),
            ("config.startingRate", 1e39, "config.startingRate"),
            ("config.ganWeight", -2, "config.ganWeight"),
            ("config.seed", -1, "config.seed"),
            ("config.model", "nope", "config.model"),
            ("config", nil, "config"),
            ("format", nil, "format"),
            ("format", "disco-checkpoint-0", "format"),
            ("loader", "x", "loader"),
        ]
        for (key, value, field) in cases {
            try original.write(to: URL(fileURLWithPath: statePath))
            try editJSON(statePath, key, value)
            let what = "\(key) = \(value.map { "\($0)" } ?? "(deleted)")"
            XCTAssertThrowsError(try Checkpoint.readState(checkpoint: ckpt), what) { e in
                XCTAssertTrue("\(e)".contains("state.json") && "\(e)".contains(field), "\(what): \(e)")
            }
            XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true), what) { e in
                XCTAssertTrue("\(e)".contains("state.json") && "\(e)".contains(field), "\(what): \(e)")
            }
        }
    }

    /// Files of two checkpoints mixed in one folder (model of one iteration, state of another) are refused.
    func testMixedCheckpointFilesAreRefused() throws {
        let (run, ckpt) = try savedTinyRun("state-mixed")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let t = seededTrainer(tinyConfig(), run: run)
        try t.prepare(resume: true)
        try t.train(until: 7)
        let later = try t.save()
        try FileManager.default.removeItem(atPath: ckpt + "/state.json")
        try FileManager.default.copyItem(atPath: later + "/state.json", toPath: ckpt + "/state.json")
        try FileManager.default.removeItem(atPath: later)
        XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains("model.safetensors") && "\(e)".contains("iteration"), "\(e)")
        }
    }
}

/// The tensors of a safetensors file written again with `metadata` changed by `edit`.
func rewriteMetadata(_ path: String, _ edit: (inout [String: String]) -> Void) throws {
    let f = try Safetensors.read(path: path)
    var meta = f.metadata
    edit(&meta)
    try Safetensors.serialize(f.names.map { ($0, f.entries[$0]!.tensor) }, metadata: meta).write(to: URL(fileURLWithPath: path))
}

/// A safetensors file written again after `edit` changes its JSON header (the data bytes stay).
func rewriteHeader(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
    let file = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = Int(file.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
    var header = try XCTUnwrap(try JSONSerialization.jsonObject(with: file.subdata(in: 8..<(8 + n))) as? [String: Any])
    edit(&header)
    let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    var out = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    try (out + json + file.subdata(in: (8 + n)..<file.count)).write(to: URL(fileURLWithPath: path))
}

final class ModelFileValidationTests: XCTestCase {
    /// Weights or Adam moments stored as integers (a dtype disco never writes for them) are refused,
    /// naming the file and the tensor, rather than loaded as the integers' values.
    func testIntegerWeightsAreRefused() throws {
        let (run, ckpt) = try savedTinyRun("int-weights")
        defer { try? FileManager.default.removeItem(atPath: run) }
        for (file, tensor) in [("model.safetensors", "D_A.c3.bn.weight"), ("optimizer.safetensors", "G_AB.m")] {
            let path = ckpt + "/" + file
            let saved = try Data(contentsOf: URL(fileURLWithPath: path))
            try rewriteHeader(path) { h in
                var e = h[tensor] as! [String: Any]; e["dtype"] = "I32"; h[tensor] = e
            }
            XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true), tensor) { e in
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains(tensor) && "\(e)".contains("I32"), "\(tensor): \(e)")
            }
            try saved.write(to: URL(fileURLWithPath: path))
        }
        // The optimizer file must say it is disco's.
        let opt = ckpt + "/optimizer.safetensors"
        try rewriteHeader(opt) { h in h["__metadata__"] = ["format": "other"] }
        XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains(opt) && "\(e)".contains("format"), "\(e)")
        }
    }

    /// A model file whose metadata names a size, channel count, variant or iteration disco cannot
    /// have written is refused naming the file and the key (a size of 48 used to trap building the model).
    func testModelMetadataIsChecked() throws {
        let dir = tempDir("model-meta")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = DiscoGAN(config: tinyConfig()); m.initialize(seed: 1)
        let file = dir + "/model.safetensors"
        let data = Checkpoint.modelData(model: m, iteration: 3)
        try data.write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(try Checkpoint.modelInfo(file: file).iteration, 3)
        for (key, value) in [("size", "48"), ("size", "-32"), ("channels", "2"), ("model", "cyclegan"), ("iteration", "-5"), ("iteration", "many")] {
            try data.write(to: URL(fileURLWithPath: file))
            try rewriteMetadata(file) { $0[key] = value }
            XCTAssertThrowsError(try Checkpoint.modelInfo(file: file), "\(key)=\(value)") { e in
                XCTAssertTrue("\(e)".contains(file) && "\(e)".contains(key), "\(key)=\(value): \(e)")
            }
        }
    }
}

/// The tensors of a safetensors file written again (with its metadata) after `edit` changes one of them.
func rewriteTensor(_ path: String, _ name: String, _ edit: (Tensor) -> Void) throws {
    let f = try Safetensors.read(path: path)
    let tensors = f.names.map { ($0, f.entries[$0]!.tensor) }
    edit(try XCTUnwrap(tensors.first { $0.0 == name }?.1, name))
    try Safetensors.serialize(tensors, metadata: f.metadata).write(to: URL(fileURLWithPath: path))
}

final class NonFiniteCheckpointTests: XCTestCase {
    /// Defect 7a: a checkpoint holding NaN or Inf weights, batch-norm statistics or Adam moments is
    /// refused at load, naming the file and the tensor.
    func testNonFiniteValuesAreRefused() throws {
        let (run, ckpt) = try savedTinyRun("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let model = ckpt + "/model.safetensors", optimizer = ckpt + "/optimizer.safetensors"
        let savedModel = try Data(contentsOf: URL(fileURLWithPath: model))
        let savedOptimizer = try Data(contentsOf: URL(fileURLWithPath: optimizer))
        let cases: [(String, String, Float, Int)] = [
            (model, "G_BA.d2.weight", .nan, 1234),
            (model, "D_A.c1.weight", .infinity, 0),
            (model, "G_AB.e3.bn.running_mean", -.infinity, 5),
            (model, "G_AB.e2.bn.running_var", -1, 7),
            (optimizer, "D_B.m", .nan, 99),
            (optimizer, "G_AB.v", .infinity, 3),
            (optimizer, "D_A.v", -0.5, 11),
        ]
        for (file, tensor, value, index) in cases {
            try savedModel.write(to: URL(fileURLWithPath: model))
            try savedOptimizer.write(to: URL(fileURLWithPath: optimizer))
            try rewriteTensor(file, tensor) { $0[index] = value }
            let what = "\(tensor)[\(index)] = \(value)"
            XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true), what) { e in
                XCTAssertTrue("\(e)".contains(file) && "\(e)".contains(tensor), "\(what): \(e)")
            }
            if file == model {
                XCTAssertThrowsError(try Checkpoint.load(into: DiscoGAN(config: tinyConfig()), checkpoint: ckpt, optimizer: false), what) { e in
                    XCTAssertTrue("\(e)".contains(file) && "\(e)".contains(tensor), "\(what): \(e)")
                }
            }
        }
        try savedModel.write(to: URL(fileURLWithPath: model))
        try savedOptimizer.write(to: URL(fileURLWithPath: optimizer))
        try seededTrainer(tinyConfig(), run: run).prepare(resume: true)
    }
}

final class ResumeSettingsTests: XCTestCase {
    /// Defect 4: --resume with a setting that changes the run's results is refused, listing each
    /// changed setting with the run's value and the new one; iterations and intervals may change.
    func testResumeRefusesChangedSettings() throws {
        let (run, _) = try savedTinyRun("resume-settings")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let changes: [(String, (inout TrainConfig) -> Void, String, String)] = [
            ("--batch", { $0.batch = 4 }, "4", "3"),
            ("--size", { $0.size = 64 }, "64", "32"),
            ("--channels", { $0.channels = 3 }, "3", "1"),
            ("--model", { $0.model = .gan }, "gan", "discogan"),
            ("--loss", { $0.loss = .lsgan }, "lsgan", "bce"),
            ("--recon", { $0.recon = .l1 }, "l1", "mse"),
            ("--lr", { $0.adam.learningRate = 1e-3 }, "0.001", "0.0002"),
            ("--beta1", { $0.adam.beta1 = 0.9 }, "0.9", "0.5"),
            ("--beta2", { $0.adam.beta2 = 0.99 }, "0.99", "0.999"),
            ("--weight-decay", { $0.adam.weightDecay = 0 }, "0.0", "1e-05"),
            ("--curriculum", { $0.curriculumIterations = 5 }, "5", "12"),
            ("--starting-rate", { $0.startingRate = 0.1 }, "0.1", "0.01"),
            ("--default-rate", { $0.defaultRate = 0.25 }, "0.25", "0.5"),
            ("--update-interval", { $0.updateInterval = 4 }, "4", "3"),
            ("--seed", { $0.seed = 7 }, "7", "42"),
            ("--decay-from", { $0.decayFrom = 5 }, "5", "none"),
            ("--pool-size", { $0.poolSize = 50 }, "50", "0"),
            ("--identity", { $0.identityWeight = 0.5 }, "0.5", "0.0"),
            ("--load-size", { $0.loadSize = 36 }, "36", "32"),
            ("--flip/--no-flip", { $0.flip = true }, "flip", "no flip"),
            ("--bf16", { $0.bf16 = true }, "on", "off"),
        ]
        for (option, change, new, saved) in changes {
            var c = tinyConfig(); change(&c)
            XCTAssertThrowsError(try seededTrainer(c, run: run).prepare(resume: true), option) { e in
                XCTAssertTrue("\(e)".contains("\(option) \(new) (the run has \(saved))"), "\(option): \(e)")
            }
        }
        // Several at once are all listed.
        var c = tinyConfig(); c.batch = 5; c.seed = 1; c.loss = .lsgan
        XCTAssertThrowsError(try seededTrainer(c, run: run).prepare(resume: true)) { e in
            for s in ["--batch 5 (the run has 3)", "--seed 1 (the run has 42)", "--loss lsgan (the run has bce)"] {
                XCTAssertTrue("\(e)".contains(s), "\(s) not in: \(e)")
            }
        }
        // Settings that leave the results so far alone may change, and the run continues.
        c = tinyConfig(); c.iterations = 8; c.saveEvery = 2; c.sampleEvery = 500; c.logEvery = 1
        let t = seededTrainer(c, run: run)
        try t.prepare(resume: true)
        XCTAssertEqual(t.iteration, 4)
        try t.train()
        XCTAssertEqual(t.iteration, 8)
    }

    /// Every setting of TrainConfig is either compared on resume or one of those that may change:
    /// a new setting cannot be forgotten by the check.
    func testEverySettingIsComparedOrAllowedToChange() {
        let compared = Set(TrainConfig().resultSettings().map(\.field))
        let mayChange: Set<String> = ["iterations", "saveEvery", "sampleEvery", "logEvery", "keep"]
        func fields(_ v: Any, _ prefix: String) -> [String] {
            Mirror(reflecting: v).children.flatMap { c -> [String] in
                let name = prefix + c.label!
                return c.value is Adam.Hyperparameters ? fields(c.value, name + ".") : [name]
            }
        }
        let all = Set(fields(TrainConfig(), ""))
        XCTAssertEqual(compared.union(mayChange), all)
        XCTAssertTrue(compared.isDisjoint(with: mayChange))
    }

    /// config.json of the run is checked on resume: damaged, or edited to settings other than the
    /// checkpoint's, it is refused naming it (disco writes it again from the command line).
    func testResumeChecksConfigJSON() throws {
        let (run, _) = try savedTinyRun("resume-configjson")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let path = run + "/config.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        for (key, value, field) in [("batch", -1, "batch"), ("saveEvery", 0, "saveEvery"), ("seed", 5, "--seed 5 (the run has 42)"), ("adam.beta1", 2, "adam.beta1")] as [(String, Any, String)] {
            try original.write(to: URL(fileURLWithPath: path))
            try editJSON(path, key, value)
            XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true), key) { e in
                XCTAssertTrue("\(e)".contains("config.json") && "\(e)".contains(field), "\(key): \(e)")
            }
        }
        try "{\"size\": ".write(toFile: path, atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try seededTrainer(tinyConfig(), run: run).prepare(resume: true)) { e in
            XCTAssertTrue("\(e)".contains("config.json"), "\(e)")
        }
        // Without config.json (or with the run's), the run resumes and the file is written again.
        try FileManager.default.removeItem(atPath: path)
        try seededTrainer(tinyConfig(), run: run).prepare(resume: true)
        XCTAssertEqual(try TrainConfig.read(file: path), tinyConfig())
    }
}
