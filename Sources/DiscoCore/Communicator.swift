#if canImport(Glibc)
import Glibc
#endif

/// The processes a data-parallel run is split over, and the collective operations they use.
///
/// A plain run is one process (`SingleProcess`: every operation is the identity). Under `mpirun`
/// each process is one rank of MPI_COMM_WORLD (`MPICommunicator`). Every rank must make the same
/// collective calls in the same order, with the same counts: a call only some ranks make waits
/// for ever (or until mpirun ends the job), so work done by rank 0 alone (samples, reports,
/// checkpoints) must make none.
public protocol Communicator: AnyObject {
    /// This process's rank, 0..<size.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }
    /// What it is, for `disco info` and logs ("single process", "Open MPI (libmpi.so.40)").
    var name: String { get }
    /// Replaces buffer[0..<count] on every rank by the sum over ranks (MPI_Allreduce, MPI_SUM).
    /// Every rank receives the same sums.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// The element-wise minimum and maximum over ranks of `values` (the same count on every rank).
    func allReduceMin(_ values: [Int64]) -> [Int64]
    func allReduceMax(_ values: [Int64]) -> [Int64]
    /// Ends every rank of the job with `code` (MPI_Abort); a single process exits.
    func abort(code: Int32) -> Never
    /// Leaves the group cleanly (MPI_Finalize) before the process exits; after it, no collective.
    func finish()
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }
    public func allReduceSum(_ values: inout [Double]) {
        let n = values.count
        values.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: n) }
    }
    public func allReduceSum(_ values: inout [Float]) {
        let n = values.count
        values.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: n) }
    }

    /// Runs `body` (set-up: no collective call inside) on every rank, then agrees on the outcome
    /// (a collective call): if it failed on any rank, the lowest failing rank prints its error
    /// ("Error: rank R of N: ...", or plain "Error: ..." on rank 0) and every rank throws
    /// `SetupFailedOnSomeRank`: one message for the mistakes every rank makes alike (a bad
    /// option, a missing checkpoint). A single process just runs `body`, its error unchanged.
    public func onEveryRank<T>(_ body: () throws -> T) throws -> T {
        guard size > 1 else { return try body() }
        let result: Result<T, Error> = Result { try body() }
        let failed: Bool
        if case .failure = result { failed = true } else { failed = false }
        let first = allReduceMin([Int64(failed ? rank : size)])[0]
        guard first == Int64(size) else {
            if case .failure(let e) = result, first == Int64(rank) {
                FileWriter.printError("Error: " + (rank == 0 ? "" : "rank \(rank) of \(size): ") + "\(e)")
            }
            throw SetupFailedOnSomeRank()
        }
        return try result.get()
    }
}

/// `Communicator.onEveryRank`'s set-up failed on some rank; the lowest such rank has printed why.
public struct SetupFailedOnSomeRank: Error {}

/// One process: nothing to exchange.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var name: String { "single process" }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allReduceMin(_ values: [Int64]) -> [Int64] { values }
    public func allReduceMax(_ values: [Int64]) -> [Int64] { values }
    public func abort(code: Int32) -> Never { exit(code) }
    public func finish() {}
}

/// MPI_COMM_WORLD of Open MPI, loaded at run time.
///
/// disco does not link libmpi: `world()` `dlopen`s it (RTLD_NOW | RTLD_GLOBAL, as Open MPI's own
/// plugins need its symbols) only when the process was started by `mpirun` (Open MPI sets
/// `OMPI_COMM_WORLD_SIZE`, PMIx `PMIX_RANK`), so a plain run needs no MPI installed and behaves
/// exactly as without it. The handles are Open MPI's predefined objects (`MPI_COMM_WORLD` is
/// `&ompi_mpi_comm_world`, `MPI_FLOAT` is `&ompi_mpi_float`, ...), found with `dlsym`: this ties
/// the binding to Open MPI's ABI (libmpi.so.40, Open MPI 3.x to 5.x), which is what Debian ships.
/// MPI_Init is called on the main thread and every MPI call is made from it.
public final class MPICommunicator: Communicator {
    public enum LoadError: Error, CustomStringConvertible {
        case notFound(tried: [String], dlerror: String)
        case missingSymbol(String, library: String)
        case initFailed(Int32)

        public var description: String {
            switch self {
            case let .notFound(tried, err):
                return "started by mpirun, but Open MPI's library cannot be loaded (tried \(tried.joined(separator: ", ")): \(err)); "
                    + "install it with: apt-get install openmpi-bin libopenmpi-dev (scripts/install-deps.sh), or run disco without mpirun"
            case let .missingSymbol(sym, lib):
                return "\(lib) has no symbol \(sym): disco's MPI support needs Open MPI (libmpi.so.40); install openmpi-bin"
            case let .initFailed(code):
                return "MPI_Init failed with error \(code)"
            }
        }
    }

    typealias Handle = UnsafeMutableRawPointer
    typealias AllreduceFn = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle?, Handle?, Handle?) -> Int32

    public let rank: Int
    public let size: Int
    public let path: String
    public var name: String { "Open MPI (\(path))" }
    private let allreduceFn: AllreduceFn
    private let abortFn: @convention(c) (Handle?, Int32) -> Int32
    private let finalizeFn: @convention(c) () -> Int32
    private let world: Handle, float: Handle, double: Handle, int64: Handle
    private let opSum: Handle, opMin: Handle, opMax: Handle
    private var finished = false
    /// MPI_IN_PLACE in Open MPI's mpi.h.
    private static let inPlace = UnsafeRawPointer(bitPattern: 1)

    /// Whether this process was started by mpirun (or another PMIx launcher).
    public static func launchedByMPI(environment: [String: String]? = nil) -> Bool {
        let env = environment ?? ProcessInfoLite.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    /// The ranks on this machine, as mpirun says (`OMPI_COMM_WORLD_LOCAL_SIZE`), or nil.
    public static func localRanks(environment: [String: String]? = nil) -> Int? {
        let env = environment ?? ProcessInfoLite.environment
        return env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) }.map { Swift.max(1, $0) }
    }

    static let candidates = ["libmpi.so.40", "/usr/lib/x86_64-linux-gnu/libmpi.so.40",
                             "/usr/lib/aarch64-linux-gnu/libmpi.so.40", "libmpi.so"]

    /// Whether libmpi can be loaded (for `disco info`), without initialising MPI.
    public static func libraryPath() -> String? {
        for c in candidates {
            if let h = dlopen(c, RTLD_LAZY | RTLD_LOCAL) {
                dlclose(h)
                return c
            }
        }
        return nil
    }

    private init() throws {
        var handle: UnsafeMutableRawPointer?
        var used = "", lastError = ""
        for c in MPICommunicator.candidates {
            if let h = dlopen(c, RTLD_NOW | RTLD_GLOBAL) { handle = h; used = c; break }
            lastError = dlerror().map { String(cString: $0) } ?? "unknown error"
        }
        guard let handle else { throw LoadError.notFound(tried: MPICommunicator.candidates, dlerror: lastError) }
        path = used
        func sym(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let p = dlsym(handle, name) else { throw LoadError.missingSymbol(name, library: used) }
            return p
        }
        func fn<T>(_ name: String, _ type: T.Type) throws -> T { unsafeBitCast(try sym(name), to: type) }
        let initFn = try fn("MPI_Init", (@convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32).self)
        let initializedFn = try fn("MPI_Initialized", (@convention(c) (UnsafeMutablePointer<Int32>) -> Int32).self)
        let rankFn = try fn("MPI_Comm_rank", (@convention(c) (Handle?, UnsafeMutablePointer<Int32>) -> Int32).self)
        let sizeFn = try fn("MPI_Comm_size", (@convention(c) (Handle?, UnsafeMutablePointer<Int32>) -> Int32).self)
        allreduceFn = try fn("MPI_Allreduce", AllreduceFn.self)
        abortFn = try fn("MPI_Abort", (@convention(c) (Handle?, Int32) -> Int32).self)
        finalizeFn = try fn("MPI_Finalize", (@convention(c) () -> Int32).self)
        world = try sym("ompi_mpi_comm_world")
        float = try sym("ompi_mpi_float"); double = try sym("ompi_mpi_double"); int64 = try sym("ompi_mpi_int64_t")
        opSum = try sym("ompi_mpi_op_sum"); opMin = try sym("ompi_mpi_op_min"); opMax = try sym("ompi_mpi_op_max")
        var flag: Int32 = 0
        _ = initializedFn(&flag)
        if flag == 0 {
            let rc = initFn(nil, nil)
            guard rc == 0 else { throw LoadError.initFailed(rc) }
        }
        var r: Int32 = 0, s: Int32 = 0
        _ = rankFn(world, &r); _ = sizeFn(world, &s)
        rank = Int(r); size = Int(s)
    }

    // Errors of collective calls stop the job (MPI_ERRORS_ARE_FATAL, MPI_COMM_WORLD's default), so
    // the return codes below are always 0.
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        reduceInPlace(buffer, count, float, opSum)
    }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        reduceInPlace(buffer, count, double, opSum)
    }
    public func allReduceMin(_ values: [Int64]) -> [Int64] { reduce(values, opMin) }
    public func allReduceMax(_ values: [Int64]) -> [Int64] { reduce(values, opMax) }

    private func reduce(_ values: [Int64], _ op: Handle) -> [Int64] {
        var v = values
        v.withUnsafeMutableBufferPointer { reduceInPlace($0.baseAddress!, $0.count, int64, op) }
        return v
    }

    /// MPI counts are 32-bit: larger buffers go in pieces of at most 2^30 elements.
    private func reduceInPlace<T>(_ buffer: UnsafeMutablePointer<T>, _ count: Int, _ type: Handle, _ op: Handle) {
        precondition(!finished, "MPICommunicator: collective call after finish()")
        var done = 0
        while done < count {
            let n = Swift.min(count - done, 1 << 30)
            _ = allreduceFn(MPICommunicator.inPlace, buffer + done, Int32(n), type, op, world)
            done += n
        }
    }

    public func abort(code: Int32) -> Never {
        _ = abortFn(world, code)
        exit(code)
    }

    public func finish() {
        guard !finished else { return }
        finished = true
        _ = finalizeFn()
    }

    nonisolated(unsafe) private static var shared: Result<MPICommunicator, any Error>?

    /// MPI_COMM_WORLD, initialised once (on the calling thread, which must make every later call).
    public static func world() throws -> MPICommunicator {
        if let shared { return try shared.get() }
        let r = Result<MPICommunicator, any Error> { try MPICommunicator() }
        shared = r
        return try r.get()
    }
}

public enum Processes {
    /// The group this process belongs to: MPI_COMM_WORLD under mpirun, else a single process.
    public static func current() throws -> Communicator {
        MPICommunicator.launchedByMPI() ? try MPICommunicator.world() : SingleProcess()
    }
}

/// Another communicator, with the bytes and the time of its all-reduces counted (`disco bench allreduce`).
public final class MeasuredCommunicator: Communicator {
    public let base: Communicator
    /// Bytes all-reduced (each call's buffer, counted once), calls, and seconds spent in them.
    public private(set) var bytes = 0, calls = 0
    public private(set) var seconds = 0.0
    public init(_ base: Communicator) { self.base = base }
    public var rank: Int { base.rank }
    public var size: Int { base.size }
    public var name: String { base.name }
    public func reset() { bytes = 0; calls = 0; seconds = 0 }

    private func timed<T>(_ n: Int, _ body: () -> T) -> T {
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let r = body()
        clock_gettime(CLOCK_MONOTONIC, &t1)
        seconds += Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) * 1e-9
        bytes += n; calls += 1
        return r
    }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { timed(count * 4) { base.allReduceSum(buffer, count: count) } }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { timed(count * 8) { base.allReduceSum(buffer, count: count) } }
    public func allReduceMin(_ values: [Int64]) -> [Int64] { timed(values.count * 8) { base.allReduceMin(values) } }
    public func allReduceMax(_ values: [Int64]) -> [Int64] { timed(values.count * 8) { base.allReduceMax(values) } }
    public func abort(code: Int32) -> Never { base.abort(code: code) }
    public func finish() { base.finish() }
}
