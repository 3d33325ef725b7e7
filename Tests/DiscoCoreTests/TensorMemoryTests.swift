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

    func testSmallTensorsAreCounted() {
        let before = TensorMemory.liveBytes
        var t: Tensor? = Tensor(zeros: [100])
        XCTAssertEqual(TensorMemory.liveBytes - before, 400)
        t = nil
        XCTAssertEqual(TensorMemory.liveBytes, before)
        _ = t
    }
}
