import XCTest
import Foundation

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
