import XCTest
@testable import DiscoCore

/// The tensor pool: freed large blocks are reused by size, and mapped memory never exceeds the
/// most ever live at once (closed-form bookkeeping over a known allocation sequence).
final class TensorMemoryTests: XCTestCase {
    func testPoolReusesBlocksAndStaysWithinPeak() {
        let big = TensorMemory.pooledBytes / 4 * 3          // 3x the pooled threshold, in floats
        let other = TensorMemory.pooledBytes / 4 * 5
        TensorMemory.resetPeak()
        let base = TensorMemory.liveBytes
        var a: Tensor? = Tensor(zeros: [big])
        let pa = a!.data
        a!.fill(7)
        a = nil
        // The same size comes back as the same block, and `zeros` still zeroes it.
        let b = Tensor(zeros: [big])
        XCTAssertEqual(b.data, pa)
        XCTAssertEqual(b.array.max(), 0)
        // Live + pooled never exceeds the peak: a miss of another size unmaps pooled blocks first.
        var held: [Tensor] = (0..<3).map { _ in Tensor(zeros: [big]) }
        held.removeAll()
        let peakBefore = TensorMemory.peakLiveBytes
        let c = Tensor(zeros: [other])
        XCTAssertLessThanOrEqual(TensorMemory.liveBytes + TensorMemory.pooledFreeBytes,
                                 max(peakBefore, TensorMemory.peakLiveBytes))
        XCTAssertEqual(TensorMemory.liveBytes - base,
                       TensorMemory.mappedSize(big * 4) + TensorMemory.mappedSize(other * 4))
        _ = (b, c)
    }

    /// A miss is served by the smallest larger pooled block, its tail unmapped: the same address
    /// (pages already touched: no page faults), and the pooled bytes drop by the whole block.
    func testMissReusesSmallestLargerBlock() {
        let unit = TensorMemory.pooledBytes / 4          // floats in one threshold's worth
        let small = unit * 2 + 1000, mid = unit * 7, large = unit * 11
        TensorMemory.releasePooled()   // blocks left by other tests would serve the miss instead
        XCTAssertEqual(TensorMemory.pooledFreeBytes, 0)
        var m: Tensor? = Tensor(zeros: [mid]), l: Tensor? = Tensor(zeros: [large])
        let pm = m!.data
        m!.fill(3)
        m = nil; l = nil
        let pooled = TensorMemory.pooledFreeBytes, live = TensorMemory.liveBytes
        let s = Tensor(zeros: [small])
        XCTAssertEqual(s.data, pm, "the mid-sized block (the smallest larger one) serves the miss")
        XCTAssertEqual(s.array.max(), 0, "zeros still zeroes a reused block")
        XCTAssertEqual(TensorMemory.pooledFreeBytes, pooled - TensorMemory.mappedSize(mid * 4))
        XCTAssertEqual(TensorMemory.liveBytes, live + TensorMemory.mappedSize(small * 4))
        // Its first page-rounded size is now the block's size: writing it all must not fault.
        s.fill(1)
        XCTAssertEqual(s.array.reduce(0, +), Float(small))
        _ = l
    }

    func testSmallTensorsAreCounted() {
        let before = TensorMemory.liveBytes
        var t: Tensor? = Tensor(zeros: [100])
        XCTAssertEqual(TensorMemory.liveBytes - before, 400)
        t = nil
        XCTAssertEqual(TensorMemory.liveBytes, before)
        _ = t
    }
}
