import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// `disco train` under `mpirun --oversubscribe -np 2` on loopback, against one process, on tiny
/// data (32x32 gray, batch 8). Skipped only where mpirun is not installed (scripts/install-deps.sh
/// installs Open MPI, so `make test` runs them).
final class MPITrainTests: XCTestCase {
    var disco: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("disco").path,
                          dir.deletingLastPathComponent().appendingPathComponent("disco").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    var mpirun: String?
    var root = ""

    override func setUpWithError() throws {
        mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard mpirun != nil else {
            throw XCTSkip("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev, or scripts/install-deps.sh): the 2-rank tests did not run")
        }
        root = NSTemporaryDirectory() + "disco-mpi-\(getpid())-\(name.filter(\.isLetter))"
        try? FileManager.default.removeItem(atPath: root)
        try makeDomain(root + "/data/trainA", count: 12, kind: 0)
        try makeDomain(root + "/data/trainB", count: 12, kind: 1)
    }

    override func tearDown() { if !root.isEmpty { try? FileManager.default.removeItem(atPath: root) } }

    /// 40x36 gray-ish images: domain A dark squares on light, B light discs on dark, moving with i.
    func makeDomain(_ dir: String, count: Int, kind: Int) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for i in 0..<count {
            var img = Image(width: 40, height: 36, channels: 3, value: kind == 0 ? 0.9 : 0.1)
            for y in 0..<36 { for x in 0..<40 {
                let inside = kind == 0 ? (abs(x - 14 - i) < 8 && abs(y - 18) < 7) : ((x - 20) * (x - 20) + (y - 12 - i) * (y - 12 - i) < 80)
                if inside { for c in 0..<3 { img.pixels[(y * 40 + x) * 3 + c] = kind == 0 ? 0.1 + 0.02 * Float(i) : 0.8 + 0.05 * Float(c) } }
            } }
            try encodePNG(img, path: dir + String(format: "/%03d.png", i))
        }
    }

    /// The training options every run here shares.
    func trainArgs(_ run: String, iterations: Int, saveEvery: Int = 1, extra: [String] = []) -> [String] {
        ["train", root + "/data", "--size", "32", "--channels", "1", "--batch", "8", "--iterations", "\(iterations)",
         "--log-every", "1", "--save-every", "\(saveEvery)", "--keep", "0", "--sample-every", "1000", "--seed", "7", "--out", run] + extra
    }

    struct Result { let code: Int32; let out: String; let err: String; let seconds: Double }

    /// Runs a command to its end (at most `timeout` s: then it is killed and the test fails).
    @discardableResult
    func launch(_ exe: String, _ args: [String], timeout: Double = 120, file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        // Containers often forbid the cross-process reads (CMA) shared memory uses for large messages.
        env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        let start = Date()
        try p.run()
        nonisolated(unsafe) var o = Data(), e = Data()
        let readers = DispatchGroup()
        DispatchQueue.global().async(group: readers) { o = out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: readers) { e = err.fileHandleForReading.readDataToEndOfFile() }
        while p.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            XCTFail("\(args.prefix(8).joined(separator: " ")) ... still running after \(timeout) s; killed", file: file, line: line)
        }
        p.waitUntilExit()
        readers.wait()
        return Result(code: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self),
                      seconds: Date().timeIntervalSince(start))
    }

    func mpi(_ np: Int, _ args: [String], expect code: Int32? = 0, file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let r = try launch(mpirun!, ["--allow-run-as-root", "--oversubscribe", "-np", "\(np)", disco] + args, file: file, line: line)
        if let code { XCTAssertEqual(r.code, code, "mpirun -np \(np) disco \(args.joined(separator: " ")):\n\(r.out)\n\(r.err)", file: file, line: line) }
        return r
    }

    func single(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try launch(disco, args, file: file, line: line)
        XCTAssertEqual(r.code, 0, "disco \(args.joined(separator: " ")):\n\(r.out)\n\(r.err)", file: file, line: line)
    }

    /// log.jsonl as [iteration: [term: value]] (losses and D outputs only).
    func losses(_ run: String) throws -> [Int: [String: Double]] {
        var out: [Int: [String: Double]] = [:]
        for line in try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8).split(separator: "\n") {
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            var terms: [String: Double] = [:]
            for (k, v) in obj where StepLosses.Term(rawValue: k) != nil { terms[k] = (v as! NSNumber).doubleValue }
            out[(obj["iter"] as! NSNumber).intValue] = terms
        }
        return out
    }

    func tensors(_ run: String, _ iteration: Int) throws -> [String: [Float]] {
        let f = try Safetensors.read(path: run + String(format: "/checkpoints/iter-%08d/model.safetensors", iteration))
        var out: [String: [Float]] = [:]
        for (name, e) in f.entries { out[name] = e.floats }
        return out
    }

    /// Every loss term of iterations `its` within 1e-4 relative (1e-7 absolute for terms near 0).
    func assertLossesMatch(_ run: String, _ reference: String, _ its: ClosedRange<Int>, file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try losses(run), b = try losses(reference)
        for it in its {
            let x = try XCTUnwrap(a[it], "\(run): no log line for iteration \(it)", file: file, line: line)
            let y = try XCTUnwrap(b[it], file: file, line: line)
            XCTAssertEqual(Set(x.keys), Set(y.keys), file: file, line: line)
            for (k, v) in y {
                XCTAssertEqual(x[k]!, v, accuracy: max(1e-4 * abs(v), 1e-7), "iteration \(it) \(k)", file: file, line: line)
            }
        }
    }

    /// The weights of two checkpoints alike to float32 rounding as Adam amplifies it. Adam divides
    /// each gradient element by its own magnitude, so an element whose gradient is near 0 moves by
    /// up to lr either way on a rounding difference alone: per network, at most `fraction` of the
    /// elements differ by more than 1e-5, none by more than 2 * lr per Adam step taken (`steps`).
    /// (Measured: one process run with 1 and with 2 threads differs in as many elements, as much,
    /// as 2 ranks and 1 process do.) With `statistics`, the running statistics within 1e-3 relative.
    func assertWeightsMatch(_ a: [String: [Float]], _ b: [String: [Float]], fraction: Double, steps: Int, statistics: Bool,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
        for net in ["G_AB", "G_BA", "D_A", "D_B"] {
            var count = 0, apart = 0, worst: Float = 0
            for (name, x) in a where name.hasPrefix(net + ".") {
                guard let y = b[name] else { continue }
                if name.contains("running_") {
                    guard statistics else { continue }
                    for (p, q) in zip(x, y) { XCTAssertEqual(p, q, accuracy: 1e-3 * max(abs(q), 1e-2), name, file: file, line: line) }
                    continue
                }
                for (p, q) in zip(x, y) { count += 1; if abs(p - q) > 1e-5 { apart += 1 }; worst = max(worst, abs(p - q)) }
            }
            XCTAssertGreaterThan(count, 0, file: file, line: line)
            XCTAssertLessThanOrEqual(Double(apart), fraction * Double(count), "\(net): \(apart) of \(count) weights differ by more than 1e-5", file: file, line: line)
            XCTAssertLessThanOrEqual(worst, 2 * 2e-4 * Float(steps) + 1e-6, "\(net): largest difference", file: file, line: line)
        }
    }

    /// Two ranks with --sync-bn against one process, same global batch and seed: every loss term
    /// of the first iterations (D, G, G, D) within 1e-4 relative, the weights after them alike.
    func testSyncBNTwoRanksMatchOneProcess() throws {
        let one = root + "/one", two = root + "/two"
        try single(trainArgs(one, iterations: 4))
        let r = try mpi(2, trainArgs(two, iterations: 4, extra: ["--sync-bn"]))
        XCTAssertTrue(r.out.contains("2 ranks of 4, synchronised batch norm"), r.out)
        try assertLossesMatch(two, one, 1...4)
        // After the first D step and the first G step: a handful of elements (Adam on near-0 gradients).
        for it in [1, 2] { assertWeightsMatch(try tensors(two, it), try tensors(one, it), fraction: 1e-4, steps: 1, statistics: true) }
        // After two Adam steps of each network, more of them (under 1% measured, as with 1 vs 2 threads).
        assertWeightsMatch(try tensors(two, 4), try tensors(one, 4), fraction: 2e-2, steps: 2, statistics: false)
        // Rank 0 alone wrote the run: one log line per iteration.
        XCTAssertEqual(try String(contentsOfFile: two + "/log.jsonl", encoding: .utf8).split(separator: "\n").count, 4)
    }

    /// Without --sync-bn each rank normalises its own half; rank 0's half is the first 4 images of
    /// the global batch, which is what one process with --batch 4 draws first. So after the first
    /// step (whose statistics come from the initial weights) rank 0's running statistics, saved in
    /// the checkpoint, are those of that process. (Both ranks against one process on each half:
    /// DataParallelTests.testWithoutSyncBNEachRankNormalisesItsOwnSlice.)
    func testWithoutSyncBNRank0StatisticsAreItsSlices() throws {
        let half = root + "/half", two = root + "/two"
        try single(trainArgs(half, iterations: 1, extra: ["--batch", "4"]))
        let r = try mpi(2, trainArgs(two, iterations: 1))
        XCTAssertTrue(r.out.contains("per-rank batch norm"), r.out)
        let a = try tensors(two, 1), b = try tensors(half, 1)
        var compared = 0
        // To float rounding: the ranks run their GEMMs on fewer threads, and OpenBLAS kernels whose
        // rounding depends on a row's place (Haswell's on Zen 3) then round some rows differently.
        // Running means within 1e-6 + 1e-6 |mean|: 1e-6 is 1e-5 of the activations' scale (standard
        // deviation under 0.5) times the momentum 0.1, as in DataParallelTests.testSyncBNTwoRanksMatchOneProcess
        // (measured apart: 1.1e-8; a bound relative to the mean alone fails where it is near 0);
        // running variances (about 0.9) within 1e-6 relative.
        for (name, x) in a where name.hasSuffix("running_mean") || name.hasSuffix("running_var") {
            let isMean = name.hasSuffix("running_mean")
            for (p, q) in zip(x, b[name]!) { XCTAssertEqual(p, q, accuracy: (isMean ? 1e-6 : 0) + 1e-6 * abs(q), name) }
            compared += 1
        }
        XCTAssertGreaterThan(compared, 8)
        let whole = root + "/whole"
        try single(trainArgs(whole, iterations: 1))
        // And not those of the whole batch, by far more than that bound (measured: 2.7e-4 apart).
        let wholeMeans = try tensors(whole, 1)["D_B.c2.bn.running_mean"]!
        let apart = zip(a["D_B.c2.bn.running_mean"]!, wholeMeans).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(apart, 1e-4, "D_B.c2.bn.running_mean: rank 0 against the whole batch")
    }

    /// mpirun -np 1 is a plain run: the same checkpoint, bit for bit, and a clean exit.
    func testOneRankIsAPlainRun() throws {
        let plain = root + "/plain", one = root + "/one"
        try single(trainArgs(plain, iterations: 2))
        _ = try mpi(1, trainArgs(one, iterations: 2, extra: ["--sync-bn"]))
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let path = "/checkpoints/iter-00000002/" + file
            XCTAssertEqual(FileManager.default.contents(atPath: one + path), FileManager.default.contents(atPath: plain + path), file)
        }
    }

    /// A 2-rank checkpoint resumed in one process, and a 1-process one resumed on 2 ranks, continue
    /// as the uninterrupted run does (one process, 4 iterations).
    func testResumeAcrossRankCounts() throws {
        let whole = root + "/whole", twoThenOne = root + "/two-one", oneThenTwo = root + "/one-two"
        try single(trainArgs(whole, iterations: 4))
        _ = try mpi(2, trainArgs(twoThenOne, iterations: 2, extra: ["--sync-bn"]))
        try single(trainArgs(twoThenOne, iterations: 4, extra: ["--resume"]))
        try single(trainArgs(oneThenTwo, iterations: 2))
        _ = try mpi(2, trainArgs(oneThenTwo, iterations: 4, extra: ["--sync-bn", "--resume"]))
        for run in [twoThenOne, oneThenTwo] {
            try assertLossesMatch(run, whole, 1...4)
            assertWeightsMatch(try tensors(run, 4), try tensors(whole, 4), fraction: 2e-2, steps: 2, statistics: false)
        }
        // translate reads the 2-rank run's checkpoint in one process.
        try single(["translate", root + "/data/trainA/000.png", "--output", root + "/t.png", "--checkpoint", oneThenTwo])
    }

    /// SIGTERM to one rank: every rank finishes the step, rank 0 saves, the job exits 0.
    func testStopOnOneRankSavesAndAllExitZero() throws {
        let run = root + "/run"
        let (p, out) = try startLongRun(run)
        let rank1 = try XCTUnwrap(rankProcess(of: p.processIdentifier, rank: 1))
        kill(rank1, SIGTERM)
        let code = wait(p, seconds: 60)
        XCTAssertEqual(code, 0, out())
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")
        XCTAssertEqual(ckpts.count, 1, "\(ckpts)")
        XCTAssertTrue(out().contains("--resume"), out())
    }

    /// A rank killed mid-run (SIGKILL): mpirun ends the job with an error, within 30 s.
    func testKilledRankEndsTheJob() throws {
        let (p, out) = try startLongRun(root + "/run")
        let rank1 = try XCTUnwrap(rankProcess(of: p.processIdentifier, rank: 1))
        let killed = Date()
        kill(rank1, SIGKILL)
        let code = wait(p, seconds: 30)
        XCTAssertNotEqual(code, 0, out())
        XCTAssertNotNil(code, "mpirun still running 30 s after a rank was killed")
        XCTAssertLessThan(Date().timeIntervalSince(killed), 30)
        XCTAssertTrue(out().contains("signal 9") || out().contains("Killed"), out())
    }

    /// Set-up mistakes: one message, exit 1. A --batch not divisible by the ranks; ranks given
    /// different settings (mpirun's MPMD form); a rank whose data folder cannot be read.
    func testSetupErrorsAreRefusedOnce() throws {
        var r = try mpi(2, trainArgs(root + "/r1", iterations: 2, extra: ["--batch", "7"]), expect: nil)
        XCTAssertNotEqual(r.code, 0)
        XCTAssertEqual(r.err.components(separatedBy: "--batch 7 is not divisible by the 2 ranks").count, 2, r.err)
        let a = trainArgs(root + "/r2", iterations: 2), b = trainArgs(root + "/r2", iterations: 2, extra: ["--lr", "1e-3"])
        r = try launch(mpirun!, ["--allow-run-as-root", "--oversubscribe", "-np", "1", disco] + a + [":", "-np", "1", disco] + b)
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("do not agree on the settings"), r.err)
        let missing = ["train", root + "/nowhere", root + "/data/trainB"] + Array(a.dropFirst(2))
        try? FileManager.default.removeItem(atPath: root + "/r2")
        r = try launch(mpirun!, ["--allow-run-as-root", "--oversubscribe", "-np", "1", disco] + a + [":", "-np", "1", disco] + missing)
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("rank 1 of 2") && r.err.contains("nowhere"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/r2/checkpoints/iter-00000001"))
    }

    /// A failure on one rank during training (rank 0's writes fail, as on a full disk): it says
    /// so and MPI_Abort ends every rank, within bounded time, instead of leaving them waiting.
    func testAFailureOnOneRankEndsEveryRank() throws {
        let a = trainArgs(root + "/run", iterations: 1000, saveEvery: 1000)
        let r = try launch(mpirun!, ["--allow-run-as-root", "--oversubscribe", "-np", "1", "/usr/bin/env", "DISCO_FAULT_WRITE=6", disco] + a
                           + [":", "-np", "1", disco] + a, timeout: 60)
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("rank 0 of 2") && r.err.contains("DISCO_FAULT_WRITE"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/run/checkpoints/iter-00001000"))
    }

    // MARK: helpers for long runs

    /// Starts a 2-rank run of many iterations and waits until it has logged 3; returns mpirun's
    /// process and a reader of its output so far.
    func startLongRun(_ run: String) throws -> (Process, () -> String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun!)
        p.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "2", disco] + trainArgs(run, iterations: 100_000, saveEvery: 100_000)
        var env = ProcessInfo.processInfo.environment
        env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        p.environment = env
        let log = root + "/mpirun.out"
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle; p.standardError = handle
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning {
            if let text = try? String(contentsOfFile: run + "/log.jsonl", encoding: .utf8), text.split(separator: "\n").count >= 3 { break }
            usleep(50_000)
        }
        return (p, { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" })
    }

    /// The pid of rank `rank` among mpirun's children (its environment says OMPI_COMM_WORLD_RANK).
    func rankProcess(of parent: Int32, rank: Int) -> Int32? {
        guard let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for name in pids {
            guard let pid = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == parent,
                  let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            if env.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }) { return pid }
        }
        return nil
    }

    /// Waits up to `seconds` for p; its exit code, or nil (then it is killed).
    func wait(_ p: Process, seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return nil }
        return p.terminationStatus
    }
}
