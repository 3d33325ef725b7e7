import Foundation
import XCTest
@testable import DiscoImage

/// What `ImageFolder` lists: every regular file below the folder (hidden ones and sub-folders
/// included, symbolic links not), as absolute paths under `root`, also for a relative path.
final class ImageFolderWalkTests: XCTestCase {
    func testWalkListsRegularFilesAsAbsolutePathsUnderRoot() throws {
        let dir = try temporaryFolder(self)
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(dir)/in/sub/deeper", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(dir)/elsewhere", withIntermediateDirectories: true)
        for name in ["a.png", "sub/b.png", "sub/deeper/c.png", ".hidden.png"] {
            try fm.copyItem(atPath: sample("rgb8.png"), toPath: "\(dir)/in/\(name)")
        }
        try fm.copyItem(atPath: sample("rgb8.png"), toPath: "\(dir)/elsewhere/d.png")
        fm.createFile(atPath: "\(dir)/in/sub/notes.txt", contents: Data("not an image".utf8))
        try fm.createSymbolicLink(atPath: "\(dir)/in/link.png", withDestinationPath: "\(dir)/in/a.png")
        try fm.createSymbolicLink(atPath: "\(dir)/in/linkdir", withDestinationPath: "\(dir)/elsewhere")

        let want = ["/.hidden.png", "/a.png", "/sub/b.png", "/sub/deeper/c.png"]
        let absolute = try ImageFolder(path: "\(dir)/in/")
        XCTAssertEqual(absolute.root, "\(dir)/in")
        XCTAssertEqual(absolute.files, want.map { "\(dir)/in" + $0 })
        XCTAssertEqual(absolute.skippedCount, 1)

        // A relative path (and "./"): the same files, made absolute against the working folder.
        let cwd = fm.currentDirectoryPath
        defer { fm.changeCurrentDirectoryPath(cwd) }
        XCTAssertTrue(fm.changeCurrentDirectoryPath(dir))
        for given in ["in", "./in", "in/"] {
            let relative = try ImageFolder(path: given)
            XCTAssertEqual(relative.path, given)
            XCTAssertTrue(relative.root.hasPrefix("/") && relative.root.hasSuffix("/in"), relative.root)
            XCTAssertEqual(relative.files.map { String($0.dropFirst(relative.root.count)) }, want, given)
            XCTAssertTrue(relative.files.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        }
    }
}
