import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one way disco writes files while training, checkpointing, exporting and translating
/// (log.jsonl, sample grids, hist.json, report.html, config.json, checkpoint files, translated
/// images). Plain POSIX calls with every result checked; an error names the path and the reason.
///
/// - `write` replaces a file atomically: the bytes go to a temporary file in the same folder
///   (`.NAME.tmp-PID-N`), which is fsynced (unless `durable: false`), then renamed over the
///   target, and the folder is fsynced. Readers, crashes and kills never see half a file; on an
///   error the temporary is removed and the old file is left as it was.
/// - `create` writes a new file in place and fsyncs it: for files inside a temporary folder that
///   is itself renamed into place (checkpoints).
/// - `append` adds bytes to the end of a file (log.jsonl); on an error the file is cut back to
///   its old length.
///
/// Fault injection, for tests: `failFrom = N` (or `DISCO_FAULT_WRITE=N` in the environment of the
/// `disco` binary) makes the Nth write through this seam, and every later one, fail as a full
/// disk does: half of the bytes are written, then the call fails with ENOSPC. Writes are counted
/// from the start of the process or the last `resetFaults`.
public enum FileWriter {
    public struct WriteError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public init(path: String, reason: String) { self.path = path; self.reason = reason }
        public var description: String { "cannot write \(path): \(reason)" }
    }

    /// Names of temporaries contain this marker followed by the writing process's id
    /// (checkpoint folders `iter-NNNNNNNN.tmp-PID` too).
    public static let temporaryMarker = ".tmp-"

    /// True for a file or folder name that disco uses for a temporary (`*.tmp-DIGITS*`).
    public static func isTemporary(_ name: String) -> Bool {
        guard let r = name.range(of: temporaryMarker) else { return false }
        return name[r.upperBound...].first?.isNumber == true
    }

    /// Removes the temporaries left in `folder` by a process that was killed (or lost power)
    /// in the middle of a write; returns the paths removed. Not recursive.
    @discardableResult
    public static func removeTemporaries(in folder: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        var removed: [String] = []
        for name in names.sorted() where isTemporary(name) {
            let path = folder + "/" + name
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
        }
        return removed
    }

    // MARK: fault injection

    private static let lock = NSLock()
    nonisolated(unsafe) private static var writeCount = 0
    nonisolated(unsafe) private static var failFromN: Int? =
        ProcessInfo.processInfo.environment["DISCO_FAULT_WRITE"].flatMap { Int($0) }

    /// Writes through the seam so far (since process start or `resetFaults`).
    public static var writes: Int { lock.lock(); defer { lock.unlock() }; return writeCount }

    /// Sets the count back to zero; from write number `failFrom` on (1-based), every write fails.
    public static func resetFaults(failFrom: Int?) {
        lock.lock(); defer { lock.unlock() }
        writeCount = 0; failFromN = failFrom
    }

    /// Counts one write; true if it is to fail.
    private static func countWrite() -> Bool {
        lock.lock(); defer { lock.unlock() }
        writeCount += 1
        return failFromN.map { writeCount >= $0 } ?? false
    }

    // MARK: writing

    /// Replaces `path` atomically with `bytes` (temporary file in the same folder, fsync, rename).
    /// `durable: false` skips the fsyncs (for many small files that can be made again).
    public static func write(_ bytes: some ContiguousBytes, to path: String, durable: Bool = true) throws {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let tmp = dir + "." + name + temporaryMarker + "\(getpid())-\(uniqueNumber())"
        do {
            try writeNew(bytes, to: tmp, sync: durable, reportAs: path)
        } catch {
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw WriteError(path: path, reason: reason)
        }
        if durable { syncDirectory(dir.isEmpty ? "." : dir) }
    }

    /// Writes `bytes` to `path` in place (created or truncated) and fsyncs it. For files inside a
    /// temporary folder that is renamed into place once complete.
    public static func create(_ bytes: some ContiguousBytes, at path: String) throws {
        do { try writeNew(bytes, to: path, sync: true, reportAs: path) } catch {
            unlink(path)
            throw error
        }
    }

    /// Appends `bytes` to `path` (created if missing). On an error the file is cut back to the
    /// length it had, so it never ends in a fragment.
    public static func append(_ bytes: some ContiguousBytes, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(path: path, reason: String(cString: strerror(errno))) }
        let start = lseek(fd, 0, SEEK_END)
        var failure = writeAll(fd, bytes)
        if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if let failure {
            if start >= 0 { truncate(path, start) }
            throw WriteError(path: path, reason: failure)
        }
    }

    /// Writes `text` to standard error. If that fails (a full disk behind `2>`), the message is
    /// lost: there is nowhere left to say so, and it must not stop the work (FileHandle's write
    /// would trap).
    public static func printError(_ text: String) {
        var bytes = Array(text.utf8)
        if bytes.last != 0x0A { bytes.append(0x0A) }
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count, let base = raw.baseAddress {
                let n = Glibc.write(2, base + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                done += n
            }
        }
    }

    /// fsyncs a folder, so that a rename or a new entry in it survives a power loss.
    public static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    private static func writeNew(_ bytes: some ContiguousBytes, to path: String, sync: Bool, reportAs: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(path: reportAs, reason: String(cString: strerror(errno))) }
        var failure = writeAll(fd, bytes)
        if failure == nil, sync, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if let failure { throw WriteError(path: reportAs, reason: failure) }
    }

    /// Writes every byte (retrying short writes and EINTR); returns the reason of a failure.
    private static func writeAll(_ fd: Int32, _ bytes: some ContiguousBytes) -> String? {
        let inject = countWrite()
        return bytes.withUnsafeBytes { raw -> String? in
            let total = inject ? raw.count / 2 : raw.count
            var done = 0
            while done < total, let base = raw.baseAddress {
                let n = Glibc.write(fd, base + done, total - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return n < 0 ? String(cString: strerror(errno)) : "no progress writing (disk full?)" }
                done += n
            }
            return inject ? String(cString: strerror(ENOSPC)) + " (injected fault, DISCO_FAULT_WRITE)" : nil
        }
    }

    nonisolated(unsafe) private static var counter = 0
    private static func uniqueNumber() -> Int {
        lock.lock(); defer { lock.unlock() }
        counter += 1
        return counter
    }
}
