import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure reconstruction (A -> B -> A) and, with ground truth, translation quality.",
        discussion: """
        Scores: MSE, L1, PSNR (dB) and SSIM, mean and standard deviation over the images, at the
        model's size. --paired-b DIR scores x_AB against the image of the same name in DIR, beside the
        identity baseline (x_A itself against that image).
        """)

    @Option(help: "A run folder (its latest checkpoint) or a model.safetensors file.") var checkpoint: String
    @Option(help: "Folder of domain-A images.") var a: String
    @Option(help: "Folder of domain-B images (adds B -> A -> B).") var b: String?
    @Option(help: "Folder of ground-truth B images paired with --a by file name.") var pairedB: String?
    @Option(help: "Use at most N images per folder (0: all).") var limit = 0
    @Flag(help: "Print one JSON object.") var json = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be >= 0 (0: all images), got \(limit)") }
    }

    func run() throws {
        threadOptions.apply()
        _ = try loadBLASOrExplain()
        let result = try Evaluation.run(checkpoint: checkpoint, a: a, b: b, pairedB: pairedB, limit: limit)
        if json { print(jsonString(result)); return }
        for key in ["reconstruction_A", "reconstruction_B", "translation_AB_vs_paired_B", "identity_baseline_A_vs_paired_B"] {
            guard let r = result[key] as? [String: Any] else { continue }
            func f(_ m: String) -> String {
                let d = r[m] as! [String: Double]
                return String(format: "%@ %.4f ± %.4f", m, d["mean"]!, d["std"]!)
            }
            print("\(pad(key, 32)) n=\(r["count"]!)  \(f("mse"))  \(f("l1"))  \(f("psnr"))  \(f("ssim"))")
        }
    }
}
