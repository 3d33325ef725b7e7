import XCTest
import Foundation
@testable import DiscoCore

/// The MLP's kernels split between workers (Linear, the sigmoid, Adam, the normal draws): the
/// split result against the one-worker result and against independent oracles (a Double loop,
/// Double's exp, nextNormal one draw at a time), for shapes whose split is uneven.
final class MLPSplitTests: XCTestCase {
    func withThreads<T>(_ n: Int, _ body: () -> T) -> T {
        let saved = Parallel.threads
        Parallel.threads = n
        defer { Parallel.threads = saved }
        return body()
    }

    /// Forward (ReLU fused), input gradient (the input's ReLU derivative fused) and weight and bias
    /// gradients on 1 and 3 workers. Shapes: 203 rows split 64/64/75; weight gradients split by
    /// columns (157 = 48/48/61) and, with out > in, by rows (300 = 96/96/108). Every output element
    /// is one sgemm over the whole inner dimension either way, so the two results agree to float
    /// rounding of the kernels' edge blocks (bound 1e-6 of the largest value; they are usually
    /// identical: bit for bit on the Cooperlake kernels); the Double oracle within 1e-5.
    func testSplitProductsMatchOneWorkerAndTheOracle() throws {
        _ = try BLAS.load()
        var rng = Xoshiro256(seed: 71)
        for (n, fin, fout) in [(203, 157, 113), (150, 70, 300)] {
            XCTAssertEqual(withThreads(3) { Linear.workers(macs: n * fin * fout, extent: n) }, 3, "\(n)x\(fin)x\(fout) splits in 3")
            let x = randn([n, fin], &rng), w = randn([fout, fin], &rng, std: 0.1), b = randn([fout], &rng)
            let dy = randn([n, fout], &rng), xAct = Activation.relu.forward(randn([n, fin], &rng))
            func run(_ threads: Int) -> [Tensor] {
                withThreads(threads) {
                    let y = Tensor(uninitialized: [n, fout]), dx = Tensor(uninitialized: [n, fin])
                    let dw = Tensor(filling: 0.5, shape: [fout, fin]), db = Tensor(filling: 0.25, shape: [fout])
                    Linear.forward(y: y, x: x, w: w, b: b, activation: .relu)
                    Linear.backwardInput(dx: dx, dy: dy, w: w, inputActivation: (.relu, xAct))
                    Linear.backwardWeight(dw: dw, db: db, x: x, dy: dy)
                    return [y, dx, dw, db]
                }
            }
            let one = run(1), three = run(3)
            // Oracles in Double.
            let y = Activation.relu.forward(Linear.naiveForward(x: x, w: w, b: b))
            var dx = [Double](repeating: 0, count: n * fin), dw = [Double](repeating: 0.5, count: fout * fin)
            var db = [Double](repeating: 0.25, count: fout)
            for r in 0..<n { for j in 0..<fout {
                let d = Double(dy[r * fout + j])
                db[j] += d
                for i in 0..<fin { dx[r * fin + i] += d * Double(w[j * fin + i]); dw[j * fin + i] += d * Double(x[r * fin + i]) }
            } }
            for i in 0..<(n * fin) where xAct[i] <= 0 { dx[i] = 0 }
            let oracle = [y, Tensor(shape: [n, fin], values: dx.map(Float.init)), Tensor(shape: [fout, fin], values: dw.map(Float.init)),
                          Tensor(shape: [fout], values: db.map(Float.init))]
            for (k, name) in ["y", "dx", "dw", "db"].enumerated() {
                XCTAssertLessThanOrEqual(relativeError(three[k], one[k]), 1e-6, "\(name) \(n)x\(fin)x\(fout): 3 workers vs 1")
                XCTAssertLessThanOrEqual(relativeError(three[k], oracle[k]), 1e-5, "\(name) \(n)x\(fin)x\(fout): vs the Double loop")
            }
            // db adds the rows in order on any split: identical.
            XCTAssertEqual(three[3].array, one[3].array, "db \(n)x\(fin)x\(fout)")
        }
    }

    /// The MLP's backward without parameter gradients leaves them as they were and returns the
    /// same input gradient; without the input gradient it returns nil and the same parameter
    /// gradients.
    func testBackwardSkipsWhatIsNotAsked() throws {
        _ = try BLAS.load()
        var rng = Xoshiro256(seed: 72)
        let net = MLP(sizes: [20, 16, 5], hidden: .relu, output: .sigmoid)
        net.initialize(rng: &rng)
        let x = randn([7, 20], &rng), dOut = randn([7, 5], &rng), dOutSaved = dOut.copy()
        let (_, trace) = net.forward(x)
        net.zeroGradients()
        let dxAll = net.backward(trace, dOutput: dOut)
        let gradsAll = net.grads.copy()
        XCTAssertEqual(dOut.array, dOutSaved.array, "dOutput is not modified")
        for i in 0..<net.grads.count { net.grads[i] = 3 }
        let dxOnly = net.backward(trace, dOutput: dOut, parameterGradients: false, inputGradient: true)!
        XCTAssertEqual(dxOnly.array, dxAll.array)
        XCTAssertTrue(net.grads.array.allSatisfy { $0 == 3 }, "parameter gradients untouched")
        net.zeroGradients()
        XCTAssertNil(net.backward(trace, dOutput: dOut, parameterGradients: true, inputGradient: false))
        XCTAssertEqual(net.grads.array, gradsAll.array)
    }

    /// dc_sigmoid against 1 / (1 + exp(-x)) in Double, over [-100, 100] (every 1/64 and the ends of
    /// float32's range): relative error at most 4e-7 (a few ulp) where the exact value is above
    /// 1e-37, absolute error at most 6.1e-39 below; NaN stays NaN; in place gives the same values,
    /// and so does any start offset (each element the same arithmetic).
    func testSigmoidMatchesDouble() {
        var xs: [Float] = stride(from: -100.0, through: 100.0, by: 1.0 / 64).map { Float($0) }
        xs += [-Float.infinity, .infinity, -Float.greatestFiniteMagnitude, .greatestFiniteMagnitude, 0, -0.0,
               -88, -88.01, -87.99, 87.3, 87.31, 1e-20, -1e-20, .leastNonzeroMagnitude]
        let n = xs.count
        var y = [Float](repeating: 0, count: n)
        sigmoidArray(y: &y, x: xs, count: n)
        for (i, x) in xs.enumerated() {
            let exact = 1 / (1 + Foundation.exp(-Double(x)))
            let got = Double(y[i])
            if exact > 1e-37 {
                XCTAssertLessThanOrEqual(abs(got - exact) / exact, 4e-7, "sigmoid(\(x)) = \(got), exact \(exact)")
            } else {
                XCTAssertLessThanOrEqual(abs(got - exact), 6.1e-39, "sigmoid(\(x)) = \(got), exact \(exact)")
            }
        }
        var nan: [Float] = [.nan]
        sigmoidArray(y: &nan, x: nan, count: 1)
        XCTAssertTrue(nan[0].isNaN)
        var inPlace = xs
        inPlace.withUnsafeMutableBufferPointer { sigmoidArray(y: $0.baseAddress!, x: $0.baseAddress!, count: n) }
        XCTAssertEqual(inPlace, y)
        var shifted = [Float](repeating: 0, count: n - 3)
        xs.withUnsafeBufferPointer { sigmoidArray(y: &shifted, x: $0.baseAddress! + 3, count: n - 3) }
        XCTAssertEqual(shifted, Array(y[3...]))
    }

    /// Adam over 100,003 parameters (split between 3 workers, the last share ragged) equals the
    /// one-worker update exactly, over three steps with weight decay.
    func testAdamSplitEqualsOneWorker() {
        var rng = Xoshiro256(seed: 73)
        let n = 100_003
        let p0 = randn([n], &rng), grads = (0..<3).map { _ in randn([n], &rng) }
        func run(_ threads: Int) -> [Float] {
            withThreads(threads) {
                let p = p0.copy()
                let adam = Adam(parameterCount: n, hyperparameters: .init(learningRate: 2e-4, beta1: 0.5, beta2: 0.999, weightDecay: 1e-5))
                for g in grads { adam.update(params: p, grads: g) }
                return p.array + adam.m.array + adam.v.array
            }
        }
        XCTAssertEqual(run(3), run(1))
    }

    /// Tensor.normal (its Box-Muller transforms split between workers) gives what a loop of
    /// nextNormal gives, and leaves the generator in the same state.
    func testNormalTensorEqualsOneDrawAtATime() {
        var a = Xoshiro256(seed: 74), b = a
        let t = withThreads(3) { Tensor.normal([500, 64], mean: 0.5, std: 2, rng: &a) }
        let want = (0..<(500 * 64)).map { _ in 0.5 + 2 * b.nextNormal() }
        XCTAssertEqual(t.array, want)
        XCTAssertEqual(a, b)
    }
}
