import ArgumentParser
import DiscoCore
import DiscoGAN
import Foundation

extension ModelVariant: ExpressibleByArgument {}
extension AdversarialLoss: ExpressibleByArgument {}
extension ReconstructionLoss: ExpressibleByArgument {}
extension Direction: ExpressibleByArgument {}

/// Image geometry shared by the subcommands that build a model.
struct ModelShapeOptions: ParsableArguments {
    @Option(help: "Image size the networks work at: 32, 64 (the reference) or 128.")
    var size = 64
    @Option(help: "Image channels: 1 (gray) or 3 (RGB).")
    var channels = 3

    func validate() throws {
        guard DiscoGANModels.supportedSizes.contains(size) else {
            throw ValidationError("--size must be one of \(DiscoGANModels.supportedSizes.map(String.init).joined(separator: ", ")), got \(size)")
        }
        guard channels == 1 || channels == 3 else { throw ValidationError("--channels must be 1 or 3, got \(channels)") }
    }
}

/// `--threads N`: disco's workers (convolution batch shares, batch norm and activation rows). The
/// environment variable DISCO_THREADS does the same; the option wins. Call `apply()` first thing
/// in `run()`, before OpenBLAS is loaded.
struct ThreadOptions: ParsableArguments {
    @Option(help: "disco's worker threads (default: DISCO_THREADS, else one per core).")
    var threads: Int?

    func validate() throws {
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be in 1...1024, got \(threads)") }
    }

    func apply() {
        if let threads { Parallel.threads = threads }
    }
}

/// `--bf16`: the convolutions' GEMMs multiply in bfloat16 (`GEMMPrecision`). It sets DISCO_GEMM=bf16
/// (which child processes inherit), read when OpenBLAS is loaded by a command that takes this
/// option (`loadBLASOrExplain(applyingGEMMPrecision: true)`). Call `apply()` first thing in `run()`.
struct GEMMOptions: ParsableArguments {
    @Flag(help: ArgumentHelp("Multiply the convolutions' GEMMs in bfloat16, summing in float32 (DISCO_GEMM=bf16 does the same).",
                             discussion: "About twice the multiply speed on CPUs with AVX512-BF16 (Zen 4, Zen 5, Cooper Lake, Sapphire Rapids), at 8 significant bits per factor instead of 24. Needs an OpenBLAS built with bfloat16: `make openblas-bf16` in disco's folder (or DISCO_SBGEMM_LIBRARY)."))
    var bf16 = false

    func apply() {
        if bf16 { setenv("DISCO_GEMM", GEMMPrecision.bf16.rawValue, 1) }
    }
}

/// Refuses an empty path option: `-o "$OUT"` with OUT unset would otherwise write into the
/// working folder's parent or the filesystem root (OUTPUT + "/" + name).
func requirePath(_ value: String?, _ option: String) throws {
    if let value, value.isEmpty { throw ValidationError("\(option) is empty; give a path") }
}
