import Foundation

// What report.html is made from: log.jsonl (read whole, or in slices when large), hist.json,
// the sample grids and config.json. Missing or damaged inputs give empty values, never an error.
extension Report {
    // MARK: reading

    /// The log's lines: all of them, or for a large file, those in evenly spaced slices (including
    /// the first and the last bytes).
    static func readLogLines(path: String, fullReadLimit: Int = fullReadLimit, slices: Int = sliceCount) -> (lines: [Data], sampled: Bool) {
        guard let fh = FileHandle(forReadingAtPath: path) else { return ([], false) }
        defer { try? fh.close() }
        let size = Int(fh.seekToEndOfFile())
        func split(_ d: Data, dropFirst: Bool, dropLast: Bool) -> [Data] {
            var parts = d.split(separator: 0x0A, omittingEmptySubsequences: false).map { Data($0) }
            if dropFirst && !parts.isEmpty { parts.removeFirst() }
            if dropLast && !parts.isEmpty { parts.removeLast() }
            return parts.filter { !$0.isEmpty }
        }
        if size <= fullReadLimit {
            fh.seek(toFileOffset: 0)
            return (split(fh.readDataToEndOfFile(), dropFirst: false, dropLast: false), false)
        }
        let chunk = fullReadLimit / slices
        var lines: [Data] = []
        for i in 0..<slices {
            let offset = (size - chunk) * i / (slices - 1)
            fh.seek(toFileOffset: UInt64(offset))
            let d = fh.readData(ofLength: chunk)
            lines += split(d, dropFirst: offset > 0, dropLast: offset + d.count < size)
        }
        return (lines, true)
    }

    static func number(_ v: Any?) -> Double? {
        if v is String { return nil }
        if let d = v as? Double { return d }
        if let i = v as? Int { return Double(i) }
        if let n = v as? NSNumber { return n.doubleValue }
        return nil
    }

    /// Parses JSON lines; lines that are not objects with a numeric "iter" (e.g. one half-written) are
    /// skipped. Every other numeric key becomes a series. A resumed run may log an iteration twice:
    /// the later line wins.
    static func parseLog(lines: [Data], sampled: Bool = false) -> Log {
        var log = Log()
        log.sampled = sampled
        for line in lines {
            guard let obj = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any],
                  let it = number(obj["iter"]), it.isFinite else { continue }
            log.records += 1
            for (k, v) in obj where k != "iter" {
                guard let y = number(v), y.isFinite else { continue }
                if k == "time" { log.times.append(Point(x: it, y: y)) } else { log.series[k, default: []].append(Point(x: it, y: y)) }
            }
        }
        for (k, v) in log.series { log.series[k] = sortedUnique(v) }
        log.times = sortedUnique(log.times)
        return log
    }

    static func readLog(runDirectory: String) -> Log {
        let (lines, sampled) = readLogLines(path: runDirectory + "/log.jsonl")
        var log = parseLog(lines: lines, sampled: sampled)
        if let wait = log.series.removeValue(forKey: "data_wait") {
            log.series[dataWaitKey] = intervalShare(cumulative: wait, times: log.times)
        }
        return log
    }

    static let dataWaitKey = "data wait, % of each logged interval"

    /// log.jsonl's `data_wait` and `time` are running totals (seconds since the session started;
    /// both restart at a resume). Per logged interval: 100 * (wait increase) / (time increase), at
    /// the interval's end. An interval across a resume counts from the new session's zero.
    static func intervalShare(cumulative wait: [Point], times: [Point]) -> [Point] {
        let time = Dictionary(times.map { (Int($0.x), $0.y) }, uniquingKeysWith: { _, last in last })
        var out: [Point] = [], previous: (wait: Double, time: Double)?
        for p in wait {
            guard let t = time[Int(p.x)] else { continue }
            let restarted = previous.map { p.y < $0.wait || t < $0.time } ?? true
            let (w0, t0) = restarted ? (0, 0) : previous!
            if t - t0 > 0 { out.append(Point(x: p.x, y: 100 * min(max((p.y - w0) / (t - t0), 0), 1))) }
            previous = (p.y, t)
        }
        return out
    }

    /// Sorted by x; of equal x, the last in input order is kept.
    static func sortedUnique(_ pts: [Point]) -> [Point] {
        if pts.count < 2 || zip(pts, pts.dropFirst()).allSatisfy({ $0.x < $1.x }) { return pts }
        let order = pts.indices.sorted { pts[$0].x != pts[$1].x ? pts[$0].x < pts[$1].x : $0 < $1 }
        var out: [Point] = []
        for i in order {
            if let l = out.last, l.x == pts[i].x { out[out.count - 1] = pts[i] } else { out.append(pts[i]) }
        }
        return out
    }


    struct Histogram { var iteration: Int?; var bins: Int; var pairs: [(domain: String, real: [Double]?, fake: [Double]?)] }

    static func readHistogram(runDirectory: String) -> Histogram? {
        guard let data = FileManager.default.contents(atPath: runDirectory + "/hist.json"),
              let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        func counts(_ k: String) -> [Double]? {
            guard let a = obj[k] as? [Any] else { return nil }
            let v = a.compactMap { number($0) }
            return v.count == a.count && !v.isEmpty ? v : nil
        }
        var domains = Set<String>()
        for k in obj.keys where k.hasPrefix("real_") || k.hasPrefix("fake_") { domains.insert(String(k.dropFirst(5))) }
        let pairs = domains.sorted().map { ($0, counts("real_" + $0), counts("fake_" + $0)) }.filter { $0.1 != nil || $0.2 != nil }
        guard !pairs.isEmpty else { return nil }
        let bins = number(obj["bins"]).map { Int($0) } ?? pairs.compactMap { $0.1?.count ?? $0.2?.count }.first ?? 0
        return Histogram(iteration: number(obj["iter"]).map { Int($0) }, bins: bins, pairs: pairs)
    }


    struct Sample { var iteration: Int; var path: String }

    /// samples/iter-N.png (or .jpg), newest first.
    static func listSamples(runDirectory: String) -> [Sample] {
        let dir = runDirectory + "/samples"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.compactMap { n -> Sample? in
            let lower = n.lowercased()
            guard lower.hasPrefix("iter-"), lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") else { return nil }
            let digits = n.dropFirst(5).prefix { $0.isNumber }
            guard let it = Int(digits) else { return nil }
            return Sample(iteration: it, path: dir + "/" + n)
        }.sorted { $0.iteration > $1.iteration }
    }

    /// Width and height from a PNG's IHDR.
    static func pngSize(path: String) -> (Int, Int)? {
        guard let fh = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? fh.close() }
        let d = [UInt8](fh.readData(ofLength: 24))
        guard d.count == 24, d[0] == 0x89, d[1] == 0x50, d[12] == 0x49, d[13] == 0x48 else { return nil }
        func be(_ i: Int) -> Int { Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3]) }
        return (be(16), be(20))
    }

    static func dataURI(path: String) -> String? {
        guard let d = FileManager.default.contents(atPath: path), !d.isEmpty else { return nil }
        let mime = path.lowercased().hasSuffix(".png") ? "image/png" : "image/jpeg"
        return "data:\(mime);base64," + d.base64EncodedString()
    }

    /// Flattens nested objects into dotted keys.
    static func flatten(_ v: Any, prefix: String = "", into out: inout [(String, String)]) {
        if let d = v as? [String: Any] {
            for k in d.keys.sorted() { flatten(d[k]!, prefix: prefix.isEmpty ? k : prefix + "." + k, into: &out) }
        } else if let a = v as? [Any] {
            let parts = a.map { x -> String in var t: [(String, String)] = []; flatten(x, into: &t); return t.first?.1 ?? "" }
            out.append((prefix, "[" + parts.joined(separator: ", ") + "]"))
        } else if let s = v as? String {
            out.append((prefix, s))
        } else if v is NSNull {
            out.append((prefix, "null"))
        } else if let n = number(v) {
            out.append((prefix, n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(format: "%g", n)))
        } else {
            out.append((prefix, "\(v)"))
        }
    }

    static func readConfig(runDirectory: String) -> [(String, String)]? {
        guard let data = FileManager.default.contents(atPath: runDirectory + "/config.json"),
              let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        var out: [(String, String)] = []
        flatten(obj, into: &out)
        return out
    }

    /// Iterations per second over the last ~minute of one session (`time` restarts on resume).
    static func recentRate(_ times: [Point]) -> Double? {
        guard let last = times.last else { return nil }
        var j = times.count - 1
        while j > 0 && times[j - 1].y <= times[j].y && last.y - times[j - 1].y <= 60 { j -= 1 }
        if j == times.count - 1 && j > 0 && times[j - 1].y <= last.y { j -= 1 }  // sparse log: use the previous line
        let dt = last.y - times[j].y, di = last.x - times[j].x
        return dt > 0 && di > 0 ? di / dt : nil
    }
}
