import ArgumentParser
import DiscoCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the CPU features, the OpenBLAS kernel set in use, threads and measured sgemm GFLOP/s.")

    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let blas: BLAS
        do { blas = try BLAS.load() } catch { throw ValidationError("\(error)") }
        print(blas.coreName, blas.threads, blas.cpu.relevant)
    }
}
