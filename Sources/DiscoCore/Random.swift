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

    /// `words.count` draws of `next()`, in order (the state kept in registers meanwhile).
    public mutating func fill(_ words: inout [UInt64]) {
        var s0 = state[0], s1 = state[1], s2 = state[2], s3 = state[3]
        words.withUnsafeMutableBufferPointer { out in
            for i in out.indices {
                out[i] = rotl(s1 &* 5, 7) &* 9
                let t = s1 << 17
                s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
                s2 ^= t
                s3 = rotl(s3, 45)
            }
        }
        state = [s0, s1, s2, s3]
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Float {
        let a = next()
        return Xoshiro256.boxMuller(a, next())
    }

    /// The standard normal `nextNormal` makes of two consecutive words.
    @inline(__always)
    static func boxMuller(_ a: UInt64, _ b: UInt64) -> Float {
        var u1 = Double(a >> 11) * 0x1p-53
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(b >> 11) * 0x1p-53
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

    /// Normal with the given mean and standard deviation: element i is `mean + std * nextNormal()`
    /// of the i-th draw, as a loop of `nextNormal` gives. The generator's words are drawn in order
    /// on this thread, and the Box-Muller transforms (a log and a cos each) run split between the
    /// workers: the same values as one thread's.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, rng: inout Xoshiro256) -> Tensor {
        let t = Tensor(uninitialized: shape)
        let n = t.count
        if n < 4096 {
            for i in 0..<n { t.data[i] = mean + std * rng.nextNormal() }
            return t
        }
        var words = [UInt64](repeating: 0, count: 2 * n)
        rng.fill(&words)
        let out = t.data
        words.withUnsafeBufferPointer { wb in
            let w = wb.baseAddress!
            Parallel.forRanges(n, grain: 2048) { r in
                for i in r { out[i] = mean + std * Xoshiro256.boxMuller(w[2 * i], w[2 * i + 1]) }
            }
        }
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
