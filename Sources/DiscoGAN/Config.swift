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

    public init() {}

    /// The reconstruction weight at iteration i.
    public func rate(at iteration: Int) -> Float { iteration < curriculumIterations ? startingRate : defaultRate }
    public func isDiscriminatorStep(_ iteration: Int) -> Bool { iteration % updateInterval == 0 }
}
