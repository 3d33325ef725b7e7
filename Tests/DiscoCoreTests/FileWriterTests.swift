import XCTest
import Foundation
@testable import DiscoCore

/// The write seam: atomic replacement, appends, temporaries and the injected full disk.
final class FileWriterTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "disco-filewriter-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        FileWriter.resetFaults(failFrom: nil)
    }

    override func tearDownWithError() throws {
        FileWriter.resetFaults(failFrom: nil)
        try? FileManager.default.removeItem(atPath: dir)
    }

    func contents(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    func testWriteReplacesAtomicallyAndLeavesNoTemporary() throws {
        let path = dir + "/a.json"
        try FileWriter.write(Data("first".utf8), to: path)
        try FileWriter.write([UInt8]("second".utf8), to: path, durable: false)
        XCTAssertEqual(contents(path), "second")
        try FileWriter.write(Data(), to: path)
        XCTAssertEqual(contents(path), "")
        XCTAssertEqual(try entries(), ["a.json"])
        XCTAssertEqual(FileWriter.writes, 3)
    }

    func testFailedWriteKeepsTheOldFileNamesThePathAndCleansUp() throws {
        let path = dir + "/state.json"
        try FileWriter.write(Data("good".utf8), to: path)
        FileWriter.resetFaults(failFrom: 2)
        try FileWriter.write(Data("still fine".utf8), to: path)  // write 1 of this count
        XCTAssertThrowsError(try FileWriter.write(Data("bad bytes".utf8), to: path)) { e in
            XCTAssertTrue("\(e)".contains(path) && "\(e)".contains("No space left"), "\(e)")
        }
        // A full disk stays full: later writes fail too.
        XCTAssertThrowsError(try FileWriter.write(Data("x".utf8), to: dir + "/other"))
        XCTAssertThrowsError(try FileWriter.create(Data("x".utf8), at: dir + "/created"))
        XCTAssertEqual(contents(path), "still fine")
        XCTAssertEqual(try entries(), ["state.json"], "temporaries or partial files were left")
        XCTAssertEqual(FileWriter.writes, 4)
    }

    func testFailedAppendLeavesNoFragment() throws {
        let path = dir + "/log.jsonl"
        try FileWriter.append(Data("{\"iter\":1}\n".utf8), to: path)
        try FileWriter.append(Data("{\"iter\":2}\n".utf8), to: path)
        FileWriter.resetFaults(failFrom: 1)
        XCTAssertThrowsError(try FileWriter.append(Data("{\"iter\":3, \"long\": \"entry\"}\n".utf8), to: path)) { e in
            XCTAssertTrue("\(e)".contains("log.jsonl"), "\(e)")
        }
        XCTAssertEqual(contents(path), "{\"iter\":1}\n{\"iter\":2}\n")
    }

    func testUnwritableFolderIsAnErrorNamingThePath() {
        XCTAssertThrowsError(try FileWriter.write(Data("x".utf8), to: dir + "/missing/f.png")) { e in
            XCTAssertTrue("\(e)".contains("missing/f.png") && "\(e)".contains("No such file"), "\(e)")
        }
    }

    func testRemoveTemporaries() throws {
        for name in [".report.html.tmp-123-4", "iter-00000003.tmp-99", "iter-00000002", "notes.tmp-draft", "log.jsonl"] {
            FileManager.default.createFile(atPath: dir + "/" + name, contents: Data())
        }
        try FileManager.default.createDirectory(atPath: dir + "/iter-00000004.tmp-7/", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/iter-00000004.tmp-7/model.safetensors", contents: Data("half".utf8))
        let removed = FileWriter.removeTemporaries(in: dir).map { ($0 as NSString).lastPathComponent }
        XCTAssertEqual(removed, [".report.html.tmp-123-4", "iter-00000003.tmp-99", "iter-00000004.tmp-7"])
        XCTAssertEqual(try entries(), ["iter-00000002", "log.jsonl", "notes.tmp-draft"])
    }
}
