import Foundation

/// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors):
/// 8 bytes little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}, "__metadata__": {..}}`,
/// then the raw little-endian tensor bytes. disco writes F32 only; it reads F32, F64, I64 and I32
/// (converted to Float; integers also kept exact as Int for configuration tensors).
public enum Safetensors {
    public struct FormatError: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): not a valid safetensors file: \(message)" }
    }

    public struct Entry {
        public let dtype: String
        public let shape: [Int]
        public let floats: [Float]
        /// Exact values for integer dtypes (empty for float dtypes).
        public let ints: [Int]
        public var tensor: Tensor { Tensor(shape: shape, values: floats) }
    }

    public struct File {
        public let path: String
        public let entries: [String: Entry]
        public let metadata: [String: String]

        public func entry(_ name: String) throws -> Entry {
            guard let e = entries[name] else { throw FormatError(path: path, message: "no tensor named '\(name)'") }
            return e
        }
        public func tensor(_ name: String) throws -> Tensor { try entry(name).tensor }
        public func ints(_ name: String) throws -> [Int] {
            let e = try entry(name)
            return e.ints.isEmpty ? e.floats.map { Int($0) } : e.ints
        }
        public var names: [String] { entries.keys.sorted() }
    }

    public static func read(path: String) throws -> File {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(path: path, message: "cannot read the file (missing or unreadable)")
        }
        return try parse(data, path: path)
    }

    /// Largest header disco reads (its own headers are a few kB).
    public static let maxHeaderLength = 100_000_000

    /// Bytes per element of the dtypes disco reads.
    public static func width(dtype: String) -> Int? {
        switch dtype {
        case "F32", "I32": return 4
        case "F64", "I64": return 8
        default: return nil
        }
    }

    /// A checked header: every tensor's dtype is one disco reads, its shape has non-negative
    /// dimensions, and its byte range fits its shape; the ranges tile the data that follows the
    /// header exactly (no overlap, no hole, nothing past the end), as the format requires.
    public struct Header {
        public struct Tensor {
            public let dtype: String
            public let shape: [Int]
            /// Elements (the product of `shape`).
            public let count: Int
            /// Byte range from the start of the file.
            public let bytes: Range<Int>
        }
        public let tensors: [String: Tensor]
        public let metadata: [String: String]
    }

    /// Reads and checks the header of a safetensors file held in `bytes` (the whole file). Nothing is
    /// allocated from a length or shape in the file before it is checked against the file's size.
    public static func header(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Header {
        func fail(_ m: String) -> FormatError { FormatError(path: path, message: m) }
        guard bytes.count >= 8 else { throw fail("shorter than its 8-byte header length") }
        let headerLen = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLen <= UInt64(bytes.count - 8), headerLen <= UInt64(maxHeaderLength) else {
            throw fail("header length \(headerLen) exceeds the file of \(bytes.count) bytes (truncated?)\(headerLen > UInt64(maxHeaderLength) ? " or the \(maxHeaderLength)-byte limit" : "")")
        }
        let base = 8 + Int(headerLen), dataLength = bytes.count - base
        let headerData = Data(bytes: bytes.baseAddress! + 8, count: Int(headerLen))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        var tensors: [String: Header.Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not a JSON object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("metadata '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw fail("entry '\(name)' is not a JSON object") }
            guard let dtype = info["dtype"] as? String else { throw fail("tensor '\(name)' has no dtype string") }
            guard let shape = info["shape"] as? [Int] else { throw fail("tensor '\(name)' has no shape (a list of integers)") }
            guard let offs = info["data_offsets"] as? [Int], offs.count == 2 else {
                throw fail("tensor '\(name)' has no data_offsets (two integers)")
            }
            guard let width = width(dtype: dtype) else { throw fail("tensor '\(name)' has unsupported dtype \(dtype)") }
            // The element count, refusing overflow and anything larger than the data could hold.
            var count = 1
            for d in shape {
                guard d >= 0 else { throw fail("tensor '\(name)' has a negative dimension in shape \(shape)") }
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, p <= dataLength / width else {
                    throw fail("tensor '\(name)' of shape \(shape) \(dtype) is larger than the file's \(dataLength) data bytes")
                }
                count = p
            }
            guard offs[0] >= 0, offs[0] <= offs[1], offs[1] <= dataLength, offs[1] - offs[0] == count * width else {
                throw fail("tensor '\(name)' data range \(offs) does not fit shape \(shape) \(dtype) in \(dataLength) data bytes")
            }
            tensors[name] = Header.Tensor(dtype: dtype, shape: shape, count: count, bytes: (base + offs[0])..<(base + offs[1]))
        }
        // The ranges must tile the data: sorted by start, each begins where the previous ended.
        var end = base
        for (name, t) in tensors.sorted(by: { ($0.value.bytes.lowerBound, $0.value.bytes.upperBound) < ($1.value.bytes.lowerBound, $1.value.bytes.upperBound) }) {
            guard t.bytes.lowerBound == end else {
                throw fail(t.bytes.lowerBound < end ? "tensor '\(name)' overlaps another tensor's data"
                                                    : "a gap of \(t.bytes.lowerBound - end) bytes before tensor '\(name)'")
            }
            end = t.bytes.upperBound
        }
        guard end == bytes.count else { throw fail("\(bytes.count - end) bytes after the last tensor (damaged, or not a safetensors file)") }
        return Header(tensors: tensors, metadata: metadata)
    }

    /// A safetensors file mapped into memory (not read): its header checked as `header` does, and
    /// float tensors used in place where they are F32 and aligned (page cache, no copy), else
    /// converted once. For large model files read once (`disco translate`'s generator).
    public final class MappedFile {
        public let path: String
        public let header: Header
        private let base: UnsafeRawPointer
        private let length: Int
        private var copies: [Tensor] = []

        /// Maps `path`; errors name the file and the reason.
        public init(path: String) throws {
            func fail(_ m: String) -> FormatError { FormatError(path: path, message: m) }
            self.path = path
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw ReadError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw ReadError(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
            let size = Int(st.st_size)
            guard size >= 8 else { throw fail("shorter than its 8-byte header length") }
            guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
                throw ReadError(path: path, reason: "cannot map: \(String(cString: strerror(errno)))")
            }
            base = UnsafeRawPointer(map); length = size
            do { header = try Safetensors.header(UnsafeRawBufferPointer(start: base, count: size), path: path) } catch {
                munmap(map, size)
                throw error
            }
        }

        deinit { munmap(UnsafeMutableRawPointer(mutating: base), length) }

        public var metadata: [String: String] { header.metadata }

        /// The values of float tensor `name` (F32 or F64) as Float, valid while this file lives:
        /// in the mapping when F32 and aligned, else a converted copy. nil when there is no such tensor.
        public func floats(_ name: String) throws -> UnsafeBufferPointer<Float>? {
            guard let t = header.tensors[name] else { return nil }
            let width = t.dtype == "F32" ? 4 : t.dtype == "F64" ? 8 : 0
            guard width > 0 else { throw ReadError(path: path, reason: "tensor '\(name)' has dtype \(t.dtype); disco reads F32 or F64 weights") }
            let src = base + t.bytes.lowerBound
            #if _endian(little)
            if width == 4 && Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
                return UnsafeBufferPointer(start: src.assumingMemoryBound(to: Float.self), count: t.count)
            }
            #endif
            let copy = Tensor(uninitialized: [t.count])
            for i in 0..<t.count {
                copy.data[i] = width == 4 ? Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                                          : Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            }
            copies.append(copy)
            return UnsafeBufferPointer(start: copy.data, count: t.count)
        }
    }

    /// A file that cannot be opened or mapped.
    public struct ReadError: Error, CustomStringConvertible {
        public let path: String, reason: String
        public var description: String { "\(path): \(reason)" }
    }

    public static func parse(_ data: Data, path: String) throws -> File {
        try data.withUnsafeBytes { raw in
            let h = try header(raw, path: path)
            var entries: [String: Entry] = [:]
            for (name, t) in h.tensors {
                let n = t.count
                let p = raw.baseAddress! + t.bytes.lowerBound
                var floats = [Float](repeating: 0, count: n)
                var ints: [Int] = []
                switch t.dtype {
                case "F32": for i in 0..<n { floats[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                case "F64": for i in 0..<n { floats[i] = Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
                case "I32":
                    ints = (0..<n).map { Int(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
                    floats = ints.map(Float.init)
                default:
                    ints = (0..<n).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
                    floats = ints.map(Float.init)
                }
                entries[name] = Entry(dtype: t.dtype, shape: t.shape, floats: floats, ints: ints)
            }
            return File(path: path, entries: entries, metadata: h.metadata)
        }
    }

    /// Serialises F32 tensors (in the order given) with optional string metadata.
    public static func serialize(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for (name, t) in tensors {
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]] as [String: Any]
            offset += 4 * t.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (json.count + 8) % 8 != 0 { json.append(0x20) }  // pad so the data is 8-byte aligned
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for (_, t) in tensors {
            out.append(UnsafeBufferPointer(start: t.data, count: t.count))
        }
        return out
    }
}
