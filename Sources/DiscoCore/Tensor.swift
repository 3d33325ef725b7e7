#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A dense float32 tensor, row-major over `shape`.
///
/// Layout conventions, kept everywhere in disco:
/// - image activations are **NHWC**: `[batch, height, width, channels]`, channels innermost;
/// - convolution weights are **OHWI**: `[outChannels, kernelH, kernelW, inChannels]` of the
///   convolution (a transposed convolution stores the weight of the convolution it is the
///   adjoint of, so PyTorch's `[in, out, kh, kw]` ConvTranspose2d weight maps to the same OHWI);
/// - pixel values are in [0, 1].
/// PyTorch uses NCHW / OIHW; `permuted(_:)` converts at the boundaries (fixtures, checkpoints).
///
/// A tensor either owns a 64-byte aligned allocation or is a view into another
/// tensor's storage (`owner` keeps that alive). It has reference semantics.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>
    private let owner: AnyObject?

    /// A zero-filled tensor.
    public convenience init(zeros shape: [Int]) {
        self.init(uninitialized: shape)
        data.initialize(repeating: 0, count: count)
    }

    /// A tensor whose contents are not initialised: the caller writes every element.
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = TensorMemory.allocate(max(count, 1))
        self.owner = nil
    }

    public convenience init(shape: [Int], values: [Float]) {
        let n = shape.reduce(1, *)
        precondition(values.count == n, "Tensor: \(values.count) values for shape \(shape) (needs \(n))")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: n) }
    }

    public convenience init(filling value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        data.initialize(repeating: value, count: count)
    }

    /// A view of `shape` onto `count` elements of `base` starting at `offset`.
    public init(viewOf base: Tensor, offset: Int, shape: [Int]) {
        let n = shape.reduce(1, *)
        precondition(offset >= 0 && offset + n <= base.count,
                     "Tensor view: offset \(offset) + \(shape) exceeds base \(base.shape)")
        self.shape = shape
        self.count = n
        self.data = base.data + offset
        self.owner = base
    }

    deinit {
        if owner == nil { TensorMemory.free(data, max(count, 1)) }
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// The same storage seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "reshape: \(shape) has \(count) elements, \(newShape) does not")
        return Tensor(viewOf: self, offset: 0, shape: newShape)
    }

    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    public func fill(_ v: Float) { data.update(repeating: v, count: count) }
    public func zero() { fill(0) }

    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy(from:): \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// A new tensor with axes permuted: `result.shape[i] == shape[axes[i]]`.
    public func permuted(_ axes: [Int]) -> Tensor {
        precondition(axes.count == shape.count && Set(axes) == Set(0..<shape.count),
                     "permuted: axes \(axes) do not permute shape \(shape)")
        let outShape = axes.map { shape[$0] }
        let out = Tensor(uninitialized: outShape)
        var inStrides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
        let srcStrides = axes.map { inStrides[$0] }
        var idx = [Int](repeating: 0, count: shape.count)
        var src = 0
        for o in 0..<count {
            out.data[o] = data[src]
            var d = shape.count - 1
            while d >= 0 {
                idx[d] += 1
                src += srcStrides[d]
                if idx[d] < outShape[d] { break }
                src -= srcStrides[d] * outShape[d]
                idx[d] = 0
                d -= 1
            }
        }
        return out
    }

    /// NCHW (PyTorch) -> NHWC (disco) for activations; OIHW -> OHWI for conv weights.
    public func nchwToNHWC() -> Tensor { permuted([0, 2, 3, 1]) }
    /// NHWC (disco) -> NCHW (PyTorch); OHWI -> OIHW.
    public func nhwcToNCHW() -> Tensor { permuted([0, 3, 1, 2]) }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = (0..<min(count, 6)).map { String(data[$0]) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 6 ? ", ..." : "")])"
    }
}

/// Largest absolute difference between two tensors of equal shape.
public func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "maxAbsDifference: shapes \(a.shape) and \(b.shape) differ")
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a.data[i] - b.data[i])) }
    return m
}

/// Tensor storage. Training allocates and frees the same large tensors (1-64 MB) every step.
/// In glibc's heap those blocks fragment it (the heap grew to ~1.0 GB for 0.69 GB of live
/// tensors, more or less from run to run), and as fresh mmaps each new tensor page-faults (the
/// kernel zeroes every page: ~10% of a step). So blocks of `pooledBytes` or more are mapped
/// apart and, when freed, kept in a pool by exact size for the next tensor of that size (the
/// same shapes come back every step). The pool never lets mapped memory exceed the most ever
/// live at once: on a miss, pooled blocks of other sizes are unmapped first. Tensor memory is
/// therefore bounded by `peakLiveBytes`. A miss takes the smallest larger pooled block first (its
/// tail unmapped), so a steady training loop takes few page faults (measured at 64x64, batch 64:
/// 6,800 per iteration, against 11,300 with exact-size reuse alone).
/// Smaller blocks come from malloc. Counts live tensor bytes (`liveBytes`, `peakLiveBytes`).
public enum TensorMemory {
    /// Blocks of this many bytes or more are pooled.
    public static let pooledBytes = 256 << 10
    private static let lock = NSLock()
    nonisolated(unsafe) private static var live = 0, peak = 0, pooled = 0
    nonisolated(unsafe) private static var pool: [Int: [UnsafeMutableRawPointer]] = [:]

    /// Bytes held by tensors now, and the most held at once since the last `resetPeak()`.
    public static var liveBytes: Int { lock.lock(); defer { lock.unlock() }; return live }
    public static var peakLiveBytes: Int { lock.lock(); defer { lock.unlock() }; return peak }
    /// Bytes of freed blocks kept for reuse.
    public static var pooledFreeBytes: Int { lock.lock(); defer { lock.unlock() }; return pooled }
    public static func resetPeak() { lock.lock(); peak = live; lock.unlock() }

    static func mappedSize(_ bytes: Int) -> Int { (bytes + 4095) & ~4095 }

    /// Unmaps every pooled block (memory goes back to the system; the next tensors map afresh).
    public static func releasePooled() {
        lock.lock()
        let blocks = pool.flatMap { key, list in list.map { ($0, key) } }
        pool = [:]; pooled = 0
        lock.unlock()
        for (b, n) in blocks { munmap(b, n) }
    }

    static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        let bytes = count * MemoryLayout<Float>.stride
        if bytes < pooledBytes {
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, max(bytes, 4)) == 0, let raw else {
                fatalError("Tensor: cannot allocate \(bytes) bytes")
            }
            lock.lock(); live += bytes; if live > peak { peak = live }; lock.unlock()
            return raw.bindMemory(to: Float.self, capacity: count)
        }
        let size = mappedSize(bytes)
        lock.lock()
        live += size; if live > peak { peak = live }
        if var blocks = pool[size], let block = blocks.popLast() {
            pool[size] = blocks.isEmpty ? nil : blocks
            pooled -= size
            lock.unlock()
            return block.bindMemory(to: Float.self, capacity: count)
        }
        // A miss. The smallest larger pooled block serves it, its tail unmapped: its pages stay
        // mapped and filled, so the tensor takes no page faults (a step's mix of sizes differs
        // between D and G steps, so exact-size hits alone left ~11,000 faults per iteration).
        if let key = pool.keys.filter({ $0 > size }).min(), var blocks = pool[key], let block = blocks.popLast() {
            pool[key] = blocks.isEmpty ? nil : blocks
            pooled -= key
            lock.unlock()
            munmap(block + size, key - size)
            return block.bindMemory(to: Float.self, capacity: count)
        }
        // Otherwise keep live + pooled within the peak by unmapping pooled blocks, largest first.
        var unmap: [(UnsafeMutableRawPointer, Int)] = []
        for key in pool.keys.sorted(by: >) where live + pooled > peak {
            var blocks = pool[key]!
            while live + pooled > peak, let b = blocks.popLast() { unmap.append((b, key)); pooled -= key }
            pool[key] = blocks.isEmpty ? nil : blocks
        }
        lock.unlock()
        for (b, n) in unmap { munmap(b, n) }
        guard let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            fatalError("Tensor: cannot map \(size) bytes (out of memory?)")
        }
        return raw.bindMemory(to: Float.self, capacity: count)
    }

    static func free(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        let bytes = count * MemoryLayout<Float>.stride
        if bytes < pooledBytes {
            lock.lock(); live -= bytes; lock.unlock()
            Glibc.free(p)
            return
        }
        let size = mappedSize(bytes)
        lock.lock()
        live -= size; pooled += size
        pool[size, default: []].append(UnsafeMutableRawPointer(p))
        lock.unlock()
    }
}


