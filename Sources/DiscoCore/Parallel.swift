import Dispatch
import Foundation
import _CKernels

/// disco's threads. Convolutions split the batch between `Parallel.threads` workers, each running
/// its own im2col/col2im and a single-threaded OpenBLAS GEMM on its share (`workers`); batch norm
/// and the activations split rows (`forRanges`). OpenBLAS's own thread pool is not used by the
/// networks, so no BLAS thread spins while disco's loops want the cores.
///
/// The regions run on disco's pool (Sources/_CKernels/pool.c): `threads - 1` helper threads that
/// stay awake `spinMicroseconds` after a region, so that the next one (a training iteration runs
/// several hundred, most a few milliseconds apart or less) starts without waking a thread. A
/// nested region, or one started while another thread's is in flight, runs on Dispatch instead.
public enum Parallel {
    /// Number of workers (defaults to the core count, shared among the ranks mpirun started on
    /// this machine; `DISCO_THREADS` overrides).
    nonisolated(unsafe) public static var threads: Int = {
        if let n = ProcessInfoLite.number("DISCO_THREADS", minimum: 1, default: nil) { return n }
        let ranksHere = MPICommunicator.localRanks() ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / ranksHere)
    }()

    /// Calls `body(range)` on disjoint ranges covering 0..<count, in parallel when worth it.
    /// `grain` is the least number of items worth a thread of its own.
    @inline(__always)
    public static func forRanges(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(threads, max(1, count / max(grain, 1)))
        if workers <= 1 { body(0..<count); return }
        perform(workers) { w in
            let lo = count * w / workers, hi = count * (w + 1) / workers
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Calls `body(range)` on `workers` disjoint ranges covering 0..<count, in parallel, whose
    /// bounds are multiples of `align` (but the last); the split depends on count, workers and
    /// align only, never on timing. Ranges may be empty when count is small.
    @inline(__always)
    public static func forRanges(_ count: Int, workers: Int, align: Int, _ body: (Range<Int>) -> Void) {
        if workers <= 1 { body(0..<count); return }
        perform(workers) { w in body(range(w, of: workers, count: count, align: align)) }
    }

    /// Worker w's share of 0..<count split in `workers` ranges at multiples of `align` (see
    /// `forRanges(_:workers:align:)`).
    @inline(__always)
    public static func range(_ w: Int, of workers: Int, count: Int, align: Int) -> Range<Int> {
        let blocks = (count + align - 1) / align
        return min(count, blocks * w / workers * align)..<min(count, blocks * (w + 1) / workers * align)
    }

    /// Calls `body(w)` for w in 0..<n at the same time, each on a worker of its own (n <= threads
    /// is best; more still works, the extra calls queue).
    @inline(__always)
    public static func workers(_ n: Int, _ body: (Int) -> Void) {
        if n <= 1 { body(0); return }
        perform(n, body)
    }

    /// Whether regions run on disco's pool (else on Dispatch's concurrentPerform): `DISCO_POOL=0`
    /// turns it off.
    nonisolated(unsafe) public static var usesPool: Bool = ProcessInfoLite.choice("DISCO_POOL", default: PoolSetting.on) == .on
    enum PoolSetting: String, CaseIterable { case on = "1", off = "0" }

    /// How long the pool's helpers stay awake after a region, in microseconds (`DISCO_SPIN_US`).
    nonisolated(unsafe) public static var spinMicroseconds: Int = ProcessInfoLite.number("DISCO_SPIN_US", minimum: 0, default: 200)!

    /// body(i) for every i in 0..<n, at the same time where threads allow: on the pool (up to
    /// min(n, threads) threads, the caller one of them), or on Dispatch when the pool is off, busy
    /// or n is out of its range.
    @inline(__always)
    static func perform(_ n: Int, _ body: (Int) -> Void) {
        if usesPool {
            let helpers = max(1, min(n, threads) - 1)
            let ran = withoutActuallyEscaping(body) { escapable -> Bool in
                var task = escapable
                return withUnsafeMutablePointer(to: &task) { p in
                    dc_pool_run(n, Int32(helpers), spinMicroseconds, { ctx, i in
                        ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(i)
                    }, p) == 0
                }
            }
            if ran { return }
        }
        DispatchQueue.concurrentPerform(iterations: n, execute: body)
    }
}

/// Scratch buffers reused across calls (im2col columns, per-worker weight-gradient partials), so
/// that steady-state training allocates nothing per op. Each worker of a parallel op has its own
/// buffers (`buffer(_:worker:)`); ops that use a workspace hold its `lock` for their whole run.
public final class Workspace: @unchecked Sendable {
    private var storage: [UnsafeMutablePointer<Float>?] = []
    private var capacity: [Int] = []
    private var sharedStorage: UnsafeMutablePointer<Float>?
    private var sharedCapacity = 0
    let lock = NSLock()

    public init() {}
    deinit {
        for (s, c) in zip(storage, capacity) { s.map { _ = munmap($0, c * 4) } }
        sharedStorage.map { _ = munmap($0, sharedCapacity * 4) }
    }

    /// Makes room for `n` workers' buffers; call before the workers start (holding `lock`).
    func reserveWorkers(_ n: Int) {
        while storage.count < n { storage.append(nil); capacity.append(0) }
    }

    /// Grows `slot` (of `cap` floats) to at least `count` floats, 64-byte aligned (page aligned).
    private static func grow(_ slot: inout UnsafeMutablePointer<Float>?, _ cap: inout Int, _ count: Int) -> UnsafeMutablePointer<Float> {
        if count > cap {
            // Mapped apart from the heap: the buffers grow a few times while the first iteration
            // meets larger layers, and freed heap blocks of those sizes would stay as holes.
            slot.map { _ = munmap($0, cap * 4) }
            let bytes = (max(count, 1) * 4 + 4095) / 4096 * 4096
            guard let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  raw != MAP_FAILED else {
                fatalError("Workspace: cannot map \(bytes) bytes")
            }
            slot = raw.bindMemory(to: Float.self, capacity: bytes / 4)
            cap = bytes / 4
        }
        return slot!
    }

    /// Worker `worker`'s buffer of at least `count` floats, 64-byte aligned; contents are undefined.
    public func buffer(_ count: Int, worker: Int = 0) -> UnsafeMutablePointer<Float> {
        if worker >= storage.count { reserveWorkers(worker + 1) }
        return Workspace.grow(&storage[worker], &capacity[worker], count)
    }

    /// A buffer of at least `count` floats that all workers of one op read (filled before they
    /// start, e.g. transformed weights), apart from the workers' own; contents are undefined.
    public func sharedBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        Workspace.grow(&sharedStorage, &sharedCapacity, count)
    }

    public static let shared = Workspace()
}
