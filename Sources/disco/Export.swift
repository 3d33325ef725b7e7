import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a run: its generators as one model file (default), or its log as TensorBoard events.",
        subcommands: [ExportModel.self, ExportTensorBoard.self],
        defaultSubcommand: ExportModel.self)
}

struct ExportModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Write a run's generators (G_AB, G_BA) as one small model file for translate.",
        discussion: "The file is what `disco translate --checkpoint FILE` reads; discriminators and optimizer state are left out.")

    @Option(help: "A run folder (its latest checkpoint) or a model.safetensors file.") var checkpoint: String
    @Option(name: .shortAndLong, help: "The model file to write (.safetensors).") var output: String

    func validate() throws { try requirePath(output, "--output") }

    func run() throws {
        _ = try loadBLASOrExplain()
        let r = try Checkpoint.exportGenerators(checkpoint: checkpoint, output: output)
        print("wrote \(output) (\(r.bytes / 1_000_000) MB, iteration \(r.iteration))")
    }
}

struct ExportTensorBoard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tensorboard",
        abstract: "Write RUN/tb/ for `tensorboard --logdir RUN/tb`: every logged loss, D(x), D(G(z)), the rates, and the sample grids.",
        discussion: "Made from log.jsonl, config.json and samples/; run it again (or train with --tensorboard) to refresh.")

    @Argument(help: "A run folder (with log.jsonl).") var folder: String

    func run() throws {
        guard FileManager.default.fileExists(atPath: folder + "/log.jsonl") else {
            throw CLIError("\(folder): no log.jsonl here; give a run folder that `disco train` wrote")
        }
        let path: String
        do { path = try TensorBoard.write(runDirectory: folder) } catch { throw CLIError("\(error)") }
        print("wrote \(path); view with: tensorboard --logdir \(folder)/tb")
    }
}
