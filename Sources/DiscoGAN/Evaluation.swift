import Foundation
import DiscoCore

/// `disco eval`: reconstruction (A -> B -> A, and B -> A -> B) and, with ground truth, translation
/// scores (MSE, L1, PSNR, SSIM: mean and standard deviation) of a model on folders of images.
public enum Evaluation {
    /// The scores `disco eval --json` prints, keyed `reconstruction_A`, `reconstruction_B`,
    /// `translation_AB_vs_paired_B`, `identity_baseline_A_vs_paired_B` (each with `count` and
    /// per metric `mean`, `std`). `limit` > 0 takes at most that many images per folder.
    public static func run(checkpoint: String, a: String, b: String?, pairedB: String?, limit: Int) throws -> [String: Any] {
        let model = try loadModel(checkpoint: checkpoint)
        let c = model.config
        var result: [String: Any] = ["checkpoint": checkpoint, "size": c.size, "channels": c.channels]

        func load(_ dir: String, _ option: String) throws -> (names: [String], x: Tensor) {
            var files = try listImageFiles(folder: dir, option: option)
            if limit > 0 { files = Array(files.prefix(limit)) }
            let loaded = loadBatch(files.map { dir + "/" + $0 }, size: c.size, channels: c.channels)
            for (p, e) in loaded.failures { FileWriter.printError("skipped \(p): \(e)") }
            guard loaded.tensor.shape[0] > 0 else { throw DiscoError("\(option) \(dir): no readable images") }
            return (loaded.indices.map { files[$0] }, loaded.tensor)
        }
        func translateAll(_ x: Tensor, _ d: Direction) -> Tensor {
            // In chunks, to bound memory on large folders.
            let n = x.shape[0], per = x.count / max(n, 1), out = Tensor(uninitialized: x.shape)
            for s in stride(from: 0, to: n, by: 64) {
                let k = min(64, n - s)
                let chunk = Tensor(viewOf: x, offset: s * per, shape: [k] + Array(x.shape.dropFirst()))
                let y = model.translate(chunk, direction: d)
                (out.data + s * per).update(from: y.data, count: k * per)
            }
            return out
        }
        func score(_ x: Tensor, _ y: Tensor) -> [String: Any] {
            let n = x.shape[0], per = x.count / max(n, 1)
            let all = (0..<n).map { Metrics.scores(x.data + $0 * per, y.data + $0 * per, height: c.size, width: c.size, channels: c.channels) }
            var out: [String: Any] = ["count": n]
            for (k, v) in Metrics.summary(all) { out[k] = ["mean": v.mean, "std": v.std] }
            return out
        }

        let (namesA, xA) = try load(a, "--a")
        let xAB = translateAll(xA, .aToB)
        result["reconstruction_A"] = score(xA, translateAll(xAB, .bToA))
        if let b {
            let (_, xB) = try load(b, "--b")
            result["reconstruction_B"] = score(xB, translateAll(translateAll(xB, .bToA), .aToB))
        }
        if let pairedB {
            let (namesB, xB) = try load(pairedB, "--paired-b")
            let index = Dictionary(namesB.enumerated().map { (stem($1), $0) }, uniquingKeysWith: { a, _ in a })
            let per = c.size * c.size * c.channels
            let pairs = namesA.enumerated().compactMap { i, n in index[stem(n)].map { (i, $0) } }
            guard !pairs.isEmpty else {
                throw DiscoError("--paired-b \(pairedB): none of its \(namesB.count) readable images has the name of one of the \(namesA.count) readable images of --a \(a) (names are matched without their extension; images that do not decode are left out)")
            }
            let fake = Tensor(uninitialized: [pairs.count, c.size, c.size, c.channels])
            let truth = Tensor(uninitialized: fake.shape), source = Tensor(uninitialized: fake.shape)
            for (k, (i, j)) in pairs.enumerated() {
                (fake.data + k * per).update(from: xAB.data + i * per, count: per)
                (source.data + k * per).update(from: xA.data + i * per, count: per)
                (truth.data + k * per).update(from: xB.data + j * per, count: per)
            }
            result["translation_AB_vs_paired_B"] = score(fake, truth)
            result["identity_baseline_A_vs_paired_B"] = score(source, truth)
        }
        return result
    }

    static func stem(_ rel: String) -> String { (rel as NSString).deletingPathExtension }
}
