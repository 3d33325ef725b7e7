import Foundation

/// Resampling filters for `Image.resized`. When shrinking by a factor s, the filter is
/// stretched by s (support s times wider) so it averages over every source pixel that falls
/// under an output pixel: antialiasing as in PIL's `Image.resize`.
public enum ResizeFilter: String, CaseIterable, Sendable {
    /// Triangle filter, support 1 (PIL BILINEAR).
    case bilinear
    /// Catmull-Rom cubic (a = -0.5), support 2 (PIL BICUBIC).
    case bicubic
    /// Lanczos windowed sinc, support 3 (PIL LANCZOS).
    case lanczos

    /// Half-width of the filter at scale 1, in source pixels.
    var support: Double {
        switch self {
        case .bilinear: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    /// Filter weight at distance `x` (in source pixels at scale 1).
    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            func sinc(_ t: Double) -> Double { t == 0 ? 1 : sin(Double.pi * t) / (Double.pi * t) }
            return x < 3 ? sinc(x) * sinc(x / 3) : 0
        }
    }
}

/// Per output position along one axis: the first source index and `taps` normalised weights
/// (`weights[o * taps + k]` multiplies source `first[o] + k`; unused taps are 0).
struct ResampleCoefficients {
    let first: [Int]
    let taps: Int
    let weights: [Float]

    /// PIL's scheme: output pixel o covers source interval centred on (o + 0.5) * scale; the
    /// filter support is stretched by max(scale, 1); weights are normalised to sum 1.
    /// `extent`: the input's span in its own pixels when it is not `inSize` (a reduced image
    /// whose last pixel is partial); scale = extent / outSize.
    init(inSize: Int, outSize: Int, filter: ResizeFilter, extent: Double? = nil) {
        let scale = (extent ?? Double(inSize)) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outSize)
        var weights = [Float](repeating: 0, count: outSize * taps)
        var w = [Double](repeating: 0, count: taps)
        for o in 0..<outSize {
            let center = (Double(o) + 0.5) * scale
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inSize)
            var total = 0.0
            for k in 0..<(hi - lo) {
                w[k] = filter.weight((Double(k + lo) - center + 0.5) / filterScale)
                total += w[k]
            }
            for k in 0..<(hi - lo) { weights[o * taps + k] = Float(total != 0 ? w[k] / total : w[k]) }
            first[o] = lo
        }
        self.first = first
        self.taps = taps
        self.weights = weights
    }
}

extension Image {
    /// This image resampled to `width` x `height` with `filter`, antialiased when shrinking
    /// (see `ResizeFilter`), values clamped to [0, 1]. Horizontal pass first, then vertical;
    /// an axis whose size does not change is left untouched.
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResizeFilter = .bicubic) -> Image {
        resized(width: newWidth, height: newHeight, filter: filter, extent: nil)
    }

    /// `extent`: the span of this image in its own pixels, when it is not its size (a reduced
    /// image whose last row and column cover part of a block: see `ScaledImage`).
    func resized(width newWidth: Int, height newHeight: Int, filter: ResizeFilter, extent: (width: Double, height: Double)?) -> Image {
        precondition(newWidth > 0 && newHeight > 0, "resize target must be positive, got \(newWidth)x\(newHeight)")
        let spanX = extent?.width ?? Double(width), spanY = extent?.height ?? Double(height)
        let alongX = newWidth != width || spanX != Double(width), alongY = newHeight != height || spanY != Double(height)
        var out = self
        if alongX { out = out.resampledHorizontally(to: newWidth, filter: filter, extent: spanX) }
        if alongY { out = out.resampledVertically(to: newHeight, filter: filter, extent: spanY) }
        if alongX || alongY {
            out.pixels.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = min(max(p[i], 0), 1) }
            }
        }
        return out
    }

    private func resampledHorizontally(to newWidth: Int, filter: ResizeFilter, extent: Double) -> Image {
        let k = ResampleCoefficients(inSize: width, outSize: newWidth, filter: filter, extent: extent)
        let c = channels, taps = k.taps, inWidth = width
        var out = [Float](repeating: 0, count: newWidth * height * c)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                k.weights.withUnsafeBufferPointer { w in
                    for y in 0..<height {
                        let row = src.baseAddress! + y * inWidth * c
                        for o in 0..<newWidth {
                            let base = row + k.first[o] * c
                            let n = min(taps, inWidth - k.first[o])
                            for ch in 0..<c {
                                var acc: Float = 0
                                for t in 0..<n { acc += w[o * taps + t] * base[t * c + ch] }
                                dst[(y * newWidth + o) * c + ch] = acc
                            }
                        }
                    }
                }
            }
        }
        return Image(width: newWidth, height: height, channels: c, pixels: out)
    }

    private func resampledVertically(to newHeight: Int, filter: ResizeFilter, extent: Double) -> Image {
        let k = ResampleCoefficients(inSize: height, outSize: newHeight, filter: filter, extent: extent)
        let rowLength = width * channels, taps = k.taps, inHeight = height
        var out = [Float](repeating: 0, count: newHeight * rowLength)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for o in 0..<newHeight {
                    let n = min(taps, inHeight - k.first[o])
                    let target = dst.baseAddress! + o * rowLength
                    for t in 0..<n {
                        let w = k.weights[o * taps + t]
                        if w == 0 { continue }
                        let source = src.baseAddress! + (k.first[o] + t) * rowLength
                        for i in 0..<rowLength { target[i] += w * source[i] }
                    }
                }
            }
        }
        return Image(width: width, height: newHeight, channels: channels, pixels: out)
    }

    /// The `w` x `h` rectangle whose top-left corner is (`x`, `y`); it must lie inside the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> Image {
        precondition(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= width && y + h <= height,
                     "crop \(w)x\(h) at (\(x), \(y)) does not fit in \(width)x\(height)")
        var out = [Float]()
        out.reserveCapacity(w * h * channels)
        for row in y..<(y + h) {
            let start = (row * width + x) * channels
            out.append(contentsOf: pixels[start..<(start + w * channels)])
        }
        return Image(width: w, height: h, channels: channels, pixels: out)
    }

    /// The centred `w` x `h` rectangle (when the margin is odd, the extra pixel is on the
    /// right/bottom, as in torchvision's CenterCrop).
    public func centerCrop(width w: Int, height h: Int) -> Image {
        cropped(x: (width - w) / 2, y: (height - h) / 2, width: w, height: h)
    }

    /// A `w` x `h` rectangle at a uniformly random position drawn from `rng`.
    public func randomCrop<G: RandomNumberGenerator>(width w: Int, height h: Int, using rng: inout G) -> Image {
        let x = Int.random(in: 0...(width - w), using: &rng)
        let y = Int.random(in: 0...(height - h), using: &rng)
        return cropped(x: x, y: y, width: w, height: h)
    }

    /// The mirror image (left and right swapped).
    public func flippedHorizontally() -> Image {
        var out = pixels
        let c = channels
        for y in 0..<height {
            for x in 0..<width {
                let s = (y * width + x) * c, d = (y * width + (width - 1 - x)) * c
                for ch in 0..<c { out[d + ch] = pixels[s + ch] }
            }
        }
        return Image(width: width, height: height, channels: c, pixels: out)
    }

    /// This image with 1 (gray) or 3 (RGB) channels: alpha is composited on white
    /// (value * alpha + (1 - alpha)); RGB becomes gray by ITU-R 601 luma
    /// (0.299 R + 0.587 G + 0.114 B, as PIL's "L" mode); gray is replicated to RGB.
    public func converted(toChannels target: Int) -> Image {
        precondition(target == 1 || target == 3, "can convert to 1 or 3 channels, not \(target)")
        if channels == target { return self }
        let n = width * height, c = channels, alphaAt = hasAlpha ? c - 1 : -1
        var out = [Float](repeating: 0, count: n * target)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let p = i * c
                    let alpha: Float = alphaAt >= 0 ? src[p + alphaAt] : 1
                    let white = 1 - alpha
                    if c <= 2 {
                        let g = src[p] * alpha + white
                        for ch in 0..<target { dst[i * target + ch] = g }
                    } else {
                        let r = src[p] * alpha + white, g = src[p + 1] * alpha + white, b = src[p + 2] * alpha + white
                        if target == 1 {
                            dst[i] = 0.299 * r + 0.587 * g + 0.114 * b
                        } else {
                            dst[i * 3] = r; dst[i * 3 + 1] = g; dst[i * 3 + 2] = b
                        }
                    }
                }
            }
        }
        return Image(width: width, height: height, channels: target, pixels: out)
    }

    /// A `size` x `size` square: the shorter side scaled to `size` (antialiased), then the
    /// centre cropped. This is how training images are prepared (DiscoGAN only resizes).
    public func squared(size: Int, filter: ResizeFilter = .bicubic) -> Image {
        squared(size: size, filter: filter, source: (width, height), extent: nil)
    }

    /// `squared` of a reduced image (see `ScaledImage`) with the geometry of its `source`, the
    /// full stored image: the same output size and sampling positions as from the full image.
    func squared(size: Int, filter: ResizeFilter, source: (width: Int, height: Int), extent: (width: Double, height: Double)?) -> Image {
        let scale = Double(size) / Double(min(source.width, source.height))
        let w = max(size, Int((Double(source.width) * scale).rounded()))
        let h = max(size, Int((Double(source.height) * scale).rounded()))
        return resized(width: w, height: h, filter: filter, extent: extent).centerCrop(width: size, height: size)
    }
}
