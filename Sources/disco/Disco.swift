import ArgumentParser
import Foundation

@main
struct Disco: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disco",
        abstract: "Unpaired image-to-image translation (DiscoGAN) on the CPU.",
        version: DiscoVersion.text,
        subcommands: [Train.self, Translate.self, Eval.self, DataCommand.self, Export.self, Import.self, Gan.self, Info.self, Bench.self]
    )

    static func main() {
        requireBuildCPUFeatures()
        atexit { checkStandardOutput() }
        main(nil)
    }
}

/// Run at exit (also when ArgumentParser exits, after help or an error): results that could not
/// be written to stdout (disk full, a closed pipe...) make the command fail with a message,
/// as coreutils' close_stdout does, instead of exiting 0 with the output lost.
func checkStandardOutput() {
    let flushed = fflush(stdout) == 0
    let code = errno
    guard !flushed || ferror(stdout) != 0 else { return }
    // An error during the run (when output overflowed stdio's buffer) leaves only the flag.
    let reason = flushed ? "a write failed" : String(cString: strerror(code))
    fputs("Error: cannot write to standard output: \(reason); results were lost\n", stderr)
    _exit(1)
}

/// The kernels are built for AVX2 + FMA (see Package.swift). On a CPU without them they would
/// die with SIGILL somewhere inside; this says why instead, before any kernel runs. (This file
/// is compiled for plain x86-64.)
func requireBuildCPUFeatures() {
    #if DISCO_AVX2
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
    let flags = Set(line.split(separator: " ").map(String.init))
    let missing = ["avx2", "fma"].filter { !flags.contains($0) }
    if !missing.isEmpty {
        FileHandle.standardError.write(Data("""
            Error: this disco was built for x86-64 CPUs with AVX2 and FMA (Haswell, Zen or later), \
            and this CPU lacks \(missing.joined(separator: ", ")). Rebuild it for any x86-64 with: \
            DISCO_PORTABLE=1 make build

            """.utf8))
        exit(1)
    }
    #endif
}
