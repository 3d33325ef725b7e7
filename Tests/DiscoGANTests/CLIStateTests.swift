import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore

/// Resume through the real binary and image loader (`LoaderSource`) from edited checkpoints.
extension CLITests {
    /// Defect 6: negative or missing loader fields in state.json are refused on --resume with an error
    /// naming the file and the field (a negative position used to crash the loader thread).
    func testResumeRefusesEditedLoaderState() throws {
        let root = NSTemporaryDirectory() + "disco-cli-loaderstate-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        let common = [root + "/a", root + "/b", "--size", "32", "--batch", "2", "--sample-every", "100", "--out", run]
        try self.run(["train"] + common + ["--iterations", "2"])
        let state = run + "/checkpoints/iter-00000002/state.json"
        let original = try XCTUnwrap(FileManager.default.contents(atPath: state))
        for (key, value) in [("loader.a_position", -5), ("loader.b_epoch", -1), ("loader.a_epoch", nil), ("loader.b_position", Int.max)] as [(String, Int?)] {
            try original.write(to: URL(fileURLWithPath: state))
            try editJSON(state, key, value)
            let r = try self.run(["train"] + common + ["--iterations", "3", "--resume"], expect: 1)
            XCTAssertTrue(r.err.contains("state.json") && r.err.contains(String(key.dropFirst("loader.".count))), "\(key): \(r.err)")
        }
        try original.write(to: URL(fileURLWithPath: state))
        try self.run(["train"] + common + ["--iterations", "3", "--resume"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/iter-00000003/state.json"))
    }
}

extension CLITests {
    /// Model files with a hostile header (offsets near Int.max, whose end overflowed when added to the header's) or impossible metadata (size 48) get an
    /// error naming the file from translate, eval and export, never a signal.
    func testHostileModelFilesGetErrors() throws {
        let root = NSTemporaryDirectory() + "disco-cli-hostile-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 2, kind: 0)
        let d16 = Data(repeating: 0, count: 16)
        let overflow = handmadeSafetensorsFile(
            header: #"{"__metadata__":{"format":"disco-checkpoint-1","size":"32","channels":"3"},"G_AB.e1.weight":{"dtype":"F32","shape":[64,3,4,4],"data_offsets":[9223372036854763519,9223372036854775807]}}"#, data: d16)
        let size48 = handmadeSafetensorsFile(
            header: #"{"__metadata__":{"format":"disco-checkpoint-1","size":"48","channels":"3"},"G_AB.e1.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: d16)
        for (name, bytes) in [("overflow", overflow), ("size48", size48)] {
            let file = root + "/\(name).safetensors"
            try bytes.write(to: URL(fileURLWithPath: file))
            for args in [["translate", root + "/a/000.png", "--output", root + "/o.png", "--checkpoint", file],
                         ["eval", "--checkpoint", file, "--a", root + "/a"],
                         ["export", "--checkpoint", file, "--output", root + "/e.safetensors"]] {
                let r = try run(args, expect: 1)
                XCTAssertTrue(r.err.contains(file), "\(name) \(args[0]): \(r.err)")
            }
        }
    }
}

/// A safetensors file from a header written by hand and data bytes.
func handmadeSafetensorsFile(header: String, data: Data) -> Data {
    var out = Data()
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
    return out + Data(header.utf8) + data
}

extension CLITests {
    /// Defect 7a through translate's own (mapped) model reader: a NaN weight is refused, naming the tensor.
    func testTranslateRefusesNonFiniteWeights() throws {
        let root = NSTemporaryDirectory() + "disco-cli-nan-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 1, kind: 0)
        var config = TrainConfig(); config.size = 32; config.channels = 3
        let model = DiscoGAN(config: config); model.initialize(seed: 3)
        let file = root + "/model.safetensors"
        try Checkpoint.modelData(model: model, iteration: 0, generatorsOnly: true).write(to: URL(fileURLWithPath: file))
        try self.run(["translate", root + "/a/000.png", "--output", root + "/ok.png", "--checkpoint", file])
        try rewriteTensor(file, "G_AB.d3.bn.weight") { $0[2] = .nan }
        let r = try self.run(["translate", root + "/a/000.png", "--output", root + "/o.png", "--checkpoint", file], expect: 1)
        XCTAssertTrue(r.err.contains(file) && r.err.contains("G_AB.d3.bn.weight"), r.err)
    }
}

extension CLITests {
    /// Defect 4 through the real CLI: --resume with other --batch and --lr is refused, naming both
    /// with the run's values; more --iterations and other intervals are accepted.
    func testResumeRefusesChangedSettingsCLI() throws {
        let root = NSTemporaryDirectory() + "disco-cli-resume-settings-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try makeDomain(root + "/a", count: 4, kind: 0)
        try makeDomain(root + "/b", count: 4, kind: 1)
        let run = root + "/run"
        let common = [root + "/a", root + "/b", "--size", "32", "--sample-every", "100", "--out", run]
        try self.run(["train"] + common + ["--batch", "2", "--iterations", "2"])
        let r = try self.run(["train"] + common + ["--batch", "4", "--lr", "0.001", "--iterations", "3", "--resume"], expect: 1)
        XCTAssertTrue(r.err.contains("--batch 4 (the run has 2)") && r.err.contains("--lr 0.001 (the run has 0.0002)"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/checkpoints/iter-00000003"))
        try self.run(["train"] + common + ["--batch", "2", "--iterations", "3", "--log-every", "1", "--save-every", "1", "--resume"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/checkpoints/iter-00000003/state.json"))
    }
}
