import Dispatch
import Foundation

/// Work split for the non-GEMM kernels (im2col, col2im, batch norm, activations).
/// GEMMs are threaded inside OpenBLAS; these loops run between GEMMs, on `Parallel.threads` workers.
public enum Parallel {
    /// Number of workers (defaults to the core count; `DISCO_THREADS` overrides).
    nonisolated(unsafe) public static var threads: Int = {
        if let s = ProcessInfo.processInfo.environment["DISCO_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls `body(range)` on disjoint ranges covering 0..<count, in parallel when worth it.
    /// `grain` is the least number of items worth a thread of its own.
    @inline(__always)
    public static func forRanges(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(threads, max(1, count / max(grain, 1)))
        if workers <= 1 { body(0..<count); return }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = count * w / workers, hi = count * (w + 1) / workers
            if lo < hi { body(lo..<hi) }
        }
    }
}

/// A grow-only scratch buffer reused across calls (im2col columns and the like), so that
/// steady-state training allocates nothing per op. Not shared between threads: each user holds
/// its own, and ops that use the shared one take its lock.
public final class Workspace: @unchecked Sendable {
    private var storage: UnsafeMutablePointer<Float>?
    private var capacity = 0
    let lock = NSLock()

    public init() {}
    deinit { storage.map { free($0) } }

    /// A buffer of at least `count` floats; contents are undefined.
    public func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            storage.map { free($0) }
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, max(count, 1) * 4) == 0, let raw else {
                fatalError("Workspace: cannot allocate \(count * 4) bytes")
            }
            storage = raw.bindMemory(to: Float.self, capacity: count)
            capacity = count
        }
        return storage!
    }

    public static let shared = Workspace()
}
