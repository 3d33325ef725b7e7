import Foundation
import DiscoCore
import DiscoImage

/// `disco bench translate`: images/s of `disco translate` on a folder (the real command, run as
/// new processes of this executable), its stages timed one by one in this process, and one
/// image from process start to PNG written. See `disco bench translate --help`.
public struct TranslateBench {
    public var size = 64, channels = 3
    public var images = 512, runs = 10, folderRuns = 3, batch = 64
    /// A model file or run folder to time instead of a random model of `size`/`channels`.
    public var checkpoint: String?
    /// sgemm size n of the n^3 reference figure (0: skip).
    public var sgemm = 4096
    /// Keep the temporary folder (its path is announced).
    public var keep = false
    public init() {}

    public func run(announce: (String) -> Void = { _ in }) throws -> [String: Any] {
        let blas = BLAS.shared
        let loadStart = Benchmark.loadAverage()
        let exe = try currentExecutable()
        let tmpDir = NSTemporaryDirectory()
        var template = Array(((tmpDir.hasSuffix("/") ? tmpDir : tmpDir + "/") + "disco-bench-translate-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw DiscoError("cannot create a temporary folder: \(String(cString: strerror(errno)))") }
        let root = String(cString: made)
        defer { if !keep { try? FileManager.default.removeItem(atPath: root) } }
        if keep { announce("bench folder: \(root)") }

        // The model: a given one, or fixed-seed random weights exported as `disco export` would.
        let modelFile: String
        if let checkpoint {
            modelFile = try resolveModelFile(checkpoint)
        } else {
            var config = TrainConfig()
            config.size = size; config.channels = channels
            let model = DiscoGAN(config: config)
            model.initialize(seed: 0)
            modelFile = root + "/model.safetensors"
            do { try Checkpoint.writeAtomically(Checkpoint.modelData(model: model, iteration: 0, generatorsOnly: true), to: modelFile) }
            catch { throw DiscoError("cannot write \(modelFile): \(error)") }
        }
        let engine = try TranslateEngine(modelFile: modelFile, direction: .aToB, keepSize: false, quality: 95)
        let size = engine.size, channels = engine.channels, folderRuns = self.folderRuns, images = self.images, batch = self.batch

        // The images.
        let input = root + "/in"
        try Checkpoint.createDirectory(input)
        var rng = Xoshiro256(seed: 11)
        for i in 0..<images {
            do { try encodePNG(patternImage(size: size, rng: &rng), path: input + String(format: "/%05d.png", i)) }
            catch { throw DiscoError("cannot write the bench images: \(error)") }
        }
        let one = input + "/00000.png"

        // a. Folder throughput: the real command, a new process each time.
        var folderTimes: [Double] = []
        for r in 0..<folderRuns {
            let out = root + "/out-\(r)"
            folderTimes.append(try timeProcess(exe, ["translate", input, "-o", out, "--checkpoint", modelFile, "--batch", String(batch)], root: root))
            let written = (try? FileManager.default.contentsOfDirectory(atPath: out).count) ?? 0
            guard written == images else { throw DiscoError("disco translate wrote \(written) of \(images) images into \(out)") }
            // Each run writes a new folder, kept until the end: deleting thousands of files just
            // before the next run makes ext4 search longer for free inodes, slowing its writes.
        }

        // The same stages in this process, one after the other, with the threads of one of
        // translate's streams (one core each when there are several).
        let files = (0..<images).map { input + String(format: "/%05d.png", $0) }
        let outDir = root + "/out-split"
        try Checkpoint.createDirectory(outDir)
        let streams = TranslateEngine.streams(for: images)
        engine.prepare(images: images)
        let restore = TranslateEngine.configureThreads(streams: streams)
        let scratch = InferenceScratch()
        _ = engine.forward(engine.decode(Array(files.prefix(batch))).tensor, scratch: scratch)  // warm-up: buffers
        var tDecode = 0.0, tForward = 0.0, tEncode = 0.0, tWrite = 0.0
        var inputs: [Tensor] = []
        for start in stride(from: 0, to: images, by: batch) {
            let paths = Array(files[start..<min(start + batch, images)])
            let targets = paths.map { outDir + "/" + ($0 as NSString).lastPathComponent }
            var t = Benchmark.now()
            let decoded = engine.decode(paths)
            inputs.append(decoded.tensor)
            tDecode += Benchmark.now() - t; t = Benchmark.now()
            let y = engine.forward(decoded.tensor, scratch: scratch)
            tForward += Benchmark.now() - t; t = Benchmark.now()
            let encoded = try engine.encode(y, decoded, targets: targets)
            tEncode += Benchmark.now() - t; t = Benchmark.now()
            try engine.write(encoded, decoded, targets: targets)
            tWrite += Benchmark.now() - t
        }
        // The forward alone, all streams at once (each its share of the batches): the compute
        // rate of the whole machine.
        let scratches = (0..<streams).map { _ in InferenceScratch() }
        DispatchQueue.concurrentPerform(iterations: streams) { s in _ = engine.forward(inputs[s % inputs.count], scratch: scratches[s]) }
        let tStart = Benchmark.now()
        DispatchQueue.concurrentPerform(iterations: streams) { s in
            for b in stride(from: s, to: inputs.count, by: streams) { _ = engine.forward(inputs[b], scratch: scratches[s]) }
        }
        let tForwardAll = Benchmark.now() - tStart
        restore()
        let gflop = generatorGFLOPPerImage(size: size, channels: channels)
        let executedGFLOP = 2 * Double(engine.generator.multiplyAdds(inputSize: size)) / 1e9

        // b. One image, process start to PNG written.
        func single(_ extra: [String]) throws -> [Double] {
            var times: [Double] = []
            for r in 0..<runs {
                let out = root + "/one-\(r).png"
                times.append(try timeProcess(exe, ["translate", one, "-o", out] + extra, root: root))
                guard FileManager.default.fileExists(atPath: out) else { throw DiscoError("disco translate did not write \(out)") }
            }
            return times
        }
        let oneTimes = try single(["--checkpoint", modelFile])
        var defaultTimes: [Double]? = nil
        var defaultShape = ""
        if let d = defaultModelPath(), let info = try? Checkpoint.modelInfo(file: d) {
            defaultTimes = try single([])
            defaultShape = "\(info.size)x\(info.size)x\(info.channels)"
        }
        // sgemm last: OpenBLAS's threads spin for a while after it and would slow what ran next.
        let sgemmGFLOPS = sgemm > 0 ? Benchmark.sgemmGFLOPS(n: sgemm) : 0
        let loadEnd = Benchmark.loadAverage()

        let folderBest = folderTimes.min()!, folderMedian = Benchmark.median(folderTimes)
        let n = Double(images)
        let splitTotal = tDecode + tForward + tEncode + tWrite
        // Streams run side by side, one core each: the stages' sum per image, divided by streams.
        let splitRate = Double(streams) * n / splitTotal
        let forwardRate = n / tForwardAll
        let bound = sgemmGFLOPS > 0 ? sgemmGFLOPS / gflop : 0
        var result: [String: Any] = [
            "images": images, "size": size, "channels": channels, "batch": batch,
            "model": checkpoint ?? "random (seed 0)",
            "folder_seconds_best": folderBest, "folder_seconds_median": folderMedian,
            "images_per_s": n / folderBest, "images_per_s_median": n / folderMedian,
            "split_ms_per_image": ["decode": 1e3 * tDecode / n, "forward": 1e3 * tForward / n,
                                   "encode": 1e3 * tEncode / n, "write": 1e3 * tWrite / n],
            "split_streams": streams, "split_images_per_s": splitRate,
            "single_seconds_median": Benchmark.median(oneTimes), "single_seconds_best": oneTimes.min()!,
            "gflop_per_image": gflop, "executed_gflop_per_image": executedGFLOP,
            "forward_images_per_s": forwardRate, "forward_gflops": gflop * forwardRate,
            "sgemm_n": sgemm, "sgemm_gflops": sgemmGFLOPS, "sgemm_bound_images_per_s": bound,
            "sgemm_bound_executed_images_per_s": sgemmGFLOPS > 0 ? sgemmGFLOPS / executedGFLOP : 0,
            "blas_core": blas.coreName, "threads": Parallel.threads,
            "loadavg_start": loadStart, "loadavg_end": loadEnd,
        ]
        if let defaultTimes {
            result["default_model"] = defaultShape
            result["default_single_seconds_median"] = Benchmark.median(defaultTimes)
            result["default_single_seconds_best"] = defaultTimes.min()!
        }
        return result
    }
}

/// Multiply-adds x 2 of one generator forward on one image, in GFLOP.
public func generatorGFLOPPerImage(size: Int, channels: Int) -> Double {
    var h = size, macs = 0
    for b in DiscoGANModels.generatorBlocks(size: size, channels: channels) {
        macs += b.geometry(batch: 1, height: h, width: h).macs
        h = b.outputSize(h)
    }
    return 2 * Double(macs) / 1e9
}

/// A smooth RGB test pattern: a few random sinusoids per channel plus a gradient.
public func patternImage(size: Int, rng: inout Xoshiro256) -> Image {
    var px = [Float](repeating: 0, count: size * size * 3)
    for c in 0..<3 {
        let fx = Float(rng.nextUniform() * 0.4), fy = Float(rng.nextUniform() * 0.4), phase = Float(rng.nextUniform() * 6.3)
        let gx = Float(rng.nextUniform() - 0.5) / Float(size), gy = Float(rng.nextUniform() - 0.5) / Float(size)
        for y in 0..<size {
            for x in 0..<size {
                let v = 0.5 + 0.35 * sinf(fx * Float(x) + fy * Float(y) + phase) + gx * Float(x) + gy * Float(y)
                px[(y * size + x) * 3 + c] = min(max(v, 0), 1)
            }
        }
    }
    return Image(width: size, height: size, channels: 3, pixels: px)
}

/// The path of the running executable.
public func currentExecutable() throws -> String {
    var buf = [CChar](repeating: 0, count: 4097)
    let n = readlink("/proc/self/exe", &buf, 4096)
    if n > 0 { return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    let arg0 = CommandLine.arguments[0]
    guard FileManager.default.isExecutableFile(atPath: arg0) else { throw DiscoError("cannot find this executable (/proc/self/exe, \(arg0))") }
    return arg0
}

/// Runs `exe args` as a new process (stdout discarded) and returns the wall seconds from spawn to
/// exit. A failing run throws with its stderr.
public func timeProcess(_ exe: String, _ args: [String], root: String) throws -> Double {
    let errPath = root + "/stderr.txt"
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let start = Benchmark.now()
    let rc = posix_spawn(&pid, exe, &actions, nil, argv, environ)
    guard rc == 0 else { throw DiscoError("cannot start \(exe): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let wall = Benchmark.now() - start
    let exited = (status & 0x7f) == 0, code = (status >> 8) & 0xff
    guard exited && code == 0 else {
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        throw DiscoError("disco \(args.joined(separator: " ")) failed (\(exited ? "exit code \(code)" : "signal \(status & 0x7f)")): \(err.trimmingCharacters(in: .whitespacesAndNewlines))")
    }
    return wall
}
