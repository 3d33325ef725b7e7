import Foundation
import DiscoCore

extension Checkpoint {
    /// RUN/best/best.json: which checkpoint RUN/best holds and its held-out distance.
    public struct BestRecord: Codable, Equatable {
        public var iteration: Int
        /// Mean of L1(x_ABA, x_A) and L1(x_BAB, x_B) over the held-out images.
        public var distance: Double
        public var metric = "mean L1 of A->B->A and B->A->B reconstructions on held-out images"
        public init(iteration: Int, distance: Double) { self.iteration = iteration; self.distance = distance }
    }

    public static func bestDirectory(run: String) -> String { run + "/best" }

    /// The record of RUN/best, if there is one that reads.
    public static func bestRecord(run: String) -> BestRecord? {
        guard let data = FileManager.default.contents(atPath: bestDirectory(run: run) + "/best.json") else { return nil }
        return try? JSONDecoder().decode(BestRecord.self, from: data)
    }

    /// Makes RUN/best a copy of `checkpoint` (hard links where the file system allows) with
    /// best.json, replacing the previous best atomically: the new one is assembled under a
    /// temporary name, then swapped in by one rename, so RUN/best is always a whole checkpoint
    /// (a crash leaves at most a temporary, removed at the next start). It lives outside
    /// RUN/checkpoints, so pruning never removes it and `--resume` never starts from it.
    public static func keepBest(checkpoint: String, run: String, record: BestRecord) throws {
        let best = bestDirectory(run: run), fm = FileManager.default
        let tmp = best + FileWriter.temporaryMarker + "\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try createDirectory(tmp)
        for name in try fm.contentsOfDirectory(atPath: checkpoint) {
            if link(checkpoint + "/" + name, tmp + "/" + name) != 0 {
                do { try fm.copyItem(atPath: checkpoint + "/" + name, toPath: tmp + "/" + name) } catch {
                    throw Error("cannot copy \(checkpoint)/\(name) to \(tmp): \(error.localizedDescription)")
                }
            }
        }
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileWriter.write(try enc.encode(record), to: tmp + "/best.json")
        FileWriter.syncDirectory(tmp)
        if fm.fileExists(atPath: best) {
            // One atomic swap (Linux renameat2 RENAME_EXCHANGE): RUN/best is never missing.
            guard let exchange = renameExchange, exchange(AT_FDCWD, tmp, AT_FDCWD, best, 2 /* RENAME_EXCHANGE */) == 0 else {
                throw Error("cannot replace \(best) with \(tmp): \(String(cString: strerror(errno)))")
            }
            FileWriter.syncDirectory(run)
            try? fm.removeItem(atPath: tmp)  // the previous best, now under the temporary name
        } else {
            guard rename(tmp, best) == 0 else { throw Error("cannot rename \(tmp) to \(best): \(String(cString: strerror(errno)))") }
            FileWriter.syncDirectory(run)
        }
    }

    /// glibc's renameat2 (2.28 and later), looked up at run time: Swift's Glibc module does not
    /// declare it.
    nonisolated(unsafe) static let renameExchange: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32).self)
    }()
}
