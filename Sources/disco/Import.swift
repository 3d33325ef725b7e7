import ArgumentParser
import Foundation
import DiscoGAN

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a run folder from weights trained in PyTorch (scripts/disco_torch.py save_disco).",
        discussion: """
        FILE must hold disco's tensor names and shapes (G_AB required; G_BA, D_A, D_B each complete \
        or absent) and the metadata save_disco writes; anything else is refused, naming the tensor. \
        RUN/model.safetensors is then what translate, eval and export read with --checkpoint RUN.
        """)

    @Argument(help: "A .safetensors file written by save_disco.") var file: String
    @Option(help: "The run folder to write.") var out: String

    func validate() throws { try requirePath(out, "--out") }

    func run() throws {
        let r: (path: String, config: TrainConfig, iteration: Int)
        do { r = try Checkpoint.importRun(file: file, out: out) } catch { throw CLIError("\(error)") }
        print("wrote \(r.path) (\(r.config.size)x\(r.config.size), \(r.config.channels) channels, iteration \(r.iteration))")
    }
}
