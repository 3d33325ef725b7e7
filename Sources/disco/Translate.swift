import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate an image, or a folder of images, from domain A to B (or B to A).",
        discussion: """
        Any size and format in; the model's size out (--keep-size scales back to the input's size).
        The output format follows OUTPUT's extension (.png, .jpg). With a folder INPUT, OUTPUT is a
        folder and file names (and sub-folders) are kept. Without --checkpoint, the pretrained
        default model (checkpoints/default: Fashion-MNIST bags <-> shoes, 32x32 gray) is used.
        """)

    @Argument(help: "An image file or a folder of images.") var input: String
    @Option(name: .shortAndLong, help: "Output image (or folder, for a folder INPUT).") var output: String
    @Option(help: "A run folder (its latest checkpoint) or a model.safetensors file.") var checkpoint: String?
    @Option(help: "a2b (G_AB) or b2a (G_BA).") var direction = Direction.aToB
    @Flag(help: "Scale each result back to its input's size.") var keepSize = false
    @Option(help: "Images per forward pass.") var batch = 64
    @Option(help: "JPEG quality for .jpg outputs.") var quality = 95

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be positive, got \(batch)") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be in 1...100, got \(quality)") }
    }

    func run() throws {
        _ = try loadBLASOrExplain()
        let model = try loadModel(checkpoint: checkpoint)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
            throw CLIError("\(input): no such file or folder")
        }
        let jobs: [(String, String)]
        if isDir.boolValue {
            let files = try listImageFiles(folder: input)
            guard !files.isEmpty else { throw CLIError("\(input): no images found in this folder") }
            try Checkpoint.createDirectory(output)
            jobs = files.map { rel in (input + "/" + rel, output + "/" + outputName(rel)) }
        } else {
            let parent = (output as NSString).deletingLastPathComponent
            if !parent.isEmpty { try Checkpoint.createDirectory(parent) }
            jobs = [(input, output)]
        }
        let c = model.config
        var done = 0, failed = 0
        for start in stride(from: 0, to: jobs.count, by: batch) {
            let chunk = Array(jobs[start..<min(start + batch, jobs.count)])
            let loaded = loadBatch(chunk.map(\.0), size: c.size, channels: c.channels, originalSizes: keepSize)
            for (path, err) in loaded.failures { FileHandle.standardError.write("skipped \(path): \(err)\n".data(using: .utf8)!); failed += 1 }
            guard loaded.tensor.shape[0] > 0 else { continue }
            let y = model.translate(loaded.tensor, direction: direction)
            for (k, j) in loaded.indices.enumerated() {
                let per = c.size * c.size * c.channels
                let px = Array(UnsafeBufferPointer(start: y.data + k * per, count: per))
                let target = chunk[j].1
                if keepSize {
                    let (w, h) = loaded.originalSizes[k]
                    try writePixels(px, c.size, c.size, c.channels, target, resizeTo: (w, h), quality: quality)
                } else {
                    try writePixels(px, c.size, c.size, c.channels, target, resizeTo: nil, quality: quality)
                }
                done += 1
            }
        }
        if jobs.count > 1 || failed > 0 { print("translated \(done) image(s) into \(output)\(failed > 0 ? ", skipped \(failed) unreadable" : "")") }
        if done == 0 { throw CLIError("\(input): no image could be read") }
    }

    /// Keeps the name; an input that is not PNG/JPEG by extension becomes .png.
    func outputName(_ rel: String) -> String {
        let ext = (rel as NSString).pathExtension.lowercased()
        return ["png", "jpg", "jpeg"].contains(ext) ? rel : (rel as NSString).deletingPathExtension + ".png"
    }
}

/// The model of a run folder (latest checkpoint), a model.safetensors file, or the default model.
func loadModel(checkpoint: String?) throws -> DiscoGAN {
    let file = try resolveModelFile(checkpoint)
    let info: (size: Int, channels: Int, model: ModelVariant, iteration: Int)
    do { info = try Checkpoint.modelInfo(file: file) } catch { throw CLIError("--checkpoint: \(error)") }
    var config = TrainConfig()
    config.size = info.size; config.channels = info.channels; config.model = info.model
    let model = DiscoGAN(config: config)
    do { try Checkpoint.loadWeights(into: model, file: file) } catch { throw CLIError("--checkpoint: \(error)") }
    return model
}

/// The model file of a run folder (latest checkpoint), a model file, or the default model.
func resolveModelFile(_ checkpoint: String?) throws -> String {
    let file: String
    if let checkpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else {
            throw CLIError("--checkpoint \(checkpoint): no such run folder or file")
        }
        if isDir.boolValue {
            if FileManager.default.fileExists(atPath: checkpoint + "/model.safetensors") {
                file = checkpoint + "/model.safetensors"
            } else if let latest = Checkpoint.latest(run: checkpoint) {
                file = latest + "/model.safetensors"
            } else {
                throw CLIError("--checkpoint \(checkpoint): this folder has no checkpoints/ (train first, or name a model.safetensors)")
            }
        } else {
            file = checkpoint
        }
    } else {
        guard let d = defaultModelPath() else {
            throw CLIError("no --checkpoint given and the default model (checkpoints/default/model.safetensors) was not found; pass --checkpoint RUN")
        }
        file = d
    }
    return file
}

/// checkpoints/default/model.safetensors beside the executable's checkout, or in the working folder.
func defaultModelPath() -> String? {
    if let env = ProcessInfo.processInfo.environment["DISCO_DEFAULT_MODEL"] { return env }
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var candidates = ["checkpoints/default/model.safetensors"]
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<4 {
        candidates.append(dir.appendingPathComponent("checkpoints/default/model.safetensors").path)
        dir = dir.deletingLastPathComponent()
    }
    return candidates.first { FileManager.default.fileExists(atPath: $0) }
}
