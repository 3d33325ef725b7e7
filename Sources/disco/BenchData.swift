import ArgumentParser

// Placeholder until the image/data work lands (issue 3).
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Time data loading.")
    func run() throws { throw ValidationError("disco bench data: not built yet") }
}
