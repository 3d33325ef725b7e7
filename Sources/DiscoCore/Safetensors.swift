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

    public static func parse(_ data: Data, path: String) throws -> File {
        guard data.count >= 8 else { throw FormatError(path: path, message: "shorter than its 8-byte header length") }
        let headerLen = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLen <= UInt64(data.count - 8), headerLen < 100_000_000 else {
            throw FormatError(path: path, message: "header length \(headerLen) exceeds the file (truncated?)")
        }
        let headerData = data.subdata(in: 8..<(8 + Int(headerLen)))
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw FormatError(path: path, message: "header is not a JSON object")
        }
        let base = 8 + Int(headerLen)
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offs = info["data_offsets"] as? [Int], offs.count == 2
            else { throw FormatError(path: path, message: "bad header entry for '\(name)'") }
            let n = shape.reduce(1, *)
            let width: Int
            switch dtype {
            case "F32", "I32": width = 4
            case "F64", "I64": width = 8
            default: throw FormatError(path: path, message: "tensor '\(name)' has unsupported dtype \(dtype)")
            }
            guard offs[0] >= 0, offs[1] - offs[0] == n * width, base + offs[1] <= data.count else {
                throw FormatError(path: path, message: "tensor '\(name)' data range \(offs) does not fit shape \(shape) \(dtype)")
            }
            var floats = [Float](repeating: 0, count: n)
            var ints: [Int] = []
            data.withUnsafeBytes { raw in
                let p = raw.baseAddress! + base + offs[0]
                switch dtype {
                case "F32": for i in 0..<n { floats[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                case "F64": for i in 0..<n { floats[i] = Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
                case "I32":
                    ints = (0..<n).map { Int(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
                    floats = ints.map(Float.init)
                default:
                    ints = (0..<n).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
                    floats = ints.map(Float.init)
                }
            }
            entries[name] = Entry(dtype: dtype, shape: shape, floats: floats, ints: ints)
        }
        return File(path: path, entries: entries, metadata: metadata)
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
