import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed: kernels, data loading, training and translation.",
        subcommands: [BenchKernels.self, BenchTrain.self, BenchData.self, BenchTranslate.self, BenchGAN.self, BenchAllreduce.self]
    )
}
