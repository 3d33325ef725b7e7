import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN
import DiscoImage

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
    @Flag(help: "Also write OUTPUT/index.html: input, translation, reconstruction and their distances, sortable (folder INPUT).")
    var html = false
    @Option(help: "With --html: folder of ground-truth images paired with INPUT's by file name.") var paired: String?

    func validate() throws {
        try requirePath(output, "--output")
        guard batch >= 1 else { throw ValidationError("--batch must be positive, got \(batch)") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be in 1...100, got \(quality)") }
        if paired != nil && !html { throw ValidationError("--paired is for the --html page; add --html") }
    }

    @OptionGroup var threadOptions: ThreadOptions
    @OptionGroup var gemm: GEMMOptions

    func run() throws {
        gemm.apply()
        threadOptions.apply()
        let modelFile = try resolveModelFile(checkpoint)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
            throw CLIError("\(input): no such file or folder")
        }
        if html && !isDir.boolValue { throw CLIError("--html: INPUT \(input) is one file; the results page is for a folder of images") }
        if let paired, !FileManager.default.fileExists(atPath: paired) { throw CLIError("--paired \(paired): no such folder") }
        if !isDir.boolValue && ImageFormat(extensionOf: output) == nil {
            let ext = ImageFormat.pathExtension(output)
            throw CLIError("--output \(output): \(ext.isEmpty ? "no extension" : "unknown extension .\(ext)"); the format follows the extension: use \(ImageFormat.extensionList)")
        }
        // OpenBLAS loads on another core while the model is read and folded.
        BLAS.loadInBackground()
        let engine = try TranslateEngine(modelFile: modelFile, direction: direction, keepSize: keepSize, quality: quality)
        _ = try loadBLASOrExplain(applyingGEMMPrecision: true)
        let jobs = try TranslateEngine.jobs(input: input, output: output, isFolder: isDir.boolValue)
        let (done, failed) = try engine.run(jobs: jobs, batch: batch)
        if jobs.count > 1 || failed > 0 { print("translated \(done) image(s) into \(output)\(failed > 0 ? ", skipped \(failed) unreadable" : "")") }
        if done == 0 { throw CLIError("\(input): no image could be read") }
        if html {
            let page = try ResultsPage.write(jobs: jobs, checkpoint: checkpoint, input: input, output: output, paired: paired,
                                            direction: direction, batch: batch)
            print("results page: \(page)")
        }
    }
}

