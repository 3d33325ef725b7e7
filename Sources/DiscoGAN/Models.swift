import DiscoCore

/// The DiscoGAN networks of ../shared/reference/discogan.md, exact at 64x64.
///
/// All convolutions are 4x4, stride 2, padding 1, without bias; C = image channels (1 or 3).
/// Generator (64x64): e1 conv C->64 LReLU(0.2); e2 64->128, e3 128->256, e4 256->512 (conv, BN, LReLU);
/// d1 512->256, d2 256->128, d3 128->64 (transposed conv, BN, ReLU); d4 64->C (transposed conv, sigmoid).
/// Discriminator (64x64): c1 conv C->64 LReLU; c2, c3, c4 (conv, BN, LReLU) whose outputs are the
/// features f2, f3, f4; c5 conv 512->1, 4x4, stride 1, padding 0 -> one logit per image.
/// At 32x32 each network drops its 512-channel stage (e4 and d1; c4). At 128x128 each gains one
/// 512-channel stage: e5 512->512 and d0 512->512 in the generator, c4b 512->512 in the discriminator.
/// Parameter names: `<block>.weight` (PyTorch layout in checkpoints), `<block>.bn.weight`,
/// `<block>.bn.bias`, `<block>.bn.running_mean`, `<block>.bn.running_var`.
public enum DiscoGANModels {
    public static let supportedSizes = [32, 64, 128]

    public static func generatorBlocks(size: Int, channels: Int) -> [BlockSpec] {
        precondition(supportedSizes.contains(size), "generator: size \(size) is not one of \(supportedSizes)")
        var enc: [BlockSpec] = [
            BlockSpec("e1", .conv, channels, 64, batchNorm: false, activation: .leakyReLU),
            BlockSpec("e2", .conv, 64, 128, batchNorm: true, activation: .leakyReLU),
            BlockSpec("e3", .conv, 128, 256, batchNorm: true, activation: .leakyReLU),
        ]
        var dec: [BlockSpec] = [
            BlockSpec("d2", .deconv, 256, 128, batchNorm: true, activation: .relu),
            BlockSpec("d3", .deconv, 128, 64, batchNorm: true, activation: .relu),
            BlockSpec("d4", .deconv, 64, channels, batchNorm: false, activation: .sigmoid),
        ]
        if size >= 64 {
            enc.append(BlockSpec("e4", .conv, 256, 512, batchNorm: true, activation: .leakyReLU))
            dec.insert(BlockSpec("d1", .deconv, 512, 256, batchNorm: true, activation: .relu), at: 0)
        }
        if size >= 128 {
            enc.append(BlockSpec("e5", .conv, 512, 512, batchNorm: true, activation: .leakyReLU))
            dec.insert(BlockSpec("d0", .deconv, 512, 512, batchNorm: true, activation: .relu), at: 0)
        }
        return enc + dec
    }

    /// Blocks and the indices of the feature taps (f2, f3, f4, ...).
    public static func discriminatorBlocks(size: Int, channels: Int) -> (blocks: [BlockSpec], taps: [Int]) {
        precondition(supportedSizes.contains(size), "discriminator: size \(size) is not one of \(supportedSizes)")
        var b: [BlockSpec] = [
            BlockSpec("c1", .conv, channels, 64, batchNorm: false, activation: .leakyReLU),
            BlockSpec("c2", .conv, 64, 128, batchNorm: true, activation: .leakyReLU),
            BlockSpec("c3", .conv, 128, 256, batchNorm: true, activation: .leakyReLU),
        ]
        if size >= 64 { b.append(BlockSpec("c4", .conv, 256, 512, batchNorm: true, activation: .leakyReLU)) }
        if size >= 128 { b.append(BlockSpec("c4b", .conv, 512, 512, batchNorm: true, activation: .leakyReLU)) }
        let last = b.last!.outChannels
        b.append(BlockSpec("c5", .conv, last, 1, kernel: 4, stride: 1, padding: 0, batchNorm: false, activation: .identity))
        return (b, Array(1..<(b.count - 1)))
    }

    public static func generator(size: Int, channels: Int) -> Network {
        Network(blocks: generatorBlocks(size: size, channels: channels))
    }

    public static func discriminator(size: Int, channels: Int) -> Network {
        let d = discriminatorBlocks(size: size, channels: channels)
        return Network(blocks: d.blocks, featureTaps: d.taps)
    }
}
