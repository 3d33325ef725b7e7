#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import _CKernels

/// OpenBLAS, loaded at run time so that its kernel set can be chosen first.
///
/// Debian's OpenBLAS is built with DYNAMIC_ARCH: it picks a kernel set (Haswell, SkylakeX, ...)
/// once, while the library loads, from `OPENBLAS_CORETYPE` or its own CPU detection. It does not
/// recognise every CPU, and some environments preset `OPENBLAS_CORETYPE=Haswell`. disco therefore
/// does not link OpenBLAS: it reads the CPU's features, sets `OPENBLAS_CORETYPE` to the fastest
/// kernel set they allow, and only then `dlopen`s the library.
///
/// `DISCO_BLAS_CORETYPE=NAME` overrides the automatic choice (any name OpenBLAS knows: Haswell,
/// SkylakeX, Cooperlake, Zen, ...).
///
/// Threads: disco splits each convolution's batch between its own workers (`Parallel`), and each
/// worker calls a single-threaded sgemm; so OpenBLAS is loaded with one thread and starts no
/// thread pool of its own (whose threads would spin, between GEMMs, on the cores disco's loops
/// need). `DISCO_BLAS_THREADS=N` gives OpenBLAS N threads per call instead; `withThreads` does so
/// for a while (the sgemm reference figure uses all cores this way).
public final class BLAS: @unchecked Sendable {
    public enum LoadError: Error, CustomStringConvertible {
        case notFound(tried: [String], dlerror: String)
        case missingSymbol(String, library: String)
        case unsupportedCoreType(String, cpu: String)

        public var description: String {
            switch self {
            case let .notFound(tried, err):
                return "OpenBLAS not found (tried \(tried.joined(separator: ", ")): \(err)). "
                    + "Install it with: apt-get install libopenblas0-pthread"
            case let .missingSymbol(sym, lib):
                return "\(lib) has no symbol \(sym): it is not OpenBLAS. Install libopenblas0-pthread."
            case let .unsupportedCoreType(ct, cpu):
                return "DISCO_BLAS_CORETYPE=\(ct) needs AVX-512, which this CPU (\(cpu)) does not have; "
                    + "unset it to let disco choose, or name a kernel set such as Haswell"
            }
        }
    }

    /// The CPU features that decide the kernel set, read from /proc/cpuinfo.
    public struct CPUFeatures: Sendable {
        public let flags: Set<String>
        public let modelName: String
        public var avx2: Bool { flags.contains("avx2") && flags.contains("fma") }
        public var avx512: Bool { ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy(flags.contains) }
        public var avx512bf16: Bool { flags.contains("avx512_bf16") }
        /// The features worth reporting, in a fixed order.
        public var relevant: [String] {
            ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "amx_tile"].filter(flags.contains)
        }

        public static func current() -> CPUFeatures {
            var flags = Set<String>()
            var model = "unknown"
            if let text = try? readTextFile("/proc/cpuinfo") {
                for line in text.split(separator: "\n") {
                    if flags.isEmpty, line.hasPrefix("flags") || line.hasPrefix("Features"),
                       let colon = line.firstIndex(of: ":") {
                        flags = Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
                    }
                    if model == "unknown", line.hasPrefix("model name"), let colon = line.firstIndex(of: ":") {
                        model = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
                    }
                }
            }
            return CPUFeatures(flags: flags, modelName: model)
        }
    }

    /// The OpenBLAS kernel set that is fastest on a CPU with these features.
    public static func bestCoreType(for cpu: CPUFeatures) -> String? {
        if cpu.avx512 { return cpu.avx512bf16 ? "Cooperlake" : "SkylakeX" }
        if cpu.avx2 { return "Haswell" }
        if cpu.flags.contains("avx") { return "Sandybridge" }
        return nil
    }

    public typealias SgemmFn = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                               UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
                                               Float, UnsafeMutablePointer<Float>?, Int32) -> Void

    public let path: String
    public let cpu: CPUFeatures
    /// What we asked for in OPENBLAS_CORETYPE, and why.
    public let requestedCoreType: String?
    public let coreTypeSource: String
    private let sgemmFn: SgemmFn
    private let setThreadsFn: (@convention(c) (Int32) -> Void)?
    private let getThreadsFn: (@convention(c) () -> Int32)?
    private let coreNameFn: (@convention(c) () -> UnsafePointer<CChar>?)?
    private let configFn: (@convention(c) () -> UnsafePointer<CChar>?)?
    /// LAPACK's dsyev_ (OpenBLAS bundles LAPACK); nil if this library lacks it.
    private let dsyevFn: DsyevFn?

    private static let loaded: Result<BLAS, any Error> = Result { try BLAS() }

    /// Loads OpenBLAS (once) and returns it, or the reason it cannot be loaded.
    public static func load() throws -> BLAS { try loaded.get() }

    /// The loaded library; stops the process with the install hint if OpenBLAS is missing.
    public static var shared: BLAS {
        switch loaded {
        case .success(let b): return b
        case .failure(let e): fatalError("\(e)")
        }
    }

    /// The kernel set and thread variables OpenBLAS will read, decided and set (setenv) once.
    struct Setup {
        let cpu: CPUFeatures
        let requestedCoreType: String?
        let source: String
    }

    private static let setup: Result<Setup, LoadError> = {
        let cpu = CPUFeatures.current()
        let env = ProcessInfoLite.environment
        let requested: String?, source: String
        if let mine = env["DISCO_BLAS_CORETYPE"], !mine.isEmpty {
            let avx512Kernels = ["skylakex", "cooperlake", "sapphirerapids"]
            if avx512Kernels.contains(mine.lowercased()) && !cpu.avx512 {
                return .failure(LoadError.unsupportedCoreType(mine, cpu: cpu.modelName))
            }
            requested = mine
            source = "DISCO_BLAS_CORETYPE"
        } else if let best = BLAS.bestCoreType(for: cpu) {
            requested = best
            source = "auto (\(cpu.relevant.joined(separator: " ")))"
        } else {
            requested = env["OPENBLAS_CORETYPE"]
            source = "OpenBLAS's own detection"
        }
        if let ct = requested { setenv("OPENBLAS_CORETYPE", ct, 1) }
        let blasThreads = env["DISCO_BLAS_THREADS"].flatMap { Int($0) }.map { max(1, $0) } ?? 1
        setenv("OPENBLAS_NUM_THREADS", String(blasThreads), 1)
        setenv("OMP_NUM_THREADS", String(blasThreads), 1)
        return .success(Setup(cpu: cpu, requestedCoreType: requested, source: source))
    }()

    /// Sets OpenBLAS's environment variables now, on this thread, without loading the library.
    /// setenv must not run while another thread reads the environment, so a program that loads
    /// OpenBLAS on a background thread calls this first, before it starts other threads.
    public static func prepareEnvironment() { _ = setup }

    /// Starts loading OpenBLAS (dlopen) on another core and returns at once, so that the library
    /// loads while the caller reads a model; `load()` then waits for it. The environment is set on
    /// this thread first (see `prepareEnvironment`), as is `Parallel.threads`.
    public static func loadInBackground() {
        _ = Parallel.threads
        prepareEnvironment()
        DispatchQueue.global(qos: .userInitiated).async { _ = try? BLAS.load() }
    }

    private init() throws {
        let setup = try BLAS.setup.get()
        cpu = setup.cpu
        requestedCoreType = setup.requestedCoreType
        coreTypeSource = setup.source

        let candidates = [
            "libopenblas.so.0",
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
            "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
            "libopenblas.so",
        ]
        var handle: UnsafeMutableRawPointer?
        var usedPath = ""
        var lastError = ""
        for c in candidates {
            if let h = dlopen(c, RTLD_NOW | RTLD_GLOBAL) { handle = h; usedPath = c; break }
            lastError = dlerror().map { String(cString: $0) } ?? "unknown error"
        }
        guard let handle else { throw LoadError.notFound(tried: candidates, dlerror: lastError) }
        path = usedPath
        func sym<T>(_ name: String, _ type: T.Type) -> T? {
            guard let p = dlsym(handle, name) else { return nil }
            return unsafeBitCast(p, to: type)
        }
        guard let sg = sym("cblas_sgemm", SgemmFn.self) else { throw LoadError.missingSymbol("cblas_sgemm", library: usedPath) }
        sgemmFn = sg
        setThreadsFn = sym("openblas_set_num_threads", (@convention(c) (Int32) -> Void).self)
        getThreadsFn = sym("openblas_get_num_threads", (@convention(c) () -> Int32).self)
        coreNameFn = sym("openblas_get_corename", (@convention(c) () -> UnsafePointer<CChar>?).self)
        configFn = sym("openblas_get_config", (@convention(c) () -> UnsafePointer<CChar>?).self)
        dsyevFn = sym("dsyev_", DsyevFn.self)
    }

    /// The kernel set OpenBLAS actually runs (its own name for it, e.g. "Haswell", "SkylakeX").
    public var coreName: String { coreNameFn?().map { String(cString: $0) } ?? "unknown" }
    public var config: String { configFn?().map { String(cString: $0) } ?? "unknown" }
    public var threads: Int {
        get { Int(getThreadsFn?() ?? 1) }
        set { setThreadsFn?(Int32(newValue)) }
    }

    /// Runs `body` with OpenBLAS using `n` threads per call, then restores the count.
    public func withThreads<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        let before = threads
        threads = n
        defer { threads = before }
        return try body()
    }

    /// The convolutions' GEMM: `sgemm`, or under `GEMMPrecision.bf16` the same product with A and B
    /// rounded to bfloat16 first (OpenBLAS's sbgemm, float32 sums; see `setGEMMPrecision`).
    /// `roundedB`: B already rounded (`roundToBF16`, row stride ldb), for a B that many products
    /// share (Winograd's transformed weights); only A is rounded then. Ignored in float32.
    @inline(__always)
    public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                     alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int, roundedB: UnsafePointer<UInt16>? = nil,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard let sb = BLAS.bf16GEMM else {
            return sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                         beta: beta, c: c, ldc: ldc)
        }
        if let roundedB {
            dc_sbgemm_f32_bf16b(sb, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, roundedB, ldb, beta, c, ldc)
        } else {
            dc_sbgemm_f32(sb, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
    }

    /// y[i] = x[i] rounded to bfloat16 (`dc_to_bf16`) for i < n, in parallel over disco's workers.
    public static func roundToBF16(_ y: UnsafeMutablePointer<UInt16>, _ x: UnsafePointer<Float>, count n: Int) {
        Parallel.forRanges(n, grain: 1 << 16) { r in dc_to_bf16(y + r.lowerBound, x + r.lowerBound, r.count) }
    }

    /// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, all row-major.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored (before op).
    @inline(__always)
    public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                      alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        sgemmFn(101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

// MARK: bfloat16 GEMMs

/// The number format the convolutions' GEMMs multiply in. `bf16` rounds both factors to bfloat16
/// (8 significant bits against float32's 24) and sums in float32: on a CPU with AVX512-BF16 the
/// multiply runs about twice as fast. Everything else (transforms, batch norm, the optimizer, the
/// weights themselves) stays float32.
public enum GEMMPrecision: String, CaseIterable, Sendable {
    case float32, bf16
}

extension BLAS {
    public struct BF16Error: Error, CustomStringConvertible {
        public let description: String
    }

    /// OpenBLAS's cblas_sbgemm once `setGEMMPrecision(.bf16)` found it; nil: the GEMMs run in float32.
    /// Changed only between passes (a command sets it once, before it computes anything).
    nonisolated(unsafe) static var bf16GEMM: dc_sbgemm_fn?
    /// The library cblas_sbgemm came from.
    nonisolated(unsafe) public private(set) static var bf16Library: String?

    /// DISCO_GEMM: float32 (unset) or bf16.
    public static func precisionFromEnvironment() -> GEMMPrecision { ProcessInfoLite.choice("DISCO_GEMM", default: .float32) }

    /// The present precision of `gemm`.
    public static var gemmPrecision: GEMMPrecision { bf16GEMM == nil ? .float32 : .bf16 }

    /// Where `setGEMMPrecision` looks for an OpenBLAS with cblas_sbgemm when the loaded one lacks it
    /// (Debian's is built without bfloat16): $DISCO_SBGEMM_LIBRARY, else
    /// .deps/openblas-bf16/libopenblas.so (what `make openblas-bf16` builds) in the working
    /// folder or in a folder above the executable.
    public static func sbgemmCandidates() -> [String] {
        if let p = ProcessInfoLite.environment["DISCO_SBGEMM_LIBRARY"], !p.isEmpty { return [p] }
        let rel = ".deps/openblas-bf16/libopenblas.so"
        var out: [String] = []
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            var dir = String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            for _ in 0..<5 {
                guard let slash = dir.lastIndex(of: "/"), slash != dir.startIndex else { break }
                dir = String(dir[..<slash])
                out.append(dir + "/" + rel)
            }
        }
        return out + [rel]  // the executable's own checkout first, the working folder's last
    }

    /// Whether the loaded OpenBLAS itself has cblas_sbgemm (Debian's does not).
    public var hasOwnSbgemm: Bool { sbgemmSymbol(dlopen(nil, RTLD_NOW)) != nil }

    /// Switches `gemm` to bfloat16 (`precision` .bf16) or back to float32. cblas_sbgemm comes from
    /// the loaded OpenBLAS if it has it, else from the first of `sbgemmCandidates` that exists,
    /// loaded beside it (its own symbols bound first, one thread). Throws, naming what to do, when
    /// none has it, or when the CPU lacks AVX512-BF16 (there OpenBLAS's bfloat16 kernels are slower
    /// than float32; `requireHardware: false` allows it, for tests).
    public func setGEMMPrecision(_ precision: GEMMPrecision, requireHardware: Bool = true) throws {
        guard precision == .bf16 else { BLAS.bf16GEMM = nil; BLAS.bf16Library = nil; return }
        if requireHardware && !cpu.avx512bf16 {
            throw BF16Error(description: "bf16: this CPU (\(cpu.modelName)) has no AVX512-BF16, so bfloat16 GEMMs would run slower "
                                + "than float32 ones; leave bf16 off on it")
        }
        if let fn = sbgemmSymbol(dlopen(nil, RTLD_NOW)) {  // the loaded OpenBLAS (RTLD_GLOBAL) has it
            BLAS.bf16GEMM = fn; BLAS.bf16Library = path; return
        }
        let tried = BLAS.sbgemmCandidates()
        var errors: [String] = []
        for c in tried {
            // A bare name is for the loader's search path; a path must exist.
            guard !c.contains("/") || access(c, R_OK) == 0 else { errors.append("\(c): not found"); continue }
            // RTLD_DEEPBIND: the second OpenBLAS's calls to its own functions stay inside it.
            guard let h = dlopen(c, RTLD_NOW | RTLD_LOCAL | 0x00008) else {
                errors.append("\(c): \(dlerror().map { String(cString: $0) } ?? "cannot be loaded")"); continue
            }
            guard let fn = sbgemmSymbol(h) else { dlclose(h); errors.append("\(c): no cblas_sbgemm"); continue }
            if let set = dlsym(h, "openblas_set_num_threads") {
                unsafeBitCast(set, to: (@convention(c) (Int32) -> Void).self)(1)
            }
            BLAS.bf16GEMM = fn
            if let full = realpath(c, nil) {
                BLAS.bf16Library = String(cString: full)
                free(full)
            } else { BLAS.bf16Library = c }
            return
        }
        throw BF16Error(description: "bf16: \(path) has no cblas_sbgemm (Debian builds OpenBLAS without bfloat16), "
                            + "and no OpenBLAS with it was found (\(errors.joined(separator: "; "))). Build one with "
                            + "`make openblas-bf16` in disco's folder, or set DISCO_SBGEMM_LIBRARY to a libopenblas.so built "
                            + "with BUILD_BFLOAT16=1")
    }

    private func sbgemmSymbol(_ handle: UnsafeMutableRawPointer?) -> dc_sbgemm_fn? {
        guard let handle, let p = dlsym(handle, "cblas_sbgemm") else { return nil }
        return unsafeBitCast(p, to: dc_sbgemm_fn.self)
    }
}

extension BLAS {
    /// LAPACK dsyev_ (Fortran: every argument by reference, 32-bit integers as in Debian's
    /// libopenblas0, then the hidden lengths of the two character arguments).
    public typealias DsyevFn = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>,
                                               UnsafeMutablePointer<Double>, UnsafePointer<Int32>, UnsafeMutablePointer<Double>,
                                               UnsafeMutablePointer<Double>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>,
                                               Int, Int) -> Void

    public struct LAPACKError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Eigenvalues (ascending) and orthonormal eigenvectors of the symmetric n x n matrix `a`
    /// (row-major, n * n values; only its lower triangle in row-major terms is read), by LAPACK's
    /// dsyev in Float64. `vectors` is n * n row-major with row i the unit eigenvector of
    /// `values[i]` (LAPACK's column i: column-major storage read row-major is its transpose).
    public func symmetricEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(n >= 1 && a.count == n * n, "symmetricEigen: \(a.count) values for n = \(n)")
        guard let dsyev = dsyevFn else {
            throw LAPACKError(description: "\(path) has no LAPACK dsyev_; install Debian's libopenblas0-pthread, which bundles LAPACK")
        }
        var m = a, w = [Double](repeating: 0, count: n), info: Int32 = 0
        var nn = Int32(n), lda = Int32(n), lwork: Int32 = -1, query = [0.0]
        // Workspace query, then the decomposition. LAPACK sees our row-major array as its
        // transpose, the same matrix: "U" reads its upper triangle, our lower one.
        "V".withCString { jobz in "U".withCString { uplo in
            dsyev(jobz, uplo, &nn, &m, &lda, &w, &query, &lwork, &info, 1, 1)
        } }
        guard info == 0 else { throw LAPACKError(description: "dsyev workspace query failed (info \(info))") }
        lwork = Int32(max(query[0], Double(3 * n)))
        var work = [Double](repeating: 0, count: Int(lwork))
        "V".withCString { jobz in "U".withCString { uplo in
            dsyev(jobz, uplo, &nn, &m, &lda, &w, &work, &lwork, &info, 1, 1)
        } }
        guard info == 0 else {
            throw LAPACKError(description: info < 0 ? "dsyev: argument \(-info) is invalid"
                                                   : "dsyev did not converge (\(info) off-diagonal elements left); the matrix may hold NaN or infinite values")
        }
        return (w, m)
    }
}

/// The process environment, without Foundation.
enum ProcessInfoLite {
    static var environment: [String: String] {
        var result: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { result[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return result
    }

    /// Environment variable `name` as one of `T`'s cases (any case); unset or empty means
    /// `fallback`; any other value is reported on stderr and ignored.
    static func choice<T: RawRepresentable & CaseIterable>(_ name: String, default fallback: T) -> T where T.RawValue == String {
        guard let s = environment[name], !s.isEmpty else { return fallback }
        if let v = T(rawValue: s.lowercased()) { return v }
        fputs("disco: \(name)=\(s) is not one of \(T.allCases.map(\.rawValue).joined(separator: ", ")); using \(fallback.rawValue)\n", stderr)
        return fallback
    }

    /// Environment variable `name` as a whole number >= `minimum`; unset or empty means `fallback`
    /// (nil: the caller's default); any other value is reported on stderr and ignored.
    static func number(_ name: String, minimum: Int, default fallback: Int?) -> Int? {
        guard let s = environment[name], !s.isEmpty else { return fallback }
        if let n = Int(s), n >= minimum { return n }
        fputs("disco: \(name)=\(s) is not a whole number >= \(minimum); using \(fallback.map(String.init) ?? "the default")\n", stderr)
        return fallback
    }
}

/// Reads a whole file as UTF-8 text (works for /proc files, whose size reads as 0).
public func readTextFile(_ path: String) throws -> String {
    guard let f = fopen(path, "r") else { throw FileError(path: path, message: String(cString: strerror(errno))) }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
        if n < chunk.count { break }
    }
    return String(decoding: bytes, as: UTF8.self)
}

public struct FileError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

extension Substring {
    func trimmingCharacters(in chars: String) -> String {
        var s = self
        while let f = s.first, chars.contains(f) { s.removeFirst() }
        while let l = s.last, chars.contains(l) { s.removeLast() }
        return String(s)
    }
}
