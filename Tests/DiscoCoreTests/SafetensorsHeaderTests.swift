import XCTest
import Foundation
@testable import DiscoCore

/// A safetensors file from a header written by hand (any JSON, any length field) and data bytes.
func handmadeSafetensors(header: String, data: Data, length: UInt64? = nil) -> Data {
    let json = Data(header.utf8)
    var out = Data()
    withUnsafeBytes(of: (length ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
    return out + json + data
}

/// Damaged or hostile safetensors headers: each gives a FormatError naming the file, never a trap,
/// and nothing is allocated from a length or shape before it is checked against the file's size.
final class SafetensorsHeaderTests: XCTestCase {
    func testHostileHeadersGiveFormatErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("disco-header-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d16 = Data(repeating: 0x3f, count: 16)
        let ok = #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#
        // A well-formed file loads: the cases below differ from it in one way each.
        let good = dir + "/good.safetensors"
        try handmadeSafetensors(header: ok, data: d16).write(to: URL(fileURLWithPath: good))
        XCTAssertEqual(try Safetensors.read(path: good).entry("w").shape, [2, 2])

        let cases: [(String, Data)] = [
            ("huge header length", handmadeSafetensors(header: ok, data: d16, length: 1 << 62)),
            ("negative header length", handmadeSafetensors(header: ok, data: d16, length: UInt64(bitPattern: -1))),
            ("header length past the end", handmadeSafetensors(header: ok, data: d16, length: 90_000_000)),
            ("negative offset", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[-16,0]}}"#, data: d16)),
            ("offset past the end", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}}"#, data: d16)),
            ("reversed offsets", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}}"#, data: d16)),
            ("offset Int.max", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[9223372036854775791,9223372036854775807]}}"#, data: d16)),
            ("offset Int.min", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,-9223372036854775808]}}"#, data: d16)),
            ("three offsets", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8,16]}}"#, data: d16)),
            ("offsets not integers", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":["0","16"]}}"#, data: d16)),
            ("overlapping tensors", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: d16)),
            ("same range twice", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"v":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: d16)),
            ("gap between tensors", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"v":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, data: Data(count: 12))),
            ("bytes after the last tensor", handmadeSafetensors(header: ok, data: d16 + Data(count: 4))),
            ("negative dimensions", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]}}"#, data: d16)),
            ("shape overflowing Int", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}}"#, data: d16)),
            ("huge shape", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,16]}}"#, data: d16)),
            ("shape of another size", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}}"#, data: d16)),
            ("dtype of another width", handmadeSafetensors(header: #"{"w":{"dtype":"F64","shape":[2,2],"data_offsets":[0,16]}}"#, data: d16)),
            ("unsupported dtype", handmadeSafetensors(header: #"{"w":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}}"#, data: d16)),
            ("dtype not a string", handmadeSafetensors(header: #"{"w":{"dtype":4,"shape":[2,2],"data_offsets":[0,16]}}"#, data: d16)),
            ("shape not a list", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":"2x2","data_offsets":[0,16]}}"#, data: d16)),
            ("fractional dimension", handmadeSafetensors(header: #"{"w":{"dtype":"F32","shape":[2.5,2],"data_offsets":[0,16]}}"#, data: d16)),
            ("entry not an object", handmadeSafetensors(header: #"{"w":[0,16]}"#, data: d16)),
            ("metadata not strings", handmadeSafetensors(header: #"{"__metadata__":{"size":32},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, data: d16)),
            ("metadata not an object", handmadeSafetensors(header: #"{"__metadata__":"x","w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, data: d16)),
            ("header a list", handmadeSafetensors(header: #"[1,2]"#, data: d16)),
            ("deeply nested header", handmadeSafetensors(header: "{\"w\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}", data: Data())),
        ]
        for (name, bytes) in cases {
            let path = dir + "/" + name.replacingOccurrences(of: " ", with: "-") + ".safetensors"
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Safetensors.read(path: path), name) { error in
                guard let fe = error as? Safetensors.FormatError else { return XCTFail("\(name): \(type(of: error)) is not a FormatError") }
                XCTAssertEqual(fe.path, path, name)
                XCTAssertTrue(fe.description.contains(path), "\(name): '\(fe.description)' does not name the file")
            }
        }
    }
}
