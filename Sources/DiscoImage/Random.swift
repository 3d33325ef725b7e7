/// SplitMix64: a tiny seedable generator. The loader derives one independent stream per
/// (seed, domain, epoch[, position]) with `streamSeed`, so every shuffle and augmentation is
/// a pure function of those numbers and a resumed run replays them exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.finalize(state)
    }

    /// The SplitMix64 output function: a bijective 64-bit mixer.
    static func finalize(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A seed that depends on every part and their order (distinct tuples give unrelated streams).
public func streamSeed(_ parts: UInt64...) -> UInt64 {
    var h: UInt64 = 0x6A09_E667_F3BC_C909
    for p in parts { h = SplitMix64.finalize(h &+ 0x9E37_79B9_7F4A_7C15 ^ p) }
    return h
}

/// The order in which epoch `epoch` visits `count` items: a Fisher-Yates shuffle from the
/// stream (seed, domain, epoch).
public func epochPermutation(count: Int, seed: UInt64, domain: UInt64, epoch: Int) -> [Int] {
    var order = Array(0..<count)
    var rng = SplitMix64(seed: streamSeed(seed, domain, UInt64(epoch)))
    if count > 1 {
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
    }
    return order
}
