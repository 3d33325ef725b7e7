import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore

/// Peak resident memory of this process so far, in bytes.
func peakRSS() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_maxrss * 1024
}

/// A state fuzz: a real tiny checkpoint's state.json, the run's config.json and the headers (and a
/// few data bytes) of model.safetensors and optimizer.safetensors, mutated in several hundred
/// deterministic ways (out of range, negative, huge, wrong type, NaN, truncated, deleted keys).
/// Each resume either loads (the mutation was harmless) or throws an error naming the mutated
/// file; none crashes or hangs, and memory stays bounded.
final class StateFuzzTests: XCTestCase {
    /// Every key path of a JSON value, objects included ("config", "config.adam", "config.adam.eps").
    func keyPaths(_ json: Any, _ prefix: String = "") -> [String] {
        guard let obj = json as? [String: Any] else { return [] }
        return obj.keys.sorted().flatMap { k -> [String] in
            let p = prefix.isEmpty ? k : prefix + "." + k
            return [p] + keyPaths(obj[k]!, p)
        }
    }

    /// `json` with the value at a dotted key path set (or with nil removed).
    func setting(_ json: [String: Any], _ path: String, _ value: Any?) -> [String: Any] {
        var o = json
        let parts = path.split(separator: ".", maxSplits: 1).map(String.init)
        if parts.count == 1 { o[parts[0]] = value } else { o[parts[0]] = setting(o[parts[0]] as? [String: Any] ?? [:], parts[1], value) }
        return o
    }

    /// A safetensors file's header (as JSON) and data bytes.
    func split(_ file: Data) throws -> (header: [String: Any], data: Data) {
        let n = Int(file.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let header = try XCTUnwrap(try JSONSerialization.jsonObject(with: file.subdata(in: 8..<(8 + n))) as? [String: Any])
        return (header, file.subdata(in: (8 + n)..<file.count))
    }

    func joined(_ header: [String: Any], _ data: Data, length: UInt64? = nil) throws -> Data {
        let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        var out = Data(capacity: 8 + json.count + data.count)
        withUnsafeBytes(of: (length ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(data)
        return out
    }

    func testMutatedCheckpointsGiveErrorsNamingTheFile() throws {
        let (run, ckpt) = try savedTinyRun("fuzz")
        defer { try? FileManager.default.removeItem(atPath: run) }
        let paths = ["state.json": ckpt + "/state.json", "config.json": run + "/config.json",
                     "model.safetensors": ckpt + "/model.safetensors", "optimizer.safetensors": ckpt + "/optimizer.safetensors"]
        var originals: [String: Data] = [:]
        for (name, path) in paths { originals[name] = try Data(contentsOf: URL(fileURLWithPath: path)) }
        let trainer = seededTrainer(tinyConfig(), run: run)
        try trainer.prepare(resume: true)
        let rssBefore = peakRSS()
        var rng = Xoshiro256(seed: 2026)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        var loaded = 0, refused = 0

        /// Writes `bytes` as the file `name`, resumes, and checks the outcome.
        func attempt(_ name: String, _ bytes: Data, _ what: String) throws {
            try bytes.write(to: URL(fileURLWithPath: paths[name]!))
            do {
                try trainer.prepare(resume: true)
                loaded += 1
            } catch {
                refused += 1
                XCTAssertTrue("\(error)".contains(name), "\(name), \(what): the error does not name the file: \(error)")
            }
            // A successful resume rewrites config.json from the trainer's settings.
            if name != "config.json" { try originals["config.json"]!.write(to: URL(fileURLWithPath: paths["config.json"]!)) }
        }
        func restore(_ name: String) throws { try originals[name]!.write(to: URL(fileURLWithPath: paths[name]!)) }

        // The JSON files: every key path set to each hostile value, or deleted; then text damage.
        let hostile: [Any?] = [-1, Int.min, Int.max, 1e300, 2.5, "NaN", NSNull(), [String: Any](), true, nil]
        for name in ["state.json", "config.json"] {
            let text = originals[name]!
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: text) as? [String: Any])
            for path in keyPaths(json) {
                for value in hostile {
                    let mutated = try JSONSerialization.data(withJSONObject: setting(json, path, value), options: [.sortedKeys])
                    try attempt(name, mutated, "\(path) = \(value.map { "\($0)" } ?? "(deleted)")")
                }
            }
            let s = String(decoding: text, as: UTF8.self)
            var damaged: [(String, Data)] = [("empty", Data()), ("binary", Data((0..<64).map { _ in UInt8(truncatingIfNeeded: rng.next()) })),
                                             ("a list", Data("[1, 2]".utf8)), ("nested", Data((String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)).utf8))]
            for k in 1...8 { damaged.append(("truncated to \(text.count * k / 9)", text.prefix(text.count * k / 9))) }
            for token in ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "18446744073709551616", "0x10", "\"\u{0}\""] {
                // Replace the first number after a random key with the token.
                let numbers = try NSRegularExpression(pattern: ": (-?[0-9][0-9.e+-]*)").matches(in: s, range: NSRange(s.startIndex..., in: s))
                let m = numbers[pick(numbers.count)]
                let r = Range(m.range(at: 1), in: s)!
                damaged.append(("number -> \(token)", Data(s.replacingCharacters(in: r, with: token).utf8)))
            }
            for (what, bytes) in damaged { try attempt(name, bytes, what) }
            try restore(name)
        }

        // The safetensors files: header fields, metadata, the length field, truncation, NaN data.
        for (name, rounds) in [("model.safetensors", 60), ("optimizer.safetensors", 12)] {
            let file = originals[name]!
            let (header, data) = try split(file)
            let tensors = header.keys.filter { $0 != "__metadata__" }.sorted()
            for _ in 0..<rounds {
                let t = tensors[pick(tensors.count)]
                var entry = header[t] as! [String: Any]
                let shape = entry["shape"] as! [Int], offs = entry["data_offsets"] as! [Int]
                let mutations: [(String, Any?)] = [
                    ("dtype", "F64"), ("dtype", "I32"), ("dtype", "BF16"), ("dtype", 7), ("dtype", nil),
                    ("shape", [Int]()), ("shape", [-1] + shape.dropFirst()), ("shape", [shape[0] * 2] + shape.dropFirst()),
                    ("shape", [Int.max, 2]), ("shape", "x"), ("shape", [2.5]), ("shape", nil), ("shape", Array(shape.reversed())),
                    ("data_offsets", [-4, offs[1]]), ("data_offsets", [offs[0], offs[1] + 4]), ("data_offsets", [offs[0] + 4, offs[1] + 4]),
                    ("data_offsets", [offs[1], offs[0]]), ("data_offsets", [0, Int.max]), ("data_offsets", [Int.max - 3, Int.max]),
                    ("data_offsets", [offs[0]]), ("data_offsets", ["a", "b"]), ("data_offsets", nil),
                    ("(entry)", nil), ("(entry)", [Any]()), ("(entry)", "x"),
                ]
                let (field, value) = mutations[pick(mutations.count)]
                var h = header
                if field == "(entry)" { h[t] = value } else { entry[field] = value; h[t] = entry }
                try attempt(name, try joined(h, data), "\(t).\(field) = \(value.map { "\($0)" } ?? "(deleted)")")
            }
            let meta = header["__metadata__"] as? [String: Any] ?? [:]
            let metaMutations: [(String, Any?)] = [("format", "disco-checkpoint-0"), ("size", "48"), ("size", "abc"), ("size", 32),
                                                   ("channels", "3"), ("model", "x"), ("iteration", "-1"), ("iteration", "99"), ("format", nil)]
            for (key, value) in metaMutations {
                var h = header
                var m = meta; m[key] = value; h["__metadata__"] = m
                try attempt(name, try joined(h, data), "metadata \(key) = \(value.map { "\($0)" } ?? "(deleted)")")
            }
            for value: Any in [5, "x", ["size": 32] as [String: Any]] {
                var h = header; h["__metadata__"] = value
                try attempt(name, try joined(h, data), "metadata = \(value)")
            }
            let length = Int(file.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
            for l in [0, 1, 7, length - 1, length + 1, file.count - 8, file.count, 100_000_000] {
                var f = file
                f.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(l).littleEndian) { Data($0) })
                try attempt(name, f, "header length \(l)")
            }
            for l: UInt64 in [1 << 62, UInt64.max] {
                var f = file
                f.replaceSubrange(0..<8, with: withUnsafeBytes(of: l.littleEndian) { Data($0) })
                try attempt(name, f, "header length \(l)")
            }
            for cut in [4, 8, 8 + length / 2, 8 + length, file.count / 2, file.count - 1] {
                try attempt(name, file.prefix(cut), "truncated to \(cut)")
            }
            try attempt(name, file + Data(count: 4), "4 bytes appended")
            for bits: UInt32 in [0x7fc0_0000, 0x7f80_0000, 0xff80_0000] {
                var f = file
                let at = 8 + length + 4 * pick(data.count / 4)
                f.replaceSubrange(at..<(at + 4), with: withUnsafeBytes(of: bits.littleEndian) { Data($0) })
                try attempt(name, f, "float at \(at) = \(Float(bitPattern: bits))")
            }
            try restore(name)
        }

        let rssGrowth = peakRSS() - rssBefore
        print("state fuzz: \(loaded + refused) mutations, \(refused) refused, \(loaded) harmless; peak RSS grew \(rssGrowth >> 20) MB")
        XCTAssertGreaterThan(loaded + refused, 600)
        XCTAssertGreaterThan(refused, (loaded + refused) * 8 / 10, "most mutations must be caught")
        XCTAssertLessThan(rssGrowth, 512 << 20, "memory must stay bounded")
        // The untouched checkpoint still resumes.
        try trainer.prepare(resume: true)
    }
}
