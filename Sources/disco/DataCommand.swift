import ArgumentParser

// Placeholder until the image/data work lands (issue 3).
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Build training data sets.")
    func run() throws { throw ValidationError("disco data: not built yet") }
}
