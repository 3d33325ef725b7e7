import XCTest
@testable import DiscoCore

/// softmaxCrossEntropyLoss (Losses.swift) against closed forms and finite differences.
final class SoftmaxCrossEntropyTests: XCTestCase {
    /// Equal logits: loss log K, gradient (1/K - [k == y]) / N. Two classes: the loss is the BCE of
    /// the logit difference, log(1 + e^-(x_y - x_other)). Huge logits stay finite.
    func testClosedForms() {
        let k = 10, n = 3
        let flat = softmaxCrossEntropyLoss(logits: Tensor(filling: 2.5, shape: [n, k]), labels: [0, 4, 9])
        XCTAssertEqual(Double(flat.loss), log(10.0), accuracy: 1e-6)
        for r in 0..<n { for j in 0..<k {
            let want = (0.1 - ([0, 4, 9][r] == j ? 1 : 0)) / Double(n)
            XCTAssertEqual(Double(flat.grad[r * k + j]), want, accuracy: 1e-7)
        } }
        let two = softmaxCrossEntropyLoss(logits: Tensor(shape: [2, 2], values: [1.5, -0.5, 0.25, 3]), labels: [0, 0])
        let want = (log(1 + exp(-2.0)) + log(1 + exp(2.75))) / 2
        XCTAssertEqual(Double(two.loss), want, accuracy: 1e-6)
        // d/dx_y of log(1 + e^-(x_y - x_o)) = -sigmoid(x_o - x_y), halved by the mean
        XCTAssertEqual(Double(two.grad[0]), -1 / (1 + exp(2.0)) / 2, accuracy: 1e-7)
        XCTAssertEqual(Double(two.grad[2]), -1 / (1 + exp(-2.75)) / 2, accuracy: 1e-7)
        let huge = softmaxCrossEntropyLoss(logits: Tensor(shape: [1, 3], values: [1000, -1000, 0]), labels: [1])
        XCTAssertEqual(Double(huge.loss), 2000, accuracy: 1e-3)
        XCTAssertTrue(huge.grad.array.allSatisfy(\.isFinite))
    }

    /// Every gradient element against central differences of the loss (computed in Double).
    func testGradientMatchesFiniteDifferences() {
        var rng = Xoshiro256(seed: 3)
        let n = 5, k = 7
        let x = Tensor.normal([n, k], std: 2, rng: &rng)
        let labels = (0..<n).map { _ in Int(rng.next() % UInt64(k)) }
        let g = softmaxCrossEntropyLoss(logits: x, labels: labels).grad
        func loss() -> Double {     // an independent Double evaluation of the definition
            var s = 0.0
            for r in 0..<n {
                let row = (0..<k).map { Double(x[r * k + $0]) }
                s += log(row.map(exp).reduce(0, +)) - row[labels[r]]
            }
            return s / Double(n)
        }
        let fd = finiteDifference(x, indices: Array(0..<(n * k)), h: 1e-2, loss)
        assertGradientMatches(g, fd, indices: Array(0..<(n * k)), tol: 1e-4, "softmax cross-entropy dx")
        // and each row of the gradient sums to zero (softmax sums to one)
        for r in 0..<n { XCTAssertEqual((0..<k).reduce(0.0) { $0 + Double(g[r * k + $1]) }, 0, accuracy: 1e-7) }
    }
}
