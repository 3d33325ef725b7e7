import Foundation

/// `disco --version`: the release and the commit of the checkout the executable was built in
/// (found by walking up from the executable to a `.git`, as `make build` leaves it in
/// CHECKOUT/.build/release/disco), or "commit unknown" for a copied binary.
enum DiscoVersion {
    static let release = "0.9.0"

    static var text: String { "disco \(release) (commit \(commit() ?? "unknown"))" }

    static func commit() -> String? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            if let c = commit(gitAt: dir.appendingPathComponent(".git").path) { return c }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// HEAD's commit of the repository at `git` (a .git folder, or a worktree's .git file).
    static func commit(gitAt git: String) -> String? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: git, isDirectory: &isDir) else { return nil }
        var gitDir = git
        if !isDir.boolValue {  // "gitdir: PATH" in a worktree
            guard let line = try? String(contentsOfFile: git, encoding: .utf8), line.hasPrefix("gitdir: ") else { return nil }
            gitDir = String(line.dropFirst(8)).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let head = (try? String(contentsOfFile: gitDir + "/HEAD", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) else { return nil }
        guard head.hasPrefix("ref: ") else { return String(head.prefix(12)) }
        let ref = String(head.dropFirst(5))
        // A worktree keeps its refs in the common folder.
        let common = (try? String(contentsOfFile: gitDir + "/commondir", encoding: .utf8))
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .map { $0.hasPrefix("/") ? $0 : gitDir + "/" + $0 } ?? gitDir
        for base in [gitDir, common] {
            if let h = try? String(contentsOfFile: base + "/" + ref, encoding: .utf8) {
                return String(h.trimmingCharacters(in: .whitespacesAndNewlines).prefix(12))
            }
            if let packed = try? String(contentsOfFile: base + "/packed-refs", encoding: .utf8),
               let line = packed.split(separator: "\n").first(where: { $0.hasSuffix(" " + ref) }) {
                return String(line.prefix(12))
            }
        }
        return nil
    }
}
