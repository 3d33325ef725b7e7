import Dispatch
import Foundation
import XCTest
import _CKernels
@testable import DiscoCore

/// The worker pool behind Parallel (Sources/_CKernels/pool.c): every item of a region runs
/// exactly once, on several threads, whether the pool runs the region or Dispatch does (a nested
/// region, another thread's region in flight), and across many back-to-back regions.
final class ParallelTests: XCTestCase {
    private var savedThreads = 0, savedPool = true, savedSpin = 0

    override func setUp() {
        savedThreads = Parallel.threads; savedPool = Parallel.usesPool; savedSpin = Parallel.spinMicroseconds
        Parallel.usesPool = true
    }

    override func tearDown() {
        Parallel.threads = savedThreads; Parallel.usesPool = savedPool; Parallel.spinMicroseconds = savedSpin
    }

    /// Counts per item of `n`-item regions run by `run`, atomically (items may run at once).
    private func counts(_ n: Int, _ run: (_ bump: (Int) -> Void) -> Void) -> [Int] {
        let lock = NSLock()
        var c = [Int](repeating: 0, count: n)
        run { i in lock.lock(); c[i] += 1; lock.unlock() }
        return c
    }

    func testEveryItemOnceOnSeveralThreads() {
        for threads in [2, 3, 4] {
            Parallel.threads = threads
            for n in [1, 2, 3, 7, 64, 1000] {
                let lock = NSLock()
                var seen = Set<UInt>()
                let c = counts(n) { bump in
                    Parallel.workers(n) { i in
                        bump(i)
                        lock.lock(); seen.insert(UInt(bitPattern: Int(bitPattern: pthread_self()))); lock.unlock()
                        if n <= 4 { usleep(2000) }  // long enough that another thread takes the next item
                    }
                }
                XCTAssertEqual(c, [Int](repeating: 1, count: n), "threads \(threads), n \(n)")
                if n >= 2 && n <= 4 { XCTAssertGreaterThan(seen.count, 1, "threads \(threads), n \(n): one thread ran the region") }
            }
            // forRanges covers 0..<count once, whatever the split.
            for count in [5, 100, 4097] {
                let c = counts(count) { bump in Parallel.forRanges(count, grain: 1) { r in for i in r { bump(i) } } }
                XCTAssertEqual(c, [Int](repeating: 1, count: count))
                let a = counts(count) { bump in Parallel.forRanges(count, workers: threads, align: 8) { r in for i in r { bump(i) } } }
                XCTAssertEqual(a, [Int](repeating: 1, count: count))
            }
        }
        XCTAssertGreaterThanOrEqual(Int(dc_pool_threads()), 1, "the regions did not run on the pool")
    }

    func testNestedRegionsFallBackAndStillRunEveryItem() {
        Parallel.threads = 2
        let c = counts(4 * 5) { bump in
            Parallel.workers(4) { i in
                // The pool is busy with the outer region: this one runs on Dispatch.
                Parallel.workers(5) { j in bump(i * 5 + j) }
            }
        }
        XCTAssertEqual(c, [Int](repeating: 1, count: 20))
    }

    func testConcurrentCallersFromSeveralThreads() {
        Parallel.threads = 2
        let callers = 4, regions = 300, n = 3
        let lock = NSLock()
        var c = [Int](repeating: 0, count: callers * regions * n)
        DispatchQueue.concurrentPerform(iterations: callers) { t in
            for r in 0..<regions {
                Parallel.workers(n) { i in lock.lock(); c[(t * regions + r) * n + i] += 1; lock.unlock() }
            }
        }
        XCTAssertEqual(c, [Int](repeating: 1, count: c.count))
    }

    /// Many short regions back to back, with the helpers spinning and, with a zero spin, going to
    /// sleep between regions (the futex path): none lost, none run twice.
    func testManyShortRegionsWithAndWithoutSpinning() {
        Parallel.threads = 3
        for spin in [200, 0] {
            Parallel.spinMicroseconds = spin
            let sums = UnsafeMutablePointer<Int>.allocate(capacity: 3)
            defer { sums.deallocate() }
            for r in 0..<5000 {
                sums.initialize(repeating: 0, count: 3)
                Parallel.workers(3) { i in sums[i] = r + i }
                XCTAssertEqual(sums[0] + sums[1] + sums[2], 3 * r + 3)
                if r % 1000 == 999 { usleep(1000) }  // past the spin: the helpers sleep
            }
        }
    }

    func testPoolRefusesWhatItCannotRun() {
        let noop: dc_pool_fn = { _, _ in }
        XCTAssertEqual(dc_pool_run(0, 1, 0, noop, nil), -1)
        XCTAssertEqual(dc_pool_run(65536, 1, 0, noop, nil), -1)
        XCTAssertEqual(dc_pool_run(2, 0, 0, noop, nil), -1)
        XCTAssertEqual(dc_pool_run(2, 256, 0, noop, nil), -1)
        XCTAssertEqual(dc_pool_run(2, 1, 0, noop, nil), 0)
        // Off: the same calls run on Dispatch.
        Parallel.usesPool = false
        Parallel.threads = 2
        let c = counts(9) { bump in Parallel.workers(9) { bump($0) } }
        XCTAssertEqual(c, [Int](repeating: 1, count: 9))
    }

    /// DISCO_THREADS / DISCO_SPIN_US: a whole number at or above the minimum, else the default
    /// (with a message on stderr).
    func testNumberSettingsFromTheEnvironment() {
        let name = "DISCO_TEST_NUMBER_SETTING"
        defer { unsetenv(name) }
        XCTAssertEqual(ProcessInfoLite.number(name, minimum: 0, default: 200), 200)  // unset
        for (value, expected) in [("0", 0), ("350", 350), ("", 200), ("-1", 200), ("12us", 200), ("1.5", 200)] {
            setenv(name, value, 1)
            XCTAssertEqual(ProcessInfoLite.number(name, minimum: 0, default: 200), expected, "\(name)=\(value)")
        }
        setenv(name, "0", 1)
        XCTAssertNil(ProcessInfoLite.number(name, minimum: 1, default: nil))
        setenv(name, "3", 1)
        XCTAssertEqual(ProcessInfoLite.number(name, minimum: 1, default: nil), 3)
    }
}
