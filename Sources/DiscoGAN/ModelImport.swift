import Foundation
import DiscoCore
import DiscoImage

extension Checkpoint {
    /// A model file written elsewhere (scripts/disco_torch.py `save_disco`), checked strictly:
    /// metadata `format`, `size` and `channels` as disco writes them; every tensor named as one of
    /// that model's (`G_AB.e1.weight`, ..., PyTorch layout) with the same shape (BatchNorm2d's
    /// `num_batches_tracked` is accepted and ignored); G_AB present, and
    /// each other network either complete or absent. Errors name the file and the tensor.
    /// Returns the loaded model, the file's iteration, and whether it held the discriminators.
    public static func importModel(file: String) throws -> (model: DiscoGAN, iteration: Int, discriminators: Bool) {
        let info = try modelInfo(file: file)
        guard DiscoGANModels.supportedSizes.contains(info.size), [1, 3].contains(info.channels) else {
            throw Error("\(file): metadata size \(info.size), channels \(info.channels); disco's models are \(DiscoGANModels.supportedSizes.map(String.init).joined(separator: ", ")) px with 1 or 3 channels")
        }
        var config = TrainConfig()
        config.size = info.size; config.channels = info.channels; config.model = info.model
        let model = DiscoGAN(config: config)
        let f = try Safetensors.read(path: file)
        var expected: [String: [Int]] = [:]
        for (name, net, _) in model.networks {
            for (k, t) in net.stateDict() { expected["\(name).\(k)"] = t.shape }
        }
        // PyTorch's BatchNorm2d counter: disco's momentum is fixed, so it is not used.
        for name in f.names where !name.hasSuffix(".num_batches_tracked") {
            guard let shape = expected[name] else {
                throw Error("\(file): tensor '\(name)' is not part of a \(info.size)x\(info.size), \(info.channels)-channel \(info.model.rawValue) model (names are G_AB.e1.weight ... D_B.c5.weight; see scripts/disco_torch.py)")
            }
            let got = f.entries[name]!.shape
            guard got == shape else {
                throw Error("\(file): tensor '\(name)' has shape \(got); a \(info.size)x\(info.size), \(info.channels)-channel model needs \(shape)")
            }
        }
        for (name, net, _) in model.networks {
            let keys = net.stateDict().map { "\(name).\($0.0)" }
            let present = keys.filter { f.entries[$0] != nil }
            if present.isEmpty && name != "G_AB" { continue }
            if let missing = keys.first(where: { f.entries[$0] == nil }) {
                throw Error("\(file): tensor '\(missing)' is missing (\(name) needs all \(keys.count) of its tensors)")
            }
        }
        try loadWeights(into: model, file: file)
        return (model, info.iteration, f.entries.keys.contains { $0.hasPrefix("D_") })
    }

    /// `disco import`: checks `file` (`importModel`) and writes it as `out`/model.safetensors,
    /// a run folder translate, eval and export read; refuses a folder that already has one.
    /// Returns the path written, the model's configuration and the file's iteration.
    public static func importRun(file: String, out: String) throws -> (path: String, config: TrainConfig, iteration: Int) {
        let imported = try importModel(file: file)
        let target = out + "/model.safetensors"
        guard !FileManager.default.fileExists(atPath: target) else {
            throw DiscoError("--out \(out): already holds a model.safetensors; choose another folder")
        }
        do {
            try createDirectory(out)
            try writeAtomically(modelData(model: imported.model, iteration: imported.iteration,
                                          generatorsOnly: !imported.discriminators), to: target)
        } catch { throw DiscoError("--out \(out): \(error)") }
        return (target, imported.model.config, imported.iteration)
    }

    /// `disco export model`: the generators (G_AB, G_BA) of a run folder's latest checkpoint or of a
    /// model file, written as one model file at `output` (its folder created). Returns the bytes
    /// written and the model's iteration.
    public static func exportGenerators(checkpoint: String, output: String) throws -> (bytes: Int, iteration: Int) {
        let model = try loadModel(checkpoint: checkpoint)
        let source = try resolveModelFile(checkpoint)
        let info = try modelInfo(file: source)
        let data = modelData(model: model, iteration: info.iteration, generatorsOnly: true)
        if canonicalPath(output) == canonicalPath(source) {
            throw DiscoError("--output \(output) is the model file --checkpoint reads (\(source)); choose another --output")
        }
        if FileManager.default.fileExists(atPath: output), ImageFormat.detect(path: output) != nil {
            throw DiscoError("--output \(output) is an existing image; writing the model would replace it: choose another --output")
        }
        let parent = parentFolder(output)
        if !parent.isEmpty { try createDirectory(parent, option: "--output") }
        do { try writeAtomically(data, to: output) } catch { throw DiscoError("--output: \(error)") }
        return (data.count, info.iteration)
    }
}
