import ArgumentParser

@main
struct Disco: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disco",
        abstract: "Unpaired image-to-image translation (DiscoGAN) on the CPU.",
        subcommands: [Train.self, Translate.self, Eval.self, DataCommand.self, Export.self, Info.self, Bench.self]
    )
}
