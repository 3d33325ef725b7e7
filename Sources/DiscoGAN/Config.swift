import Foundation
import DiscoCore

/// Which networks and losses a run trains (the variants of the DiscoGAN code).
public enum ModelVariant: String, Codable, Sendable, CaseIterable {
    /// Both directions: G_AB, G_BA, D_A, D_B with reconstruction both ways.
    case discogan
    /// One direction (A -> B) with reconstruction A -> B -> A: G_AB, G_BA, D_B.
    case recongan
    /// A -> B with the GAN loss only: G_AB, D_B.
    case gan
}

public enum AdversarialLoss: String, Codable, Sendable, CaseIterable { case bce, lsgan }
public enum ReconstructionLoss: String, Codable, Sendable, CaseIterable { case mse, l1 }

/// Everything that defines a run. Saved as JSON beside each checkpoint.
public struct TrainConfig: Codable, Equatable, Sendable {
    public var size = 64
    public var channels = 3
    public var batch = 64
    public var iterations = 20_000
    public var model = ModelVariant.discogan
    public var loss = AdversarialLoss.bce
    public var recon = ReconstructionLoss.mse
    public var adam = Adam.Hyperparameters()
    /// Iterations that use `startingRate` before switching to `defaultRate` (the curriculum).
    public var curriculumIterations = 10_000
    public var startingRate: Float = 0.01
    public var defaultRate: Float = 0.5
    /// D is updated on iterations i with i % updateInterval == 0, G on the others.
    public var updateInterval = 3
    /// Weights of the GAN and feature-matching terms inside (GAN, FM) * (1 - rate).
    public var ganWeight: Float = 0.1
    public var fmWeight: Float = 0.9
    public var seed: UInt64 = 0
    public var saveEvery = 1000
    public var sampleEvery = 1000
    public var logEvery = 10
    /// Checkpoints kept in RUN/checkpoints (the newest); 0 keeps all.
    public var keep = 2
    /// Also keep, in RUN/best, the checkpoint with the lowest reconstruction distance on held-out
    /// images (the test folders, else the last 5% of each training folder, then not trained on).
    public var keepBest = false
    /// The iteration from which the learning rate falls linearly, reaching 0 at `iterations`
    /// (CycleGAN's `linear` policy, its `n_epochs` / `n_epochs_decay`); -1: constant to the end.
    public var decayFrom = -1
    /// Generated images kept per domain for the discriminators (`ImagePool`, CycleGAN's
    /// `pool_size`); 0 shows D only the current batch.
    public var poolSize = 0
    public static let maxPoolSize = 10_000
    /// The largest --batch (the checkpoint's state.json is checked against the same range).
    public static let maxBatch = 1 << 16

    /// Refuses a batch whose training tensors could not fit in this machine's memory, before any
    /// is allocated (a failed allocation would stop the process, and an overcommitted one would
    /// be killed by the kernel minutes later). The estimate is a lower bound: 2000 bytes a pixel
    /// of an image of side `size` (measured: 689 MB of tensors for 64 images of 64x64, 2,628 bytes
    /// a pixel), `images` images in this process.
    public static func checkMemory(images: Int, size: Int, option: String = "--batch") throws {
        let perImage = 2000 * size * size
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return }
        var physical = pages * pageSize, what = "this machine's"
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max, Int(clamping: limit.rlim_cur) < physical {
            physical = Int(clamping: limit.rlim_cur); what = "this process's address-space limit (ulimit -v),"
        }
        let most = max(2, physical / perImage)
        guard images > most else { return }
        func gb(_ b: Int) -> String { String(format: "%.1f GB", Double(b) / 1e9) }
        throw DiscoError("\(option) \(images) at \(size)x\(size) needs at least \(gb(images * perImage)) of memory to train (\(String(format: "%.1f", Double(perImage) / 1e6)) MB or more an image), more than \(what) \(gb(physical)); use \(option) \(most) or less (the estimate is a lower bound: smaller is safer)")
    }
    /// Weight W of the identity loss W * L1(G_AB(x_B), x_B) + W * L1(G_BA(x_A), x_A) in G's loss
    /// (CycleGAN's `lambda_identity`, times its lambda_A/B); 0 leaves it out.
    public var identityWeight: Float = 0
    /// Side training images are resized to before a random `size` x `size` crop (CycleGAN's
    /// `load_size`, `preprocess resize_and_crop`); 0: `size`, resize only (DiscoGAN).
    public var loadSize = 0
    public static let maxLoadSize = 1024
    /// Random horizontal flips of training images (CycleGAN flips unless `no_flip`).
    public var flip = false
    /// The convolutions' GEMMs in bfloat16 (`--bf16`, `GEMMPrecision`): the process's precision
    /// when the run started, recorded so that `--resume` asks for the same.
    public var bf16 = false

    public init() {}

    /// Settings added after the first release: a config.json or state.json written before them
    /// lacks them and reads as the default (which is how those runs trained).
    /// A new setting must be decoded in `init(from:)` (with `decodeIfPresent` and listed here),
    /// compared in `resultSettings` or allowed to change on resume, and checked in `problems`.
    static let defaultedFields: Set<String> = ["keep", "keepBest", "decayFrom", "poolSize", "identityWeight", "loadSize", "flip", "bf16"]

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainConfig()
        size = try c.decode(Int.self, forKey: .size)
        channels = try c.decode(Int.self, forKey: .channels)
        batch = try c.decode(Int.self, forKey: .batch)
        iterations = try c.decode(Int.self, forKey: .iterations)
        model = try c.decode(ModelVariant.self, forKey: .model)
        loss = try c.decode(AdversarialLoss.self, forKey: .loss)
        recon = try c.decode(ReconstructionLoss.self, forKey: .recon)
        adam = try c.decode(Adam.Hyperparameters.self, forKey: .adam)
        curriculumIterations = try c.decode(Int.self, forKey: .curriculumIterations)
        startingRate = try c.decode(Float.self, forKey: .startingRate)
        defaultRate = try c.decode(Float.self, forKey: .defaultRate)
        updateInterval = try c.decode(Int.self, forKey: .updateInterval)
        ganWeight = try c.decode(Float.self, forKey: .ganWeight)
        fmWeight = try c.decode(Float.self, forKey: .fmWeight)
        seed = try c.decode(UInt64.self, forKey: .seed)
        saveEvery = try c.decode(Int.self, forKey: .saveEvery)
        sampleEvery = try c.decode(Int.self, forKey: .sampleEvery)
        logEvery = try c.decode(Int.self, forKey: .logEvery)
        keep = try c.decodeIfPresent(Int.self, forKey: .keep) ?? d.keep
        keepBest = try c.decodeIfPresent(Bool.self, forKey: .keepBest) ?? d.keepBest
        decayFrom = try c.decodeIfPresent(Int.self, forKey: .decayFrom) ?? d.decayFrom
        poolSize = try c.decodeIfPresent(Int.self, forKey: .poolSize) ?? d.poolSize
        identityWeight = try c.decodeIfPresent(Float.self, forKey: .identityWeight) ?? d.identityWeight
        loadSize = try c.decodeIfPresent(Int.self, forKey: .loadSize) ?? d.loadSize
        flip = try c.decodeIfPresent(Bool.self, forKey: .flip) ?? d.flip
        bf16 = try c.decodeIfPresent(Bool.self, forKey: .bf16) ?? d.bf16
    }

    /// The reconstruction weight at iteration i.
    public func rate(at iteration: Int) -> Float { iteration < curriculumIterations ? startingRate : defaultRate }
    /// Adam's learning rate at iteration i: `adam.learningRate` before `decayFrom`, then
    /// lr * (iterations - i) / (iterations - decayFrom), linearly to 0 at `iterations`.
    public func learningRate(at iteration: Int) -> Float {
        guard decayFrom >= 0, iteration >= decayFrom, iterations > decayFrom else { return adam.learningRate }
        return Float(Double(adam.learningRate) * Double(max(iterations - iteration, 0)) / Double(iterations - decayFrom))
    }
    public func isDiscriminatorStep(_ iteration: Int) -> Bool { iteration % updateInterval == 0 }
}
