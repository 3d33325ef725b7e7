import Foundation
import DiscoCore

/// Where a domain's stream of images stands: `position` images of epoch `epoch` (in that
/// epoch's shuffled order) have been consumed. Saved in checkpoints to resume exactly.
public struct DomainCursor: Codable, Equatable, Sendable {
    public var epoch: Int
    public var position: Int
    public init(epoch: Int = 0, position: Int = 0) { self.epoch = epoch; self.position = position }
}

/// The whole state of an `UnpairedLoader`: one cursor per domain.
public struct LoaderState: Codable, Equatable, Sendable {
    public var a: DomainCursor
    public var b: DomainCursor
    public init(a: DomainCursor = DomainCursor(), b: DomainCursor = DomainCursor()) { self.a = a; self.b = b }
}

/// Settings of an `UnpairedLoader`.
public struct LoaderOptions: Sendable {
    /// Images per batch and per domain.
    public var batch = 64
    /// Side of the square images handed to the model, in pixels.
    public var size = 64
    /// Channels handed to the model: 1 (gray) or 3 (RGB).
    public var channels = 3
    /// The run's seed; shuffles and augmentation are pure functions of it.
    public var seed: UInt64 = 0
    /// Side images are resized to before a random `size` x `size` crop (CycleGAN's `load_size`
    /// with `preprocess resize_and_crop`); nil or `size`: resized to `size`, no crop (DiscoGAN).
    public var loadSize: Int? = nil
    /// Random horizontal flips, each image with probability 1/2 (CycleGAN without `no_flip`).
    public var flip = false
    /// Memory budget for keeping prepared images (8 bits per sample) between epochs; a domain
    /// is cached when it fits in half of it.
    public var cacheBytes = 1 << 30
    /// Batches prepared ahead by the background thread.
    public var prefetch = 3
    /// Pixel limit for decoding (see `decodeImage`).
    public var maxPixels = defaultMaxPixels
    /// The positions of every batch this process serves (a rank's share in data-parallel
    /// training); nil: all `batch`. The cursors still walk the whole batch, so they, the order
    /// and the augmentation are those of one process serving everything: a slice of a batch is
    /// that batch's images at those positions. Only the slice's images are decoded. A file that
    /// fails to decode is replaced by the next decodable one in the epoch's order, and the cursor
    /// moves by the batch regardless (it cannot know about the other ranks' files), so with
    /// broken files the batches differ from one process's (which skips them).
    public var slice: Range<Int>? = nil

    public init() {}

    /// Side at which images are prepared before a random crop: size x 286/256, as pix2pix/CycleGAN.
    public var augmentedLoadSize: Int { Int((Double(size) * 286 / 256).rounded()) }
    /// CycleGAN's default augmentation: random crops from `augmentedLoadSize` and random flips.
    public var augment: Bool {
        get { preparedSize > size && flip }
        set { loadSize = newValue ? augmentedLoadSize : nil; flip = newValue }
    }
    /// The side images are prepared (resized) at.
    var preparedSize: Int { max(loadSize ?? size, size) }
}

/// One iteration's data: a batch of A and a batch of B, each `[batch, size, size, channels]`
/// (NHWC) floats in [0, 1], and the loader state just after them.
public struct UnpairedBatch: Sendable {
    public let a: [Float]
    public let b: [Float]
    public let state: LoaderState
}

/// Serves unpaired batches of two image folders, prepared on a background thread.
///
/// Each domain walks its own shuffled order, epoch after epoch: the order of epoch e is a
/// pure function of (seed, domain, e), and the augmentation of the image at position p of
/// epoch e a pure function of (seed, domain, e, p). A loader created with the `state` of a
/// checkpoint therefore serves exactly the batches an unbroken run would have seen next.
/// A file that fails to decode is skipped (the next image takes its place) and reported
/// once on stderr with its path; it is skipped again, silently, in later epochs.
public final class UnpairedLoader: @unchecked Sendable {
    public let options: LoaderOptions
    public let folderA: ImageFolder
    public let folderB: ImageFolder

    /// State after the last batch returned by `next()` (the initial state before any).
    public private(set) var state: LoaderState
    /// Total seconds `next()` spent waiting for the background thread, and over how many calls.
    public private(set) var waitSeconds: Double = 0
    public private(set) var lastWaitSeconds: Double = 0
    public private(set) var batchesServed = 0

    /// Iterations per epoch as in the DiscoGAN reference: min(|A|, |B|) / batch (at least 1).
    public var iterationsPerEpoch: Int { max(1, min(folderA.count, folderB.count) / options.batch) }

    private let producer: BatchProducer

    /// Starts the background thread at `state`. Prints each folder's skipped-files warning.
    public init(a: ImageFolder, b: ImageFolder, options: LoaderOptions, state: LoaderState = LoaderState()) {
        precondition(options.channels == 1 || options.channels == 3, "channels must be 1 or 3, got \(options.channels)")
        precondition(options.batch > 0 && options.size > 0 && options.prefetch > 0, "batch, size and prefetch must be positive")
        precondition(options.slice.map { !$0.isEmpty && $0.lowerBound >= 0 && $0.upperBound <= options.batch } ?? true,
                     "slice \(options.slice!) is not a part of 0..<\(options.batch)")
        precondition(state.a.epoch >= 0 && state.a.position >= 0 && state.b.epoch >= 0 && state.b.position >= 0,
                     "loader state must not be negative, got \(state)")
        self.options = options
        folderA = a
        folderB = b
        self.state = state
        for folder in a.path == b.path ? [a] : [a, b] { for w in folder.warnings { printWarning(w) } }
        let failures = FailureLog()
        producer = BatchProducer(a: DomainStream(folder: a, domain: 0, options: options, cursor: state.a, failures: failures),
                                 b: DomainStream(folder: b, domain: 1, options: options, cursor: state.b, failures: failures),
                                 capacity: options.prefetch)
    }

    deinit { producer.stop() }

    /// The next batch; blocks until the background thread has it ready. Throws when a domain
    /// has no decodable image left.
    public func next() throws -> UnpairedBatch {
        let start = monotonicSeconds()
        let result = producer.take()
        lastWaitSeconds = monotonicSeconds() - start
        waitSeconds += lastWaitSeconds
        let batch = try result.get()
        state = batch.state
        batchesServed += 1
        return batch
    }

    /// Stops the background thread and waits for it to finish. Idempotent; also done on deinit.
    public func stop() { producer.stop() }

    /// CPU seconds the background thread has spent preparing batches (A and B), and how many
    /// it has prepared: the cost of loading independent of other load on the machine.
    public var productionCPUSeconds: Double { producer.statistics.seconds }
    public var batchesProduced: Int { producer.statistics.batches }
}

/// The background thread and its bounded queue of prepared batches. The thread holds this
/// object (not the loader), so releasing the loader stops it.
private final class BatchProducer: @unchecked Sendable {
    private let streamA: DomainStream
    private let streamB: DomainStream
    private let capacity: Int
    private let condition = NSCondition()
    private var queue: [Result<UnpairedBatch, Error>] = []
    private var stopping = false
    private var running = true
    private var cpuSeconds = 0.0
    private var produced = 0

    /// CPU seconds spent producing, and batches produced.
    var statistics: (seconds: Double, batches: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (cpuSeconds, produced)
    }

    init(a: DomainStream, b: DomainStream, capacity: Int) {
        streamA = a
        streamB = b
        self.capacity = capacity
        let thread = Thread { self.run() }
        thread.name = "disco-loader"
        thread.start()
    }

    /// The oldest prepared batch, waiting for one if needed. A failure stays queued, so
    /// every later call reports it too.
    func take() -> Result<UnpairedBatch, Error> {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty { condition.wait() }
        let result = queue[0]
        if case .success = result { queue.removeFirst() }
        condition.broadcast()
        return result
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    private func run() {
        condition.lock()
        while true {
            while queue.count >= capacity && !stopping { condition.wait() }
            if stopping { break }
            condition.unlock()
            let start = threadCPUSeconds()
            let result = Result { () throws -> UnpairedBatch in
                let a = try streamA.nextBatch()
                let b = try streamB.nextBatch()
                return UnpairedBatch(a: a, b: b, state: LoaderState(a: streamA.cursor, b: streamB.cursor))
            }
            let spent = threadCPUSeconds() - start
            condition.lock()
            cpuSeconds += spent
            produced += 1
            queue.append(result)
            condition.broadcast()
            if case .failure = result { break }
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }
}

/// One domain's image stream. Used only by the loader's background thread.
final class DomainStream {
    let folder: ImageFolder
    let domain: UInt64
    let options: LoaderOptions
    private(set) var cursor: DomainCursor
    private var order: [Int]
    /// Prepared images (loadSize^2 x channels bytes) by file index, when the domain fits the budget.
    private var cache: [[UInt8]?]
    private let caching: Bool
    private var failed = Set<Int>()
    private let failures: FailureLog

    init(folder: ImageFolder, domain: UInt64, options: LoaderOptions, cursor: DomainCursor, failures: FailureLog) {
        self.folder = folder
        self.failures = failures
        self.domain = domain
        self.options = options
        self.cursor = cursor
        order = epochPermutation(count: folder.count, seed: options.seed, domain: domain, epoch: cursor.epoch)
        let bytesPerImage = options.preparedSize * options.preparedSize * options.channels
        caching = folder.count * bytesPerImage <= options.cacheBytes / 2
        cache = caching ? Array(repeating: nil, count: folder.count) : []
    }

    /// The next `batch` images as NHWC floats, advancing the cursor past them and past any
    /// file that fails to decode.
    func nextBatch() throws -> [Float] {
        let size = options.size, c = options.channels, load = options.preparedSize
        let imageLength = size * size * c
        let slots = options.slice ?? 0..<options.batch
        var out = [Float](repeating: 0, count: slots.count * imageLength)
        for g in 0..<options.batch {
            let (prepared, epoch, position): ([UInt8], Int, Int)
            if options.slice == nil {
                (prepared, epoch, position) = try nextPrepared()
            } else {
                guard let p = try nextSlot(decode: slots.contains(g)) else { continue }
                (prepared, epoch, position) = p
            }
            let i = g - slots.lowerBound
            var x0 = 0, y0 = 0, flip = false
            if load > size || options.flip {
                // The same three draws whether cropping, flipping or both (a crop from a prepared
                // image of side `size` is the whole image).
                var rng = SplitMix64(seed: streamSeed(options.seed, domain, UInt64(epoch), UInt64(position)))
                x0 = Int(rng.next() % UInt64(load - size + 1))
                y0 = Int(rng.next() % UInt64(load - size + 1))
                flip = rng.next() & 1 == 1 && options.flip
            }
            out.withUnsafeMutableBufferPointer { dst in
                prepared.withUnsafeBufferPointer { src in
                    byteToUnit.withUnsafeBufferPointer { unit in
                        let base = i * imageLength
                        for y in 0..<size {
                            let row = (y0 + y) * load, d0 = base + y * size * c
                            if !flip {
                                let s0 = (row + x0) * c
                                for k in 0..<(size * c) { dst[d0 + k] = unit[Int(src[s0 + k])] }
                                continue
                            }
                            for x in 0..<size {
                                let s = (row + x0 + size - 1 - x) * c, d = d0 + x * c
                                for ch in 0..<c { dst[d + ch] = unit[Int(src[s + ch])] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Slice mode: moves the cursor one position on; when `decode`, returns the image there (or,
    /// if it does not decode, the next one of the epoch's order that does) with the epoch and
    /// position it was drawn at.
    private func nextSlot(decode: Bool) throws -> ([UInt8], Int, Int)? {
        if cursor.position >= folder.count {
            cursor = DomainCursor(epoch: cursor.epoch + 1, position: 0)
            order = epochPermutation(count: folder.count, seed: options.seed, domain: domain, epoch: cursor.epoch)
        }
        let epoch = cursor.epoch, position = cursor.position
        cursor.position += 1
        guard decode else { return nil }
        for k in 0..<folder.count {
            if let bytes = prepared(index: order[(position + k) % folder.count]) { return (bytes, epoch, position) }
        }
        throw ImageError(path: folder.path, kind: .corrupt, detail: "no image of this folder decodes any more; replace the broken files")
    }

    /// The prepared image of file `index`, nil if it does not decode (reported once).
    private func prepared(index: Int) -> [UInt8]? {
        if failed.contains(index) { return nil }
        if caching, let hit = cache[index] { return hit }
        do {
            let image = try loadSquareImage(path: folder.files[index], size: options.preparedSize,
                                            channels: options.channels, maxPixels: options.maxPixels)
            let bytes = image.bytes()
            if caching { cache[index] = bytes }
            return bytes
        } catch {
            failed.insert(index)
            failures.report(path: folder.files[index], error: error)
            return nil
        }
    }

    /// The next decodable image (prepared, 8-bit) with the epoch and position it was drawn at.
    private func nextPrepared() throws -> ([UInt8], Int, Int) {
        while true {
            if failed.count == folder.count {
                throw ImageError(path: folder.path, kind: .corrupt,
                                 detail: "no image of this folder decodes any more; replace the broken files")
            }
            if cursor.position >= folder.count {
                cursor = DomainCursor(epoch: cursor.epoch + 1, position: 0)
                order = epochPermutation(count: folder.count, seed: options.seed, domain: domain, epoch: cursor.epoch)
            }
            let epoch = cursor.epoch, position = cursor.position
            let index = order[position]
            cursor.position += 1
            if failed.contains(index) { continue }
            if caching, let hit = cache[index] { return (hit, epoch, position) }
            do {
                let image = try loadSquareImage(path: folder.files[index], size: options.preparedSize,
                                                channels: options.channels, maxPixels: options.maxPixels)
                let bytes = image.bytes()
                if caching { cache[index] = bytes }
                return (bytes, epoch, position)
            } catch {
                failed.insert(index)
                failures.report(path: folder.files[index], error: error)
            }
        }
    }
}

/// Files that failed to decode in one loader, each reported once on stderr.
final class FailureLog {
    private var reported = Set<String>()

    func report(path: String, error: Error) {
        if reported.insert(path).inserted { printWarning("warning: skipping an image that does not decode: \(error)") }
    }
}

func printWarning(_ line: String) {
    FileWriter.printError("disco: " + line)
}

func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
