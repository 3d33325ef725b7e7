import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

extension ToyData: ExpressibleByArgument {}

struct Gan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The GAN family DiscoGAN descends from.",
        subcommands: [GanToy.self, GanEval.self, GanClassifier.self])
}

struct GanToy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "toy",
        abstract: "Goodfellow et al.'s minimax game on 1-D data, made visible: p_data, p_g, D and the optimal D* as training goes.",
        discussion: """
        G and D are small MLPs (1 -> h -> h -> 1); D maximises V(D, G) = E log D(x) + E log(1 - D(G(z))), \
        G takes the non-saturating step. For a fixed G the best D is D* = p_data / (p_data + p_g); at \
        p_g = p_data, D* = 1/2 and V = -log 4. Writes RUN/toy.html (a plot per snapshot and V over \
        training) and RUN/log.jsonl (step, V, E|D - D*| under (p_data + p_g) / 2).
        """)

    @Option(help: "The run folder to write.") var out: String
    @Option(help: "Data: gaussian (N(2, 0.5^2)) or mixture (two Gaussians at -2 and 2).") var data = ToyData.gaussian
    @Option(help: "Training steps (one D step and one G step each).") var steps = 3000
    @Option(help: "Snapshots (plots), the first before training.") var snapshots = 6
    @Option(help: "Hidden units per layer.") var hidden = 32
    @Option(help: "Adam learning rate.") var lr: Float = 1e-3
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be positive, got \(steps)") }
        guard (2...50).contains(snapshots) else { throw ValidationError("--snapshots must be in 2...50, got \(snapshots)") }
        guard (1...1024).contains(hidden) else { throw ValidationError("--hidden must be in 1...1024, got \(hidden)") }
        guard lr > 0 && lr < 1 else { throw ValidationError("--lr must be in (0, 1), got \(lr)") }
    }

    func run() throws {
        threadOptions.apply()
        _ = try loadBLASOrExplain()
        var settings = ToyGAN.Settings()
        settings.data = data; settings.steps = steps; settings.snapshots = snapshots
        settings.hidden = hidden; settings.learningRate = lr; settings.seed = seed
        try Checkpoint.createDirectory(out)
        var log = Data()
        let shots = ToyGAN(settings: settings).train { s in
            print(String(format: "step %6d  V %.4f (-log 4 = %.4f)  E|D - D*| %.3f", s.step, s.value, -Foundation.log(4.0), s.meanGap))
            let entry: [String: Any] = ["step": s.step, "value": s.value, "mean_gap": s.meanGap]
            if let line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) { log.append(line); log.append(0x0A) }
        }
        do {
            try Checkpoint.writeAtomically(log, to: out + "/log.jsonl")
            try Checkpoint.writeAtomically(Data(ToyGAN.page(settings: settings, snapshots: shots).utf8), to: out + "/toy.html")
        } catch { throw CLIError("--out \(out): \(error)") }
        print("wrote \(out)/toy.html")
    }
}
