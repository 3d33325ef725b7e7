#if canImport(Glibc)
import Glibc
#endif

/// A small, fast, seedable generator (xoshiro256**) whose whole state can be saved and
/// restored, so a resumed training run draws exactly the numbers an unbroken one would.
public struct Xoshiro256: RandomNumberGenerator, Sendable, Codable, Equatable {
    public var state: [UInt64]

    public init(seed: UInt64) {
        // SplitMix64 expands the seed into four non-zero words.
        var z = seed
        var s = [UInt64](repeating: 0, count: 4)
        for i in 0..<4 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            s[i] = x ^ (x >> 31)
        }
        state = s
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]; state[3] ^= state[1]; state[1] ^= state[2]; state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Float {
        var u1 = Double(next() >> 11) * 0x1p-53
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * Glibc.log(u1)).squareRoot() * Glibc.cos(2 * Double.pi * u2))
    }
}

extension Tensor {
    /// Uniform in [low, high).
    public static func uniform(_ shape: [Int], low: Float, high: Float, rng: inout Xoshiro256) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = low + (high - low) * rng.nextUniform() }
        return t
    }

    /// Normal with the given mean and standard deviation.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, rng: inout Xoshiro256) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = mean + std * rng.nextNormal() }
        return t
    }

    /// PyTorch's default Conv2d / ConvTranspose2d weight init, kaiming_uniform_(a: sqrt(5)):
    /// uniform(-b, b) with b = 1 / sqrt(fanIn), where fanIn = weight.size(1) * kh * kw in
    /// PyTorch's layout (Conv2d: inChannels; ConvTranspose2d: its outChannels).
    public static func torchConvInit(_ shape: [Int], fanIn: Int, rng: inout Xoshiro256) -> Tensor {
        let bound = 1 / Float(fanIn).squareRoot()
        return uniform(shape, low: -bound, high: bound, rng: &rng)
    }
}
