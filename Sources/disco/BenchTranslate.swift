import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN
import DiscoImage

struct BenchTranslate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "translate",
        abstract: "Time disco translate: images/s on a folder, and one image from process start to PNG written.",
        discussion: """
        Writes --images generated PNGs (smooth random patterns, RGB, the model's size) and, without \
        --checkpoint, a model with fixed-seed random weights (a generators-only model.safetensors, \
        as disco export writes) into a temporary folder. Then it measures:
        - folder: `disco translate IN/ -o OUT/ --checkpoint MODEL` run as a new process of this \
        executable, --folder-runs times; images/s = images / wall seconds from process start to exit \
        (everything a user waits for). The same stages are then timed one by one in this process, \
        on one core as each of translate's streams runs them: decode, generator forward, encode, \
        write; and the forward alone with all streams at once.
        - one image: `disco translate one.png -o out.png --checkpoint MODEL`, --runs processes, median \
        and best wall seconds; the same without --checkpoint (the default model) when it is found.
        - the generator's GFLOP per image (direct convolution; and what its Winograd GEMMs execute), \
        the forward's GFLOP/s, and sgemm GFLOP/s at --sgemm^3 in the same run: sgemm GFLOP/s / \
        GFLOP per image is the images/s of a forward that ran at sgemm speed throughout.
        """)

    @OptionGroup var shape: ModelShapeOptions
    @Option(help: "Images in the generated folder.") var images = 512
    @Option(help: "Single-image processes timed (each model).") var runs = 10
    @Option(help: "Folder-translation processes timed.") var folderRuns = 3
    @Option(help: "Images per forward pass (disco translate --batch).") var batch = 64
    @Option(help: "A model file or run folder to time instead of a random model of --size/--channels.") var checkpoint: String?
    @Option(help: "sgemm size n of the n^3 reference figure (0: skip).") var sgemm = 4096
    @Flag(help: "Keep the temporary folder (its path is printed).") var keep = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard images >= 1, runs >= 1, folderRuns >= 1, batch >= 1, sgemm >= 0 else {
            throw ValidationError("--images, --runs, --folder-runs and --batch must be positive, --sgemm at least 0")
        }
    }

    func run() throws {
        let blas = try loadBLASOrExplain()
        let loadStart = loadAverage()
        let exe = try currentExecutable()
        let tmpDir = NSTemporaryDirectory()
        var template = Array(((tmpDir.hasSuffix("/") ? tmpDir : tmpDir + "/") + "disco-bench-translate-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw CLIError("cannot create a temporary folder: \(String(cString: strerror(errno)))") }
        let root = String(cString: made)
        defer { if !keep { try? FileManager.default.removeItem(atPath: root) } }
        if keep && !json { print("bench folder: \(root)") }

        // The model: a given one, or fixed-seed random weights exported as `disco export` would.
        let modelFile: String
        if let checkpoint {
            modelFile = try resolveModelFile(checkpoint)
        } else {
            var config = TrainConfig()
            config.size = shape.size; config.channels = shape.channels
            let model = DiscoGAN(config: config)
            model.initialize(seed: 0)
            modelFile = root + "/model.safetensors"
            do { try Checkpoint.writeAtomically(Checkpoint.modelData(model: model, iteration: 0, generatorsOnly: true), to: modelFile) }
            catch { throw CLIError("cannot write \(modelFile): \(error)") }
        }
        let engine = try TranslateEngine(modelFile: modelFile, direction: .aToB, keepSize: false, quality: 95)
        let size = engine.size, channels = engine.channels

        // The images.
        let input = root + "/in"
        try Checkpoint.createDirectory(input)
        var rng = Xoshiro256(seed: 11)
        for i in 0..<images {
            do { try encodePNG(patternImage(size: size, rng: &rng), path: input + String(format: "/%05d.png", i)) }
            catch { throw CLIError("cannot write the bench images: \(error)") }
        }
        let one = input + "/00000.png"

        // a. Folder throughput: the real command, a new process each time.
        var folderTimes: [Double] = []
        for r in 0..<folderRuns {
            let out = root + "/out-\(r)"
            folderTimes.append(try timeProcess(exe, ["translate", input, "-o", out, "--checkpoint", modelFile, "--batch", String(batch)], root: root))
            let written = (try? FileManager.default.contentsOfDirectory(atPath: out).count) ?? 0
            guard written == images else { throw CLIError("disco translate wrote \(written) of \(images) images into \(out)") }
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
            var t = now()
            let decoded = engine.decode(paths)
            inputs.append(decoded.tensor)
            tDecode += now() - t; t = now()
            let y = engine.forward(decoded.tensor, scratch: scratch)
            tForward += now() - t; t = now()
            let encoded = try engine.encode(y, decoded, targets: targets)
            tEncode += now() - t; t = now()
            try engine.write(encoded, decoded, targets: targets)
            tWrite += now() - t
        }
        // The forward alone, all streams at once (each its share of the batches): the compute
        // rate of the whole machine.
        let scratches = (0..<streams).map { _ in InferenceScratch() }
        DispatchQueue.concurrentPerform(iterations: streams) { s in _ = engine.forward(inputs[s % inputs.count], scratch: scratches[s]) }
        let tStart = now()
        DispatchQueue.concurrentPerform(iterations: streams) { s in
            for b in stride(from: s, to: inputs.count, by: streams) { _ = engine.forward(inputs[b], scratch: scratches[s]) }
        }
        let tForwardAll = now() - tStart
        restore()
        let gflop = generatorGFLOPPerImage(size: size, channels: channels)
        let executedGFLOP = 2 * Double(engine.generator.multiplyAdds(inputSize: size)) / 1e9
        let sgemmGFLOPS = sgemm > 0 ? measureSgemm(n: sgemm) : 0

        // b. One image, process start to PNG written.
        func single(_ extra: [String]) throws -> [Double] {
            var times: [Double] = []
            for r in 0..<runs {
                let out = root + "/one-\(r).png"
                times.append(try timeProcess(exe, ["translate", one, "-o", out] + extra, root: root))
                guard FileManager.default.fileExists(atPath: out) else { throw CLIError("disco translate did not write \(out)") }
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
        let loadEnd = loadAverage()

        let folderBest = folderTimes.min()!, folderMedian = median(folderTimes)
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
            "single_seconds_median": median(oneTimes), "single_seconds_best": oneTimes.min()!,
            "gflop_per_image": gflop, "executed_gflop_per_image": executedGFLOP,
            "forward_images_per_s": forwardRate, "forward_gflops": gflop * forwardRate,
            "sgemm_n": sgemm, "sgemm_gflops": sgemmGFLOPS, "sgemm_bound_images_per_s": bound,
            "sgemm_bound_executed_images_per_s": sgemmGFLOPS > 0 ? sgemmGFLOPS / executedGFLOP : 0,
            "blas_core": blas.coreName, "threads": Parallel.threads,
            "loadavg_start": loadStart, "loadavg_end": loadEnd,
        ]
        if let defaultTimes {
            result["default_model"] = defaultShape
            result["default_single_seconds_median"] = median(defaultTimes)
            result["default_single_seconds_best"] = defaultTimes.min()!
        }
        if json { print(jsonString(result)); return }
        print(String(format: "translate: %d images %dx%dx%d, batch %d, blas %@, %d threads, load %@ -> %@",
                     images, size, size, channels, batch, blas.coreName, Parallel.threads,
                     loadStart.map { String(format: "%.2f", $0) }.joined(separator: " "),
                     loadEnd.map { String(format: "%.2f", $0) }.joined(separator: " ")))
        print(String(format: "  folder (disco translate process, %d runs): %.0f images/s best (%.3f s), %.0f median",
                     folderRuns, n / folderBest, folderBest, n / folderMedian))
        print(String(format: "  stages in-process, ms/image on %@: decode %.3f, forward %.3f, encode %.3f, write %.3f -> %.0f images/s with %d stream(s)",
                     streams > 1 ? "one core" : "all cores", 1e3 * tDecode / n, 1e3 * tForward / n, 1e3 * tEncode / n, 1e3 * tWrite / n, splitRate, streams))
        print(String(format: "  generator forward alone, %d stream(s) at once: %.0f images/s = %.0f GFLOP/s of direct-convolution FLOPs (%.3f GFLOP/image; %.3f in the inference path's Winograd GEMMs)",
                     streams, forwardRate, gflop * forwardRate, gflop, executedGFLOP))
        if sgemmGFLOPS > 0 {
            print(String(format: "  sgemm %d^3: %.0f GFLOP/s -> %.0f images/s for a direct forward at sgemm speed (%.0f with the executed FLOPs)",
                         sgemm, sgemmGFLOPS, bound, sgemmGFLOPS / executedGFLOP))
        }
        print(String(format: "  one image, process start to PNG written (%d runs): median %.3f s, best %.3f s", runs, median(oneTimes), oneTimes.min()!))
        if let defaultTimes {
            print(String(format: "  one image, default model (%@): median %.3f s, best %.3f s", defaultShape, median(defaultTimes), defaultTimes.min()!))
        }
    }
}

/// Multiply-adds x 2 of one generator forward on one image, in GFLOP.
func generatorGFLOPPerImage(size: Int, channels: Int) -> Double {
    var h = size, macs = 0
    for b in DiscoGANModels.generatorBlocks(size: size, channels: channels) {
        macs += b.geometry(batch: 1, height: h, width: h).macs
        h = b.outputSize(h)
    }
    return 2 * Double(macs) / 1e9
}

/// A smooth RGB test pattern: a few random sinusoids per channel plus a gradient.
func patternImage(size: Int, rng: inout Xoshiro256) -> Image {
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

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The 1, 5 and 15 minute load averages.
func loadAverage() -> [Double] {
    guard let s = try? readTextFile("/proc/loadavg") else { return [] }
    return s.split(separator: " ").prefix(3).compactMap { Double($0) }
}

/// The path of the running executable.
func currentExecutable() throws -> String {
    var buf = [CChar](repeating: 0, count: 4097)
    let n = readlink("/proc/self/exe", &buf, 4096)
    if n > 0 { return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    let arg0 = CommandLine.arguments[0]
    guard FileManager.default.isExecutableFile(atPath: arg0) else { throw CLIError("cannot find this executable (/proc/self/exe, \(arg0))") }
    return arg0
}

/// Runs `exe args` as a new process (stdout discarded) and returns the wall seconds from spawn to
/// exit. A failing run throws with its stderr.
func timeProcess(_ exe: String, _ args: [String], root: String) throws -> Double {
    let errPath = root + "/stderr.txt"
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let start = now()
    let rc = posix_spawn(&pid, exe, &actions, nil, argv, environ)
    guard rc == 0 else { throw CLIError("cannot start \(exe): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let wall = now() - start
    let exited = (status & 0x7f) == 0, code = (status >> 8) & 0xff
    guard exited && code == 0 else {
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        throw CLIError("disco \(args.joined(separator: " ")) failed (\(exited ? "exit code \(code)" : "signal \(status & 0x7f)")): \(err.trimmingCharacters(in: .whitespacesAndNewlines))")
    }
    return wall
}
