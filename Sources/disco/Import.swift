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

    func run() throws {
        let imported: (model: DiscoGAN, iteration: Int, discriminators: Bool)
        do { imported = try Checkpoint.importModel(file: file) } catch { throw CLIError("\(error)") }
        let target = out + "/model.safetensors"
        guard !FileManager.default.fileExists(atPath: target) else {
            throw CLIError("--out \(out): already holds a model.safetensors; choose another folder")
        }
        do {
            try Checkpoint.createDirectory(out)
            try Checkpoint.writeAtomically(Checkpoint.modelData(model: imported.model, iteration: imported.iteration,
                                                                 generatorsOnly: !imported.discriminators), to: target)
        } catch { throw CLIError("--out \(out): \(error)") }
        let c = imported.model.config
        print("wrote \(target) (\(c.size)x\(c.size), \(c.channels) channels, iteration \(imported.iteration))")
    }
}
