import DiscoCore

/// `disco bench allreduce`: the data-parallel costs of the DiscoGAN training iteration over
/// `group`'s ranks (1 plain, N under mpirun), on random data with the reference schedule.
public enum AllreduceBench {
    /// Runs `warmup` untimed, then `iterations` (rounded up to whole D/G cycles) timed iterations
    /// of a fixed-seed model distributed over `group`, each rank on `batch / group.size` random
    /// images, counting the all-reduces; then times `repeats` bare all-reduces of each network's
    /// gradient buffer. Collective: every rank calls it; every rank gets the figures
    /// `disco bench allreduce --json` prints (bytes and seconds per iteration, averaged over the
    /// timed iterations). `batch` must be a multiple of the ranks. OpenBLAS must be loaded.
    public static func run(group: Communicator, batch: Int, size: Int, channels: Int, iterations: Int, warmup: Int,
                           repeats: Int, syncBatchNorm: Bool) -> [String: Any] {
        precondition(batch % group.size == 0, "batch \(batch) is not divisible by \(group.size) ranks")
        let measured = MeasuredCommunicator(group)
        var config = TrainConfig()
        config.size = size; config.channels = channels; config.batch = batch
        let model = DiscoGAN(config: config)
        model.initialize(seed: 0)
        model.distribute(over: measured, syncBatchNorm: syncBatchNorm)
        var rng = Xoshiro256(seed: 7 &+ UInt64(group.rank))
        let local = [batch / group.size, size, size, channels]
        let xA = Tensor.uniform(local, low: 0, high: 1, rng: &rng), xB = Tensor.uniform(local, low: 0, high: 1, rng: &rng)
        let cycle = config.updateInterval
        let timed = ((iterations + cycle - 1) / cycle) * cycle
        for it in 0..<warmup { model.step(iteration: it, xA: xA, xB: xB) }
        _ = measured.allReduceMax([0])  // every rank starts the timed part together
        measured.reset()
        let t0 = Benchmark.now()
        for it in warmup..<(warmup + timed) { model.step(iteration: it, xA: xA, xB: xB) }
        let stepSeconds = (Benchmark.now() - t0) / Double(timed)
        let perIter = (bytes: Double(measured.bytes) / Double(timed), calls: Double(measured.calls) / Double(timed),
                       seconds: measured.seconds / Double(timed))
        // Bare all-reduces of the buckets one iteration sends: D_A + D_B once, G_AB + G_BA twice per cycle.
        var bare: [String: Double] = [:]
        var bucketFloats: [String: Int] = [:]
        for (name, net, _) in model.networks {
            bucketFloats[name] = net.parameters.count
            _ = group.allReduceMax([0])
            let s = Benchmark.now()
            for _ in 0..<repeats { group.allReduceSum(net.parameters.grads.data, count: net.parameters.count) }
            bare[name] = (Benchmark.now() - s) / Double(repeats)
        }
        let bareIter = ((bare["D_A"]! + bare["D_B"]!) + Double(cycle - 1) * (bare["G_AB"]! + bare["G_BA"]!)) / Double(cycle)
        let gradientBytes = Double(4 * ((bucketFloats["D_A"]! + bucketFloats["D_B"]!) + (cycle - 1) * (bucketFloats["G_AB"]! + bucketFloats["G_BA"]!))) / Double(cycle)
        return [
            "ranks": group.size, "communicator": group.name, "batch": batch, "batch_per_rank": batch / group.size,
            "size": size, "channels": channels, "sync_bn": syncBatchNorm, "threads_per_rank": Parallel.threads,
            "sec_per_iter": stepSeconds, "allreduce_sec_per_iter": perIter.seconds,
            "allreduce_calls_per_iter": perIter.calls, "allreduce_bytes_per_iter": perIter.bytes,
            "gradient_bytes_per_iter": gradientBytes, "bare_gradient_allreduce_sec_per_iter": bareIter,
            "parameters": bucketFloats, "iterations_timed": timed,
        ]
    }
}
