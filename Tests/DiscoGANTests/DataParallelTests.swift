import XCTest
import Foundation
import DiscoCore
@testable import DiscoGAN

/// `size` ranks in one process, one thread each: a `Communicator` for tests of the data-parallel
/// step without MPI. An all-reduce sums the ranks' buffers in rank order (every rank computes the
/// same sums), between barriers. The ranks take turns, as separate processes on their own cores
/// would not contend: a rank computes only while it holds `turn`, which it lets go while it waits
/// in a collective, so each rank's kernels have all of disco's workers.
final class ThreadGroup: @unchecked Sendable {
    let size: Int
    private let turn = NSLock()
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var slots: [UnsafeMutableRawPointer?]

    init(size: Int) { self.size = size; slots = Array(repeating: nil, count: size) }

    func barrier() {
        condition.lock()
        let g = generation
        arrived += 1
        if arrived == size { arrived = 0; generation += 1; condition.broadcast() } else {
            while generation == g { condition.wait() }
        }
        condition.unlock()
    }

    func allReduce<T>(_ rank: Int, _ buffer: UnsafeMutablePointer<T>, _ count: Int, _ combine: (T, T) -> T) {
        turn.unlock()
        defer { turn.lock() }
        condition.lock(); slots[rank] = UnsafeMutableRawPointer(buffer); condition.unlock()
        barrier()
        var result = Array(UnsafeBufferPointer(start: slots[0]!.assumingMemoryBound(to: T.self), count: count))
        for r in 1..<size {
            let p = slots[r]!.assumingMemoryBound(to: T.self)
            for i in 0..<count { result[i] = combine(result[i], p[i]) }
        }
        barrier()  // every rank has read every buffer
        result.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: count) }
        barrier()
    }

    final class Member: Communicator {
        let group: ThreadGroup
        let rank: Int
        init(_ group: ThreadGroup, rank: Int) { self.group = group; self.rank = rank }
        var size: Int { group.size }
        var name: String { "test threads" }
        func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { group.allReduce(rank, buffer, count, +) }
        func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { group.allReduce(rank, buffer, count, +) }
        func allReduceMin(_ values: [Int64]) -> [Int64] {
            var v = values; v.withUnsafeMutableBufferPointer { group.allReduce(rank, $0.baseAddress!, $0.count, Swift.min) }; return v
        }
        func allReduceMax(_ values: [Int64]) -> [Int64] {
            var v = values; v.withUnsafeMutableBufferPointer { group.allReduce(rank, $0.baseAddress!, $0.count, Swift.max) }; return v
        }
        func abort(code: Int32) -> Never { fatalError("abort \(code)") }
        func finish() {}
    }

    /// Runs body(rank's communicator) on `size` threads at once and waits for all.
    func run(_ body: @escaping @Sendable (Communicator) -> Void) {
        let done = DispatchGroup()
        for r in 0..<size {
            let member = Member(self, rank: r)
            let t = Thread {
                self.turn.lock()
                body(member)
                self.turn.unlock()
                done.leave()
            }
            t.stackSize = 8 << 20
            done.enter()
            t.start()
        }
        done.wait()
    }
}

/// The data-parallel step (`DiscoGAN.distribute`) on two in-process ranks against one process.
final class DataParallelTests: XCTestCase {
    func config() -> TrainConfig {
        var c = TrainConfig()
        c.size = 32; c.channels = 1; c.batch = 8; c.seed = 5
        return c
    }

    /// A batch [n, 32, 32, 1] of uniform random pixels, from `seed`.
    func images(_ n: Int, seed: UInt64) -> Tensor {
        var rng = Xoshiro256(seed: seed)
        let t = Tensor(uninitialized: [n, 32, 32, 1])
        for i in 0..<t.count { t[i] = rng.nextUniform() }
        return t
    }

    /// Images [lo, hi) of a batch.
    func slice(_ t: Tensor, _ r: Range<Int>) -> Tensor {
        let per = t.count / t.shape[0]
        let s = Tensor(uninitialized: [r.count] + Array(t.shape.dropFirst()))
        s.data.update(from: t.data + r.lowerBound * per, count: r.count * per)
        return s
    }

    /// Models on the ranks, each after `step` on its half of the batch, returned by rank.
    func twoRanks(sync: Bool, _ step: @escaping @Sendable (DiscoGAN, Tensor, Tensor) -> StepLosses, xA: Tensor, xB: Tensor)
        -> [(DiscoGAN, StepLosses)] {
        let group = ThreadGroup(size: 2)
        nonisolated(unsafe) var results: [(DiscoGAN, StepLosses)?] = [nil, nil]
        let lock = NSLock()
        let cfg = config()
        nonisolated(unsafe) let a = xA, b = xB
        group.run { comm in
            let m = DiscoGAN(config: cfg)
            m.initialize(seed: cfg.seed)
            m.distribute(over: comm, syncBatchNorm: sync)
            let r = comm.rank * 4..<comm.rank * 4 + 4
            let losses = step(m, self.slice(a, r), self.slice(b, r))
            lock.lock(); results[comm.rank] = (m, losses); lock.unlock()
        }
        return results.map { $0! }
    }

    func single(_ step: (DiscoGAN, Tensor, Tensor) -> StepLosses, xA: Tensor, xB: Tensor) -> (DiscoGAN, StepLosses) {
        let m = DiscoGAN(config: config())
        m.initialize(seed: config().seed)
        return (m, step(m, xA, xB))
    }

    static let dStep: @Sendable (DiscoGAN, Tensor, Tensor) -> StepLosses = { m, a, b in m.discriminatorStep(xA: a, xB: b) }
    static let gStep: @Sendable (DiscoGAN, Tensor, Tensor) -> StepLosses = { m, a, b in m.generatorStep(xA: a, xB: b, rate: 0.5) }

    /// Without --sync-bn each rank normalises its own half: its batch-norm running statistics after
    /// a step are exactly those of one process given only that half (the statistics are taken in
    /// the forwards, before any exchange), for the D step and the G step.
    func testWithoutSyncBNEachRankNormalisesItsOwnSlice() {
        let xA = images(8, seed: 1), xB = images(8, seed: 2)
        for step in [Self.dStep, Self.gStep] {
            let ranks = twoRanks(sync: false, step, xA: xA, xB: xB)
            for (rank, (model, _)) in ranks.enumerated() {
                let r = rank * 4..<rank * 4 + 4
                let (alone, _) = single(step, xA: slice(xA, r), xB: slice(xB, r))
                for ((name, net, _), (_, ref, _)) in zip(model.networks, alone.networks) {
                    XCTAssertEqual(net.buffers.values.array, ref.buffers.values.array, "rank \(rank) \(name) running statistics")
                }
                // And the running statistics moved (the test is not comparing the initial values).
                XCTAssertNotEqual(model.networks[3].net.buffers.values.array, DiscoGAN(config: config()).networks[3].net.buffers.values.array)
            }
            // The ranks' statistics differ from each other (their halves differ)...
            XCTAssertNotEqual(ranks[0].0.D_B.buffers.values.array, ranks[1].0.D_B.buffers.values.array)
            // ...while their weights after the step are the same (averaged gradients, one Adam step).
            for ((name, a, _), (_, b, _)) in zip(ranks[0].0.networks, ranks[1].0.networks) {
                XCTAssertEqual(a.parameters.values.array, b.parameters.values.array, "\(name) weights differ between ranks")
            }
        }
    }

    /// With --sync-bn two ranks compute what one process computes on the whole batch, for the D step
    /// and the G step (feature matching over the whole batch), to float rounding: the two sum in
    /// other orders and, with OpenBLAS kernels whose rounding depends on a row's place in the GEMM
    /// (Haswell's on Zen 3), round the same rows differently.
    ///
    /// What that rounding can move, measured (Zen 3, Haswell and Sandybridge kernels):
    /// - The loss terms and the batch-norm statistics are continuous in the rounding: the losses
    ///   within 1e-5 relative; the running means within 4e-8 (they are 0.1 x batch means of
    ///   activations whose standard deviation is under 0.5, so 1e-6 absolute is 1e-5 of that scale
    ///   times the momentum; a bound relative to the mean alone fails where the mean is near 0, so
    ///   the bound is 1e-6 + 1e-5 |mean|).
    /// - The gradients are not: a pre-activation within rounding of 0 takes the other side of a
    ///   (leaky) ReLU's kink, and the change reaches every upstream gradient. One such flip moved
    ///   the G step's G_AB gradient by 2.2e-3 of its norm (a 1e-7 relative change of the input
    ///   images moved them by up to 4.6e-4). Hence 2e-2.
    /// The same comparison without --sync-bn must fail both bounds (measured: gradients 0.21-0.49,
    /// running means 3e-4 to 9e-3 apart), so the bounds separate a rounding from a wrong exchange.
    func testSyncBNTwoRanksMatchOneProcess() {
        let xA = images(8, seed: 3), xB = images(8, seed: 4)
        let gradientBound = 2e-2
        /// The largest gradient distance (relative to the norm) and running-mean distance (relative
        /// to its bound 1e-6 + 1e-5 |mean|) of `model` from `ref` over the networks; with
        /// `variances`, asserts the running variances within 1e-5 relative.
        func distances(_ model: DiscoGAN, _ ref: DiscoGAN, _ label: String, variances: Bool) -> (gradient: Double, mean: Float) {
            var gradient = 0.0, mean: Float = 0
            for ((name, net, _), (_, one, _)) in zip(model.networks, ref.networks) {
                let g = net.parameters.grads.array, r = one.parameters.grads.array
                let norm = r.map { Double($0 * $0) }.reduce(0, +).squareRoot()
                let diff = zip(g, r).map { Double(($0 - $1) * ($0 - $1)) }.reduce(0, +).squareRoot()
                if norm > 0 { gradient = max(gradient, diff / norm) } else { XCTAssertEqual(diff, 0, "\(label) \(name) gradient") }
                for e in net.buffers.entries {
                    let x = net.buffers.value(e.name).array, y = one.buffers.value(e.name).array
                    if e.name.hasSuffix("running_mean") {
                        mean = max(mean, zip(x, y).map { abs($0 - $1) / (1e-6 + 1e-5 * abs($1)) }.max() ?? 0)
                    } else if variances {
                        for (p, q) in zip(x, y) { XCTAssertEqual(p, q, accuracy: 1e-5 * max(abs(q), 1e-3), "\(label) \(name) \(e.name)") }
                    }
                }
            }
            return (gradient, mean)
        }
        for (kind, step) in [("D", Self.dStep), ("G", Self.gStep)] {
            let ranks = twoRanks(sync: true, step, xA: xA, xB: xB)
            let (one, oneLosses) = single(step, xA: xA, xB: xB)
            for (rank, (model, losses)) in ranks.enumerated() {
                // The losses of the whole batch: the mean of the ranks' (as Trainer.agree makes them).
                for (key, value) in oneLosses.entries where key != "rate" && key != "lr" {
                    let mean = (ranks[0].1[key]! + ranks[1].1[key]!) / 2
                    let isFM = key.hasPrefix("fm_")
                    XCTAssertEqual(isFM ? losses[key]! : mean, value, accuracy: 1e-5 * max(abs(value), 1e-3), "\(kind) step \(key)")
                }
                let d = distances(model, one, "rank \(rank) \(kind) step", variances: true)
                XCTAssertLessThanOrEqual(d.gradient, gradientBound, "rank \(rank) \(kind) step: gradients")
                XCTAssertLessThanOrEqual(d.mean, 1, "rank \(rank) \(kind) step: running means (distance / bound)")
            }
            // The bounds are not so loose that ranks normalising their own halves pass them.
            let apart = distances(twoRanks(sync: false, step, xA: xA, xB: xB)[0].0, one, "per-rank \(kind) step", variances: false)
            XCTAssertGreaterThan(apart.gradient, 5 * gradientBound, "\(kind) step without --sync-bn: gradients")
            XCTAssertGreaterThan(apart.mean, 100, "\(kind) step without --sync-bn: running means (distance / bound)")
        }
    }
}
