import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's generators (G_AB, G_BA) as one small model file for translate.",
        discussion: "The file is what `disco translate --checkpoint FILE` reads; discriminators and optimizer state are left out.")

    @Option(help: "A run folder (its latest checkpoint) or a model.safetensors file.") var checkpoint: String
    @Option(name: .shortAndLong, help: "The model file to write (.safetensors).") var output: String

    func run() throws {
        _ = try loadBLASOrExplain()
        let model = try loadModel(checkpoint: checkpoint)
        let info = try Checkpoint.modelInfo(file: resolveModelFile(checkpoint))
        let data = Checkpoint.modelData(model: model, iteration: info.iteration, generatorsOnly: true)
        let parent = parentFolder(output)
        if !parent.isEmpty { try Checkpoint.createDirectory(parent) }
        do { try Checkpoint.writeAtomically(data, to: output) } catch { throw CLIError("--output: \(error)") }
        print("wrote \(output) (\(data.count / 1_000_000) MB, iteration \(info.iteration))")
    }
}
