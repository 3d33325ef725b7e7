import Foundation
import DiscoCore

/// The history of generated images a discriminator is trained on (Shrivastava et al. 2017), with
/// CycleGAN's `ImagePool` semantics: for each generated image of a batch, while the pool holds
/// fewer than `capacity` images it is stored and returned; once full, with probability 1/2 a
/// uniformly chosen stored image is returned and replaced by the new one, otherwise the new one is
/// returned. Capacity 0 returns every batch unchanged. The draws come from a seeded generator
/// whose state, like the images, is saved in checkpoints (`pool.safetensors`), so a resumed run
/// sees exactly what an unbroken one would.
public final class ImagePool {
    public let capacity: Int
    /// The stored images, each flat (size * size * channels values, HWC), in insertion slots.
    public private(set) var images: [[Float]] = []
    public private(set) var rng: Xoshiro256

    public init(capacity: Int, seed: UInt64) {
        self.capacity = capacity
        rng = Xoshiro256(seed: seed)
    }

    /// The batch (NHWC) the discriminator sees in place of `batch`.
    public func query(_ batch: Tensor) -> Tensor {
        guard capacity > 0 else { return batch }
        let n = batch.shape[0], per = batch.count / max(n, 1)
        let out = Tensor(uninitialized: batch.shape)
        for i in 0..<n {
            let image = Array(UnsafeBufferPointer(start: batch.data + i * per, count: per))
            var shown = image
            if images.count < capacity {
                images.append(image)
            } else if rng.nextUniform() > 0.5 {
                let slot = Int(rng.next() % UInt64(capacity))
                shown = images[slot]
                images[slot] = image
            }
            shown.withUnsafeBufferPointer { (out.data + i * per).update(from: $0.baseAddress!, count: per) }
        }
        return out
    }

    // MARK: checkpoints

    /// The pool's tensor (`NAME.images`, [count, size, size, channels], absent while empty) and
    /// metadata (`NAME.count`, `NAME.rng`).
    func save(name: String, imageShape: [Int], into tensors: inout [(String, Tensor)], metadata: inout [String: String]) {
        metadata[name + ".count"] = String(images.count)
        metadata[name + ".rng"] = rng.state.map(String.init).joined(separator: ",")
        guard !images.isEmpty else { return }
        tensors.append((name + ".images", Tensor(shape: [images.count] + imageShape, values: images.flatMap { $0 })))
    }

    /// Restores what `save` wrote, checking every field; `file` names the file in errors.
    func restore(name: String, imageShape: [Int], from f: Safetensors.File, file: String) throws {
        let fix = "the checkpoint is damaged: delete its folder to resume from the checkpoint before it"
        guard let countText = f.metadata[name + ".count"], let count = Int(countText), (0...capacity).contains(count) else {
            throw Checkpoint.Error("\(file): metadata '\(name).count' is \(f.metadata[name + ".count"].map { "'\($0)'" } ?? "missing"); it must be in 0...\(capacity) (--pool-size); \(fix)")
        }
        let words = (f.metadata[name + ".rng"] ?? "").split(separator: ",").compactMap { UInt64($0) }
        guard words.count == 4, words.contains(where: { $0 != 0 }) else {
            throw Checkpoint.Error("\(file): metadata '\(name).rng' is \(f.metadata[name + ".rng"].map { "'\($0)'" } ?? "missing"); it must be four integers, not all 0; \(fix)")
        }
        var restored: [[Float]] = []
        if count > 0 {
            guard let e = f.entries[name + ".images"] else { throw Checkpoint.Error("\(file): no tensor '\(name).images' for its \(count) images; \(fix)") }
            guard e.shape == [count] + imageShape else {
                throw Checkpoint.Error("\(file): tensor '\(name).images' has shape \(e.shape), the run needs \([count] + imageShape); \(fix)")
            }
            try e.floats.withUnsafeBufferPointer { try Checkpoint.checkValues($0, tensor: name + ".images", file: file) }
            let per = imageShape.reduce(1, *)
            restored = (0..<count).map { Array(e.floats[$0 * per..<($0 + 1) * per]) }
        }
        images = restored
        rng.state = words
    }
}
