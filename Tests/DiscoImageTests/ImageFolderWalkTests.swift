import Foundation
import XCTest
@testable import DiscoImage

/// What `ImageFolder` lists: every regular file below the folder (hidden ones and sub-folders
/// included, symbolic links followed), as absolute paths under `root`, also for a relative path.
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

    /// Symbolic links to images and to folders are followed (they used to be ignored): a linked
    /// image is listed under the link's name, a linked folder's images under the link's path. A
    /// link back to a folder being walked (directly, through another link, or via the parent of
    /// the root) is a loop: reported once per link, not followed. Dangling and self-referencing
    /// links are passed over.
    func testSymlinksAreFollowedAndLoopsReported() throws {
        let dir = try temporaryFolder(self)
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(dir)/in/sub", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(dir)/elsewhere/deep", withIntermediateDirectories: true)
        try fm.copyItem(atPath: sample("rgb8.png"), toPath: "\(dir)/in/a.png")
        try fm.copyItem(atPath: sample("gray.jpg"), toPath: "\(dir)/elsewhere/deep/d.jpg")
        try fm.copyItem(atPath: sample("rgb8.png"), toPath: "\(dir)/outside.png")
        try fm.createSymbolicLink(atPath: "\(dir)/in/link.png", withDestinationPath: "a.png")            // relative
        try fm.createSymbolicLink(atPath: "\(dir)/in/sub/out.png", withDestinationPath: "\(dir)/outside.png")
        try fm.createSymbolicLink(atPath: "\(dir)/in/linkdir", withDestinationPath: "\(dir)/elsewhere")
        try fm.createSymbolicLink(atPath: "\(dir)/in/sub/loop", withDestinationPath: "..")               // to an ancestor
        try fm.createSymbolicLink(atPath: "\(dir)/elsewhere/deep/back", withDestinationPath: "\(dir)/in") // loop via linkdir
        try fm.createSymbolicLink(atPath: "\(dir)/in/up", withDestinationPath: "\(dir)")                // parent of the root
        try fm.createSymbolicLink(atPath: "\(dir)/in/dangling.png", withDestinationPath: "\(dir)/missing.png")
        try fm.createSymbolicLink(atPath: "\(dir)/in/self", withDestinationPath: "\(dir)/in/self")

        let folder = try ImageFolder(path: "\(dir)/in")
        let want = ["/a.png", "/link.png", "/linkdir/deep/d.jpg", "/sub/out.png",
                    // up -> dir: its own files, elsewhere/ (a real folder there), not in/ again.
                    "/up/elsewhere/deep/d.jpg", "/up/outside.png"]
        XCTAssertEqual(folder.files, want.map { "\(dir)/in" + $0 })
        XCTAssertTrue(folder.files.allSatisfy { (try? decodeImage(path: $0)) != nil })
        let loops = ["/linkdir/deep/back", "/sub/loop", "/up/elsewhere/deep/back", "/up/in"]
        XCTAssertEqual(folder.linkLoops, loops.map { "\(dir)/in" + $0 })
        let warning = try XCTUnwrap(folder.linkLoopWarning)
        XCTAssertTrue(warning.contains("4 folders") && warning.contains("sub/loop") && warning.contains("not followed"), warning)
        XCTAssertTrue(folder.warnings.contains(warning))

        // Links without a loop: no loop warning. A folder linked twice is walked twice.
        try fm.createDirectory(atPath: "\(dir)/plain", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(dir)/plain/one", withDestinationPath: "\(dir)/elsewhere/deep/d.jpg")
        try fm.removeItem(atPath: "\(dir)/elsewhere/deep/back")
        try fm.createSymbolicLink(atPath: "\(dir)/plain/x", withDestinationPath: "\(dir)/elsewhere")
        try fm.createSymbolicLink(atPath: "\(dir)/plain/y", withDestinationPath: "\(dir)/elsewhere")
        let plain = try ImageFolder(path: "\(dir)/plain")
        XCTAssertEqual(plain.files, ["/one", "/x/deep/d.jpg", "/y/deep/d.jpg"].map { "\(dir)/plain" + $0 })
        XCTAssertEqual(plain.linkLoops, [])
        XCTAssertNil(plain.linkLoopWarning)
        XCTAssertEqual(plain.warnings, [])
    }
}
