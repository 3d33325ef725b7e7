/// An image in memory: `height` rows of `width` pixels, each `channels` interleaved
/// samples (HWC, row-major), values in [0, 1].
///
/// Channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. The sample of channel `c` at column `x`,
/// row `y` is `pixels[(y * width + x) * channels + c]`.
public struct Image: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [Float]

    /// An image with the given pixels; `pixels.count` must be `width * height * channels`.
    public init(width: Int, height: Int, channels: Int, pixels: [Float]) {
        precondition(width > 0 && height > 0, "image size must be positive, got \(width)x\(height)")
        precondition((1...4).contains(channels), "channels must be 1...4, got \(channels)")
        precondition(pixels.count == width * height * channels,
                     "\(width)x\(height)x\(channels) image needs \(width * height * channels) samples, got \(pixels.count)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// An image filled with one value in every sample.
    public init(width: Int, height: Int, channels: Int, value: Float = 0) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [Float](repeating: value, count: width * height * channels))
    }

    /// The sample of channel `c` at column `x`, row `y`.
    @inlinable public subscript(x: Int, y: Int, c: Int) -> Float {
        get { pixels[(y * width + x) * channels + c] }
        set { pixels[(y * width + x) * channels + c] = newValue }
    }

    /// Whether the last channel is alpha (2 or 4 channels).
    public var hasAlpha: Bool { channels == 2 || channels == 4 }

    /// Samples quantised to 8 bits (round to nearest, clamped to 0...255), same layout.
    public func bytes() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: pixels.count) { out, count in
            pixels.withUnsafeBufferPointer { p in
                for i in 0..<p.count {
                    // Half-up rounding of the clamped value (NaN becomes 0).
                    let v = p[i] * 255 + 0.5
                    out[i] = v >= 255 ? 255 : v > 0 ? UInt8(v) : 0
                }
            }
            count = pixels.count
        }
    }

    /// An image from 8-bit samples (value / 255), HWC layout.
    public init(width: Int, height: Int, channels: Int, bytes: [UInt8]) {
        self.init(width: width, height: height, channels: channels, pixels: bytes.map { byteToUnit[Int($0)] })
    }
}

/// A failure to read, decode or write an image. The description names the file and says
/// what is wrong, e.g. `photos/cat.png: truncated: the file ends before the image data does`.
public struct ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong, for callers that react differently to each case.
    public enum Kind: String, Sendable {
        /// The file could not be opened or read (missing, permissions, a folder...).
        case unreadable
        /// The file is empty.
        case empty
        /// The bytes are neither PNG nor JPEG.
        case unknownFormat
        /// A PNG or JPEG that is truncated, corrupt or uses something unsupported.
        case corrupt
        /// The header claims more pixels than the limit; nothing was allocated for them.
        case tooLarge
        /// Memory ran out.
        case outOfMemory
        /// Writing failed (folder missing, disk full...) or the image cannot be encoded so.
        case unwritable
    }

    public let path: String
    public let kind: Kind
    public let detail: String

    public init(path: String, kind: Kind, detail: String) {
        self.path = path
        self.kind = kind
        self.detail = detail
    }

    public var description: String { "\(path): \(detail)" }
}

/// `byteToUnit[b]` = b / 255: 8-bit sample to [0, 1].
let byteToUnit: [Float] = (0..<256).map { Float($0) / 255 }
