import Foundation

/// TensorBoard event files of a run, made from what the run already writes (log.jsonl, config.json,
/// samples/iter-N.png), so `tensorboard --logdir RUN/tb` shows it:
///
///     RUN/tb/events.out.tfevents.disco
///
/// Scalars: every numeric key of log.jsonl at its iteration, grouped by tag prefix (`loss/` for the
/// loss terms, `D/` for D(x) and D(G(z)) per domain, `schedule/` for the reconstruction rate and the
/// learning rate, `time/` for seconds and data wait); images: each sample grid under `samples`.
///
/// Format (TensorFlow's TFRecord of `Event` protocol buffers, written here without a protobuf
/// library): each record is a uint64 LE length, its masked CRC32C (uint32 LE), the bytes, and their
/// masked CRC32C. Event: wall_time (1, double), step (2, int64), file_version (3, string), summary
/// (5). Summary: repeated Value (1). Value: tag (1, string), simple_value (2, float), image (4).
/// Image: height (1), width (2), colorspace (3), encoded_image_string (4, PNG bytes).
public enum TensorBoard {
    public static let fileName = "events.out.tfevents.disco"

    /// Rewrites RUN/tb/events.out.tfevents.disco from the run's files (atomically). Returns its path.
    @discardableResult
    public static func write(runDirectory run: String) throws -> String {
        let dir = run + "/tb"
        try Checkpoint.createDirectory(dir)
        let path = dir + "/" + fileName
        try Checkpoint.writeAtomically(events(runDirectory: run), to: path)
        return path
    }

    /// The event file's bytes for a run folder.
    public static func events(runDirectory run: String) -> Data {
        let (lines, _) = Report.readLogLines(path: run + "/log.jsonl", fullReadLimit: Int.max)
        let log = Report.parseLog(lines: lines)
        let lr = learningRate(runDirectory: run)
        // Wall time: the log's seconds restart at each resume; they are chained into one clock that
        // ends at the log's modification time.
        var clock: [Int: Double] = [:], offset = 0.0, previous = 0.0
        for p in log.times {
            if p.y < previous { offset += previous }
            previous = p.y
            clock[Int(p.x)] = offset + p.y
        }
        let modified = ((try? FileManager.default.attributesOfItem(atPath: run + "/log.jsonl"))?[.modificationDate] as? Date)?
            .timeIntervalSince1970 ?? 0
        let base = modified - (offset + previous)
        func wall(_ step: Int) -> Double {
            base + (clock[step] ?? clock.filter { $0.key <= step }.max { $0.key < $1.key }?.value ?? 0)
        }

        var byStep: [Int: [(String, Double)]] = [:]
        for (key, points) in log.series {
            for p in points { byStep[Int(p.x), default: []].append((tag(for: key), p.y)) }
        }
        // Logs written before the rate in force was logged (`lr`): the configured, constant rate.
        if let lr, log.series["lr"] == nil { for p in log.times { byStep[Int(p.x), default: []].append(("schedule/learning_rate", lr)) } }
        for p in log.times { byStep[Int(p.x), default: []].append(("time/seconds", wall(Int(p.x)) - base)) }

        var out = Data()
        out.append(record(event(wallTime: base, step: 0, fileVersion: "brain.Event:2")))
        for step in byStep.keys.sorted() {
            let values = byStep[step]!.sorted { $0.0 < $1.0 }.map { scalarValue(tag: $0.0, $0.1) }
            out.append(record(event(wallTime: wall(step), step: step, summary: values)))
        }
        for s in Report.listSamples(runDirectory: run).reversed() where s.path.lowercased().hasSuffix(".png") {
            guard let png = FileManager.default.contents(atPath: s.path), let (w, h) = Report.pngSize(path: s.path) else { continue }
            out.append(record(event(wallTime: wall(s.iteration), step: s.iteration,
                                    summary: [imageValue(tag: "samples", png: png, width: w, height: h)])))
        }
        return out
    }

    /// `loss/...`, `D/...`, `schedule/...` (from `StepLosses.Term`), or `time/...` for the rest.
    static func tag(for key: String) -> String {
        guard let t = StepLosses.Term(rawValue: key) else { return key == "data_wait" ? "time/data_wait" : "other/" + key }
        switch t.family {
        case .dOutput: return "D/" + key
        case .schedule: return t == .rate ? "schedule/reconstruction_rate" : "schedule/learning_rate"
        default: return "loss/" + key
        }
    }

    static func learningRate(runDirectory run: String) -> Double? {
        guard let data = FileManager.default.contents(atPath: run + "/config.json"),
              let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let adam = obj["adam"] as? [String: Any] else { return nil }
        return Report.number(adam["learningRate"])
    }

    // MARK: records and protocol buffers

    /// One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data.
    public static func record(_ data: Data) -> Data {
        var out = Data()
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Data($0) }
        out.append(length)
        out.append(withUnsafeBytes(of: maskedCRC32C(length).littleEndian) { Data($0) })
        out.append(data)
        out.append(withUnsafeBytes(of: maskedCRC32C(data).littleEndian) { Data($0) })
        return out
    }

    public static func maskedCRC32C(_ data: Data) -> UInt32 {
        let c = crc32c(data)
        return ((c >> 15) | (c << 17)) &+ 0xa282_ead8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses.
    public static func crc32c(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func event(wallTime: Double, step: Int, fileVersion: String? = nil, summary: [Data]? = nil) -> Data {
        var e = Protobuf()
        e.double(1, wallTime)
        e.varint(2, UInt64(bitPattern: Int64(step)))
        if let fileVersion { e.bytes(3, Data(fileVersion.utf8)) }
        if let summary {
            var s = Protobuf()
            for v in summary { s.bytes(1, v) }
            e.bytes(5, s.data)
        }
        return e.data
    }

    static func scalarValue(tag: String, _ value: Double) -> Data {
        var v = Protobuf()
        v.bytes(1, Data(tag.utf8))
        v.float(2, Float(value))
        return v.data
    }

    static func imageValue(tag: String, png: Data, width: Int, height: Int) -> Data {
        var image = Protobuf()
        image.varint(1, UInt64(height)); image.varint(2, UInt64(width))
        // Colorspace 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA: from the PNG's IHDR colour type.
        let colorType = png.count > 25 ? png[png.startIndex + 25] : 2
        image.varint(3, [0: 1, 4: 2, 2: 3, 6: 4][colorType] ?? 3)
        image.bytes(4, png)
        var v = Protobuf()
        v.bytes(1, Data(tag.utf8))
        v.bytes(4, image.data)
        return v.data
    }

    /// The few protocol-buffer encodings an Event needs: key = field << 3 | wire type.
    struct Protobuf {
        var data = Data()
        mutating func key(_ field: Int, _ wire: UInt64) { raw(UInt64(field) << 3 | wire) }
        mutating func raw(_ v: UInt64) {
            var v = v
            while v >= 0x80 { data.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            data.append(UInt8(v))
        }
        mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); raw(v) }
        mutating func double(_ field: Int, _ v: Double) {
            key(field, 1); withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
        }
        mutating func float(_ field: Int, _ v: Float) {
            key(field, 5); withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
        }
        mutating func bytes(_ field: Int, _ v: Data) { key(field, 2); raw(UInt64(v.count)); data.append(v) }
    }
}
