import ArgumentParser
import DiscoCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the CPU features, the OpenBLAS kernel set in use, threads and measured sgemm GFLOP/s.",
        discussion: """
        disco chooses OpenBLAS's kernel set from the CPU's features before loading the library \
        (SkylakeX/Cooperlake with AVX-512, Haswell with AVX2). DISCO_BLAS_CORETYPE=NAME overrides \
        the choice; DISCO_THREADS=N sets disco's workers (default: the cores);
        each runs single-threaded GEMMs (DISCO_BLAS_THREADS=N gives each GEMM N OpenBLAS threads). \
        DISCO_CONV=\(ConvAlgorithm.allCases.map(\.rawValue).joined(separator: "|")) chooses how the convolutions run \
        (default auto: what measured fastest per pass, as the README describes);         DISCO_WINOGRAD_SPLIT=\(Winograd.Split.allCases.map(\.rawValue).joined(separator: "|")) how Winograd         shares a pass between the workers (default auto).
        """)

    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: "sgemm size n for the n^3 measurement (4096 takes about a second).") var sgemmSize = 4096

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        // Under mpirun: the rank count (rank 0 prints); otherwise whether Open MPI could be used.
        let mpi: String, ranks: Int
        if MPICommunicator.launchedByMPI() {
            let group = try Processes.current()
            defer { group.finish() }
            guard group.isRoot else { return }
            mpi = "\(group.name): \(group.size) ranks (this is rank 0)"; ranks = group.size
        } else if let path = MPICommunicator.libraryPath() {
            mpi = "Open MPI available (\(path)); not started by mpirun: 1 process"; ranks = 1
        } else {
            mpi = "not installed (apt-get install openmpi-bin libopenmpi-dev for mpirun -np N disco train): 1 process"; ranks = 1
        }
        try report(mpi: mpi, ranks: ranks)
    }

    func report(mpi: String, ranks: Int) throws {
        threadOptions.apply()
        let blas = try loadBLASOrExplain()
        let gflops = Benchmark.sgemmGFLOPS(n: sgemmSize)
        // Whether --bf16 would work (tried, then put back to float32), and what DISCO_GEMM asks for.
        let requested = BLAS.precisionFromEnvironment()
        var bf16: String
        do {
            try blas.setGEMMPrecision(.bf16)
            bf16 = "available (cblas_sbgemm from \(BLAS.bf16Library ?? "?"))"
        } catch { bf16 = "unavailable: \(error)" }
        try blas.setGEMMPrecision(.float32)
        let info: [String: Any] = [
            "cpu": blas.cpu.modelName,
            "cpu_features": blas.cpu.relevant,
            "avx512": blas.cpu.avx512,
            "blas_library": blas.path,
            "blas_requested_coretype": blas.requestedCoreType ?? "none",
            "blas_choice_source": blas.coreTypeSource,
            "blas_core": blas.coreName,
            "blas_config": blas.config,
            "blas_threads": blas.threads,
            "disco_threads": Parallel.threads,
            "disco_pool": Parallel.usesPool, "disco_spin_us": Parallel.spinMicroseconds,
            "conv_algorithm": Conv.algorithm.rawValue,
            "winograd_split": Winograd.split.rawValue,
            "gemm_precision_requested": requested.rawValue, "bf16": bf16,
            "sgemm_n": sgemmSize,
            "sgemm_gflops": gflops,
            "mpi": mpi, "mpi_ranks": ranks,
        ]
        if json { print(jsonString(info)); return }
        print("""
        CPU:            \(blas.cpu.modelName)
        features:       \(blas.cpu.relevant.joined(separator: " "))
        OpenBLAS:       \(blas.path) (\(blas.config))
        kernel set:     \(blas.coreName) (requested \(blas.requestedCoreType ?? "none"), by \(blas.coreTypeSource))
        threads:        disco \(Parallel.threads) workers (\(Parallel.usesPool ? "disco's pool, awake \(Parallel.spinMicroseconds) us after a region" : "Dispatch: DISCO_POOL=0")), OpenBLAS \(blas.threads) per GEMM
        convolutions:   \(Conv.algorithm.rawValue) (DISCO_CONV: \(ConvAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))
        winograd split: \(Winograd.split.rawValue) (DISCO_WINOGRAD_SPLIT: \(Winograd.Split.allCases.map(\.rawValue).joined(separator: ", ")))
        GEMMs:          \(requested.rawValue) for train, translate and bench (DISCO_GEMM or --bf16: float32, bf16); bf16 \(bf16)
        MPI:            \(mpi)
        sgemm \(sgemmSize)^3:   \(String(format: "%.1f", gflops)) GFLOP/s (OpenBLAS, \(Parallel.threads) threads)
        """)
    }
}
