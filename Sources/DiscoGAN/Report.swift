import Foundation
import DiscoCore

/// Writes `RUN/report.html`: one self-contained page (images as data URIs, plots as inline SVG, no
/// network, no libraries) showing the run's name and config, the latest sample grids, loss curves,
/// D(x) / D(G(z)) per domain and the real-vs-generated pixel histograms.
///
/// Cheap enough to call after every sample: a log of up to 4 MB is read whole, a larger one in 128
/// evenly spaced 32 KB slices (so curves still span the whole run); each curve is drawn with at most
/// 1000 points. Missing or empty inputs (no log yet, no samples, no hist.json, no config) give a page
/// that says so. The file is replaced atomically (temp file in the run folder, then rename).
public func writeReport(runDirectory: String) throws {
    let html = Report.render(runDirectory: runDirectory)
    try Report.writeAtomically(Data(html.utf8), to: runDirectory + "/report.html")
}

enum Report {
    static let maxPoints = 1000
    static let fullReadLimit = 4 << 20
    static let sliceCount = 128

    struct Point: Equatable { var x: Double; var y: Double }

    /// A log reduced to one point list per numeric key, sorted by iteration.
    struct Log {
        var series: [String: [Point]] = [:]
        /// (iteration, seconds since the session started).
        var times: [Point] = []
        var records = 0
        /// True when a large log was read in slices.
        var sampled = false
        var lastIteration: Int? {
            let last = series.values.compactMap { $0.last?.x }.max() ?? times.last?.x
            return last.map { Int($0) }
        }
    }

    /// A curve as plotted: the (downsampled) raw points and, if the series is long enough to be
    /// worth smoothing, a centred moving average (computed on all points, then downsampled).
    struct Curve {
        var name: String
        var raw: [Point]
        var smooth: [Point]?
    }

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

    // MARK: series processing

    /// At most `maxPoints` points, evenly spaced by index, always keeping the first and the last.
    static func downsample(_ pts: [Point], maxPoints: Int = maxPoints) -> [Point] {
        let n = pts.count
        guard n > maxPoints, maxPoints >= 2 else { return pts }
        return (0..<maxPoints).map { i in pts[Int((Double(i) * Double(n - 1) / Double(maxPoints - 1)).rounded())] }
    }

    /// Centred moving average: out[i] = mean of ys[i-h ... i+h], the window shrinking at the ends.
    static func movingAverage(_ ys: [Double], halfWidth h: Int) -> [Double] {
        let n = ys.count
        guard h > 0, n > 1 else { return ys }
        var prefix = [Double](repeating: 0, count: n + 1)
        for i in 0..<n { prefix[i + 1] = prefix[i] + ys[i] }
        return (0..<n).map { i in
            let lo = max(0, i - h), hi = min(n - 1, i + h)
            return (prefix[hi + 1] - prefix[lo]) / Double(hi - lo + 1)
        }
    }

    /// A light smoothing: about 1% of the points either side, at most 50; none under 100 points.
    static func smoothingHalfWidth(count: Int) -> Int { min(50, count / 100) }

    static func curve(name: String, points: [Point], maxPoints: Int = maxPoints) -> Curve {
        let h = smoothingHalfWidth(count: points.count)
        var smooth: [Point]?
        if h > 0 {
            let ys = movingAverage(points.map(\.y), halfWidth: h)
            smooth = downsample(zip(points, ys).map { Point(x: $0.x, y: $1) }, maxPoints: maxPoints)
        }
        return Curve(name: name, raw: downsample(points, maxPoints: maxPoints), smooth: smooth)
    }

    enum Group: Equatable { case generator, discriminator, dOutput(domain: String, real: Bool), other }

    static func group(of key: String) -> Group {
        if key.hasPrefix("D_") && (key.hasSuffix("_real") || key.hasSuffix("_fake")) && key.count > 7 {
            let domain = String(key.dropFirst(2).dropLast(5))
            return .dOutput(domain: domain, real: key.hasSuffix("_real"))
        }
        for p in ["gen_", "gan_", "fm_", "recon_", "rec_", "cycle_", "G_"] where key.hasPrefix(p) { return .generator }
        if key == "gen" || key == "G" { return .generator }
        for p in ["dis_", "D_"] where key.hasPrefix(p) { return .discriminator }
        if key == "dis" || key == "D" { return .discriminator }
        return .other
    }

    /// Totals first, then by term, A before B.
    static func keyOrder(_ a: String, _ b: String) -> Bool {
        func rank(_ k: String) -> Int {
            if k.hasSuffix("total") { return 0 }
            for (i, p) in ["gan_", "fm_", "recon_", "dis_"].enumerated() where k.hasPrefix(p) { return i + 1 }
            return 9
        }
        return (rank(a), a) < (rank(b), b)
    }

    // MARK: plots

    static let palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f", "#edc948", "#ff9da7", "#bab0ac"]
    static let termColors: [String: String] = ["gen_total": "#333333", "dis_total": "#333333", "gan": "#4e79a7", "fm": "#f28e2b",
                                               "recon": "#59a14f", "dis": "#b07aa1"]

    struct PlotSeries {
        var name: String
        var color: String
        var dash: String? = nil
        var curve: Curve
        /// Draw as a filled step histogram (x = bin left edges, last bin extends by `binWidth`).
        var histogram: Bool = false
        var binWidth: Double = 0
    }

    struct PlotSpec {
        var id: String
        var title: String
        var xLabel: String = "iteration"
        var yLabel: String
        var series: [PlotSeries]
        var xRange: (Double, Double)? = nil
        var yRange: (Double, Double)? = nil
        var logY: Bool = false
        var reference: [(y: Double, label: String)] = []
        var iterationAxis: Bool = true
        var width: Double = 560
        var height: Double = 330
    }

    /// Compact fixed-point text for coordinates (one decimal), faster than String(format:).
    @inline(__always) static func c(_ v: Double) -> String {
        let t = Int((v * 10).rounded())
        let a = abs(t)
        return (t < 0 ? "-" : "") + String(a / 10) + (a % 10 == 0 ? "" : "." + String(a % 10))
    }

    static func niceStep(_ range: Double, target: Int) -> Double {
        let raw = range / Double(max(1, target))
        let mag = pow(10, floor(log10(raw)))
        let f = raw / mag
        return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag
    }

    static func linearTicks(_ lo: Double, _ hi: Double, target: Int = 5) -> (ticks: [Double], step: Double) {
        guard hi > lo else { return ([lo], 1) }
        let step = niceStep(hi - lo, target: target)
        let first = (lo / step - 1e-9).rounded(.up)
        let q = pow(10, Double(max(0, Int(-floor(log10(step) + 1e-9)) + 1)))  // snap 0.6000000000000001 to 0.6
        var out: [Double] = []
        var i = 0.0
        while true {
            let t = ((first + i) * step * q).rounded() / q
            if t > hi + step * 1e-9 { break }
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            i += 1
        }
        return (out, step)
    }

    static func tickLabel(_ v: Double, step: Double, iteration: Bool) -> String {
        if iteration && step >= 1000 {
            let k = v / 1000, s = step / 1000
            let dec = max(0, Int(-floor(log10(s) + 1e-9)) + (s.truncatingRemainder(dividingBy: 1) == 0.5 ? 1 : 0))
            return String(format: "%.\(min(dec, 3))f", k) + "k"
        }
        var dec = max(0, Int(-floor(log10(step) + 1e-9)))
        let lead = step / pow(10, floor(log10(step) + 1e-9))
        if abs(lead - 2.5) < 1e-6 { dec += 1 }
        return String(format: "%.\(min(dec, 6))f", v)
    }

    static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let a = Int(floor(log10(lo) + 1e-9)), b = Int(ceil(log10(hi) - 1e-9))
        var out: [Double] = []
        let mult: [Double] = (b - a) <= 3 ? [1, 2, 5] : [1]
        for e in a...max(a, b) { for m in mult { let v = e < 0 ? m / pow(10, Double(-e)) : m * pow(10, Double(e)); if v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) { out.append(v) } } }
        return out
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count - 1) * p).rounded())))]
    }

    /// The y range of loss-like curves: robust to a few spikes (1st..99th percentile of the raw
    /// points, widened to hold every smoothed point), log-scaled when positive and spanning > 20x.
    static func autoRange(_ curves: [Curve]) -> (lo: Double, hi: Double, log: Bool) {
        let raw = curves.flatMap { $0.raw.map(\.y) }.sorted()
        guard !raw.isEmpty else { return (0, 1, false) }
        var lo = percentile(raw, 0.01), hi = percentile(raw, 0.99)
        for s in curves.compactMap(\.smooth) { for p in s { lo = min(lo, p.y); hi = max(hi, p.y) } }
        if raw.count < 200 { lo = raw.first!; hi = raw.last! }
        if lo > 0 && hi / lo > 20 {
            return (pow(10, log10(lo) - 0.05 * log10(hi / lo)), pow(10, log10(hi) + 0.05 * log10(hi / lo)), true)
        }
        if hi - lo < 1e-12 { let d = max(abs(hi) * 0.1, 1e-3); return (lo - d, hi + d, false) }
        let pad = (hi - lo) * 0.06
        return (lo >= 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad, false)
    }

    static func svg(_ spec: PlotSpec) -> String {
        let W = spec.width, H = spec.height
        let left = 62.0, right = 16.0, bottom = 46.0
        // Legend, wrapped into rows under the title.
        var legend: [(x: Double, row: Int, s: PlotSeries)] = []
        var lx = left, row = 0
        let showLegend = !(spec.series.count == 1 && spec.series[0].name == spec.title)
        for s in spec.series where showLegend {
            let w = 28 + Double(s.name.count) * 7 + 14
            if lx + w > W - right && lx > left { lx = left; row += 1 }
            legend.append((lx, row, s)); lx += w
        }
        let legendRows = legend.isEmpty ? 0 : row + 1
        let top = 30.0 + Double(legendRows) * 17 + 8
        let pw = W - left - right, ph = H - top - bottom

        let allPts = spec.series.flatMap { $0.curve.raw + ($0.curve.smooth ?? []) }
        var x0 = spec.xRange?.0 ?? (allPts.map(\.x).min() ?? 0)
        var x1 = spec.xRange?.1 ?? (allPts.map(\.x).max() ?? 1)
        if x1 <= x0 { x0 -= 1; x1 += 1 }
        var (y0, y1, logY) = spec.yRange.map { ($0.0, $0.1, spec.logY) } ?? autoRange(spec.series.map(\.curve))
        if y1 <= y0 { y0 -= 1; y1 += 1 }
        let ly0 = logY ? log10(y0) : y0, ly1 = logY ? log10(y1) : y1
        func X(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func Y(_ y: Double) -> Double {
            let v = logY ? log10(max(y, y0 * 1e-3)) : y
            let r = top + (1 - (v - ly0) / (ly1 - ly0)) * ph
            return min(max(r, top - 40), top + ph + 40)  // clipped anyway; keep coordinates small
        }

        var o = "<svg class=\"plot\" id=\"\(esc(spec.id))\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(c(W)) \(c(H))\" font-family=\"system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif\" font-size=\"12\">\n"
        o += "<title>\(esc(spec.title))</title>\n"
        o += "<defs><clipPath id=\"\(esc(spec.id))-clip\"><rect x=\"\(c(left))\" y=\"\(c(top))\" width=\"\(c(pw))\" height=\"\(c(ph))\"/></clipPath></defs>\n"
        o += "<text x=\"\(c(left))\" y=\"18\" font-size=\"14\" font-weight=\"600\" fill=\"#222\">\(esc(spec.title))</text>\n"
        // Grid and ticks.
        o += "<g stroke=\"#e6e6e6\" stroke-width=\"1\">"
        let yt: [(Double, String)]
        if logY {
            yt = logTicks(y0, y1).map { ($0, String(format: "%g", $0)) }
        } else {
            let (t, st) = linearTicks(y0, y1, target: 5)
            yt = t.map { ($0, tickLabel($0, step: st, iteration: false)) }
        }
        let (xtv, xst) = linearTicks(x0, x1, target: 6)
        let xt = xtv.map { ($0, tickLabel($0, step: xst, iteration: spec.iterationAxis)) }
        for (v, _) in yt { o += "<line x1=\"\(c(left))\" x2=\"\(c(left + pw))\" y1=\"\(c(Y(v)))\" y2=\"\(c(Y(v)))\"/>" }
        for (v, _) in xt { o += "<line x1=\"\(c(X(v)))\" x2=\"\(c(X(v)))\" y1=\"\(c(top))\" y2=\"\(c(top + ph))\"/>" }
        o += "</g>\n<g fill=\"#555\" font-size=\"11\">"
        for (v, s) in yt { o += "<text x=\"\(c(left - 6))\" y=\"\(c(Y(v) + 4))\" text-anchor=\"end\">\(s)</text>" }
        for (v, s) in xt { o += "<text x=\"\(c(X(v)))\" y=\"\(c(top + ph + 16))\" text-anchor=\"middle\">\(s)</text>" }
        o += "</g>\n"
        o += "<rect x=\"\(c(left))\" y=\"\(c(top))\" width=\"\(c(pw))\" height=\"\(c(ph))\" fill=\"none\" stroke=\"#999\"/>\n"
        o += "<text x=\"\(c(left + pw / 2))\" y=\"\(c(H - 8))\" text-anchor=\"middle\" fill=\"#333\">\(esc(spec.xLabel))</text>\n"
        o += "<text transform=\"translate(14 \(c(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">\(esc(spec.yLabel + (logY ? " (log scale)" : "")))</text>\n"
        // Reference lines.
        for r in spec.reference where r.y >= y0 && r.y <= y1 {
            o += "<line x1=\"\(c(left))\" x2=\"\(c(left + pw))\" y1=\"\(c(Y(r.y)))\" y2=\"\(c(Y(r.y)))\" stroke=\"#888\" stroke-dasharray=\"2 4\"/>"
            o += "<text x=\"\(c(left + 4))\" y=\"\(c(Y(r.y) - 4))\" fill=\"#777\" font-size=\"11\">\(esc(r.label))</text>\n"
        }
        // Curves.
        o += "<g clip-path=\"url(#\(esc(spec.id))-clip)\" fill=\"none\" stroke-linejoin=\"round\">\n"
        for s in spec.series {
            let dash = s.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
            let name = esc(s.name)
            if s.histogram {
                let pts = s.curve.raw
                guard !pts.isEmpty else { continue }
                var d = "M\(c(X(pts[0].x))),\(c(Y(y0)))"
                for p in pts { d += "V\(c(Y(p.y)))H\(c(X(p.x + s.binWidth)))" }
                d += "V\(c(Y(y0)))"
                o += "<path data-series=\"\(name)\" d=\"\(d)Z\" fill=\"\(s.color)\" fill-opacity=\"0.18\" stroke=\"none\"/>"
                o += "<path data-series=\"\(name)\" data-kind=\"raw\" d=\"\(d)\" stroke=\"\(s.color)\" stroke-width=\"1.8\"\(dash)/>\n"
                continue
            }
            func poly(_ pts: [Point], kind: String, attrs: String) -> String {
                var p = ""
                p.reserveCapacity(pts.count * 12)
                for q in pts { p += c(X(q.x)) + "," + c(Y(q.y)) + " " }
                return "<polyline data-series=\"\(name)\" data-kind=\"\(kind)\" points=\"\(p)\" stroke=\"\(s.color)\" \(attrs)/>\n"
            }
            if let sm = s.curve.smooth {
                o += poly(s.curve.raw, kind: "raw", attrs: "stroke-width=\"1\" stroke-opacity=\"0.22\"")
                o += poly(sm, kind: "smooth", attrs: "stroke-width=\"2\"\(dash)")
            } else {
                o += poly(s.curve.raw, kind: "raw", attrs: "stroke-width=\"1.8\"\(dash)")
                if s.curve.raw.count <= 40 {
                    for q in s.curve.raw { o += "<circle cx=\"\(c(X(q.x)))\" cy=\"\(c(Y(q.y)))\" r=\"2.2\" fill=\"\(s.color)\" stroke=\"none\"/>" }
                }
            }
        }
        o += "</g>\n"
        // Legend.
        for (x, row, s) in legend {
            let y = 34.0 + Double(row) * 17
            let dash = s.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
            if s.histogram {
                o += "<rect x=\"\(c(x))\" y=\"\(c(y - 9))\" width=\"22\" height=\"10\" fill=\"\(s.color)\" fill-opacity=\"0.25\" stroke=\"\(s.color)\" stroke-width=\"1.5\"/>"
            } else {
                o += "<line x1=\"\(c(x))\" x2=\"\(c(x + 22))\" y1=\"\(c(y - 4))\" y2=\"\(c(y - 4))\" stroke=\"\(s.color)\" stroke-width=\"2.5\"\(dash)/>"
            }
            o += "<text x=\"\(c(x + 28))\" y=\"\(c(y))\" fill=\"#222\">\(esc(s.name))</text>\n"
        }
        o += "</svg>"
        return o
    }

    // MARK: sections

    static func color(for key: String, fallback: Int) -> (String, String?) {
        if let c = termColors[key] { return (c, nil) }
        var term = key, dash: String?
        if key.hasSuffix("_A") { term = String(key.dropLast(2)) }
        if key.hasSuffix("_B") { term = String(key.dropLast(2)); dash = "6 3" }
        return (termColors[term] ?? palette[fallback % palette.count], dash)
    }

    static func lossPlot(id: String, title: String, keys: [String], log: Log) -> String {
        let series = keys.enumerated().map { i, k -> PlotSeries in
            let (col, dash) = color(for: k, fallback: i)
            return PlotSeries(name: k, color: col, dash: dash, curve: curve(name: k, points: log.series[k]!))
        }
        return svg(PlotSpec(id: id, title: title, yLabel: "loss", series: series))
    }

    /// D(x) on real images and D(G(z)) on generated ones for one domain.
    static func dOutputPlot(domain: String, log: Log) -> String? {
        let realKey = "D_\(domain)_real", fakeKey = "D_\(domain)_fake"
        var series: [PlotSeries] = []
        let other = domain == "A" ? "B" : domain == "B" ? "A" : "?"
        if let r = log.series[realKey] {
            series.append(PlotSeries(name: "D_\(domain)(x_\(domain)) real", color: "#2e8b57", curve: curve(name: realKey, points: r)))
        }
        if let f = log.series[fakeKey] {
            series.append(PlotSeries(name: "D_\(domain)(x_\(other)\(domain)) generated", color: "#d62728", dash: "6 3", curve: curve(name: fakeKey, points: f)))
        }
        guard !series.isEmpty else { return nil }
        return svg(PlotSpec(id: "d-\(domain)", title: "Domain \(domain): D(x) vs D(G(z))", yLabel: "mean sigmoid(D)",
                            series: series, yRange: (0, 1), reference: [(0.5, "0.5: cannot tell real from generated")]))
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

    static func histogramPlot(domain: String, real: [Double]?, fake: [Double]?) -> String {
        func fractions(_ counts: [Double]) -> Curve {
            let total = counts.reduce(0, +)
            let w = 1 / Double(counts.count)
            return Curve(name: "", raw: counts.enumerated().map { Point(x: Double($0) * w, y: total > 0 ? $1 / total : 0) }, smooth: nil)
        }
        let other = domain == "A" ? "B" : domain == "B" ? "A" : "?"
        var series: [PlotSeries] = []
        if let r = real { series.append(PlotSeries(name: "real x_\(domain)", color: "#4e79a7", curve: fractions(r), histogram: true, binWidth: 1 / Double(r.count))) }
        if let f = fake { series.append(PlotSeries(name: "generated x_\(other)\(domain)", color: "#f28e2b", curve: fractions(f), histogram: true, binWidth: 1 / Double(f.count))) }
        let ymax = series.flatMap { $0.curve.raw.map(\.y) }.max() ?? 1
        let (_, step) = linearTicks(0, max(ymax, 1e-6) * 1.08, target: 5)
        return svg(PlotSpec(id: "hist-\(domain)", title: "Domain \(domain): pixel intensities", xLabel: "pixel value",
                            yLabel: "fraction of pixels", series: series, xRange: (0, 1),
                            yRange: (0, (max(ymax, 1e-6) * 1.08 / step).rounded(.up) * step), iterationAxis: false))
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

    static func esc(_ s: String) -> String {
        var o = ""
        o.reserveCapacity(s.count)
        for ch in s {
            switch ch {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&#39;"
            default: o.append(ch)
            }
        }
        return o
    }

    // MARK: page

    static func render(runDirectory: String) -> String {
        let url = URL(fileURLWithPath: runDirectory).standardizedFileURL
        let name = url.lastPathComponent.isEmpty ? runDirectory : url.lastPathComponent
        let log = readLog(runDirectory: runDirectory)
        let config = readConfig(runDirectory: runDirectory)
        let samples = listSamples(runDirectory: runDirectory)
        let hist = readHistogram(runDirectory: runDirectory)
        let planned = config?.first { $0.0 == "iterations" }.flatMap { Int($0.1) }

        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(esc(name)) - disco report</title>
        <style>
        body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#222}
        header{background:#fff;border-bottom:1px solid #ddd;padding:14px 24px}
        h1{font-size:22px;margin:0 0 4px}
        h2{font-size:16px;margin:22px 24px 8px;color:#333}
        .meta{color:#555;font-size:13px}
        .meta b{color:#222}
        .bar{height:6px;background:#e3e6ea;border-radius:3px;margin-top:8px;max-width:560px}
        .bar div{height:6px;background:#4e79a7;border-radius:3px}
        .grid{display:flex;flex-wrap:wrap;gap:16px;margin:0 24px}
        .card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px}
        .plot{width:100%;height:auto;display:block}
        .pc{flex:1 1 460px;max-width:680px;padding:8px 8px 4px}
        .pc.small{flex:1 1 300px;max-width:420px}
        .empty{color:#777;font-style:italic;margin:0 24px}
        .latest{display:flex;gap:8px;align-items:stretch}
        .rows{display:flex;flex-direction:column;justify-content:space-around;font:12px ui-monospace,Menlo,Consolas,monospace;color:#444;text-align:right}
        .latest img{image-rendering:pixelated;max-width:min(760px,80vw);height:auto;display:block;border:1px solid #ccc}
        .thumb img{image-rendering:pixelated;width:180px;height:auto;display:block;border:1px solid #ccc}
        .caption{font-size:12px;color:#555;margin-top:4px}
        table{border-collapse:collapse;font-size:13px}
        td{padding:3px 14px 3px 4px;border-bottom:1px solid #eee;vertical-align:top}
        td.k{color:#555;font-family:ui-monospace,Menlo,Consolas,monospace}
        .cols{columns:3 300px;column-gap:24px}
        .cols div{break-inside:avoid;font-size:13px;padding:2px 0;border-bottom:1px solid #eee;display:flex;justify-content:space-between;gap:10px}
        .cols span.k{color:#555;font-family:ui-monospace,Menlo,Consolas,monospace}
        footer{color:#888;font-size:12px;margin:24px}
        a{color:#4e79a7}
        </style></head><body>
        <header><h1>\(esc(name))</h1><div class="meta">
        """
        // Summary line.
        var meta: [String] = []
        if let it = log.lastIteration {
            meta.append("iteration <b>\(it)</b>" + (planned.map { " / \($0)" } ?? ""))
        } else {
            meta.append("no iterations logged yet")
        }
        if let t = log.times.last { meta.append("session time <b>\(ProgressLine.formatDuration(t.y))</b>") }
        if let r = recentRate(log.times) {
            meta.append("<b>\(ProgressLine.formatRate(r))</b> it/s")
            if let p = planned, let it = log.lastIteration, p > it { meta.append("ETA <b>\(ProgressLine.formatDuration(Double(p - it) / r))</b>") }
        }
        meta.append("\(log.records) log lines" + (log.sampled ? " (large log: read in slices)" : ""))
        let stamp = ISO8601DateFormatter().string(from: Date())
        h += meta.joined(separator: " &middot; ")
        h += "</div>"
        if let p = planned, p > 0, let it = log.lastIteration {
            let frac = min(1, max(0, Double(it) / Double(p)))
            h += "<div class=\"bar\" title=\"\(Int(frac * 100))%\"><div style=\"width:\(String(format: "%.1f", frac * 100))%\"></div></div>"
        }
        h += "</header>\n"

        // Samples.
        h += "<h2>Samples" + (samples.first.map { " &middot; iteration \($0.iteration)" } ?? "") + "</h2>\n"
        if let latest = samples.first, let uri = dataURI(path: latest.path) {
            h += "<div class=\"grid\"><div class=\"card\"><div class=\"latest\"><div class=\"rows\">"
            for r in ["x_A", "x_AB", "x_ABA", "x_B", "x_BA", "x_BAB"] { h += "<div>\(r)</div>" }
            // Small grids (e.g. 32x32 images) are scaled up by a whole factor, pixelated, up to ~760 px wide.
            var size = ""
            if let (w, hgt) = pngSize(path: latest.path), w > 0 {
                let k = max(1, 760 / w)
                size = " width=\"\(w * k)\" height=\"\(hgt * k)\""
            }
            h += "</div><img alt=\"samples at iteration \(latest.iteration)\" src=\"\(uri)\"\(size)></div>"
            h += "<div class=\"caption\">iteration \(latest.iteration) &middot; rows: A, A&rarr;B, A&rarr;B&rarr;A, B, B&rarr;A, B&rarr;A&rarr;B</div></div></div>\n"
            let previous = samples.dropFirst().prefix(4)
            if !previous.isEmpty {
                h += "<h2>Earlier samples</h2><div class=\"grid\">"
                for s in previous {
                    guard let u = dataURI(path: s.path) else { continue }
                    h += "<div class=\"card thumb\"><img alt=\"samples at iteration \(s.iteration)\" src=\"\(u)\"><div class=\"caption\">iteration \(s.iteration)</div></div>"
                }
                h += "</div>\n"
            }
        } else {
            h += "<p class=\"empty\">No sample grids yet (samples/iter-*.png are written every sample interval).</p>\n"
        }

        // Losses.
        let keys = log.series.keys.sorted(by: keyOrder)
        let gen = keys.filter { group(of: $0) == .generator }
        let dis = keys.filter { group(of: $0) == .discriminator }
        h += "<h2>Losses</h2>\n"
        if gen.isEmpty && dis.isEmpty {
            h += "<p class=\"empty\">No losses logged yet.</p>\n"
        } else {
            h += "<div class=\"grid\">"
            if !gen.isEmpty { h += "<div class=\"card pc\">" + lossPlot(id: "loss-G", title: "Generator losses", keys: gen, log: log) + "</div>" }
            if !dis.isEmpty { h += "<div class=\"card pc\">" + lossPlot(id: "loss-D", title: "Discriminator losses", keys: dis, log: log) + "</div>" }
            h += "</div>\n"
        }

        // D outputs.
        var domains: [String] = []
        for k in keys { if case .dOutput(let d, _) = group(of: k), !domains.contains(d) { domains.append(d) } }
        domains.sort()
        h += "<h2>Discriminator outputs: D(x) on real vs D(G(z)) on generated</h2>\n"
        if domains.isEmpty {
            h += "<p class=\"empty\">No discriminator outputs logged yet.</p>\n"
        } else {
            h += "<div class=\"grid\">"
            for d in domains { if let s = dOutputPlot(domain: d, log: log) { h += "<div class=\"card pc\">" + s + "</div>" } }
            h += "</div>\n"
        }

        // Histograms.
        h += "<h2>Pixel histograms: real vs generated" + (hist?.iteration.map { " &middot; iteration \($0)" } ?? "") + "</h2>\n"
        if let hist {
            h += "<div class=\"grid\">"
            for p in hist.pairs { h += "<div class=\"card pc\">" + histogramPlot(domain: p.domain, real: p.real, fake: p.fake) + "</div>" }
            h += "</div>\n"
        } else {
            h += "<p class=\"empty\">No hist.json yet.</p>\n"
        }

        // Anything else that was logged (learning-rate-like schedules, data wait per interval, ...).
        let other = keys.filter { group(of: $0) == .other }
        if !other.isEmpty {
            h += "<h2>Other logged values</h2>\n<div class=\"grid\">"
            for (i, k) in other.enumerated() {
                let spec = PlotSpec(id: "other-\(i)", title: k, yLabel: k,
                                    series: [PlotSeries(name: k, color: palette[i % palette.count],
                                                        curve: Curve(name: k, raw: downsample(log.series[k]!), smooth: nil))],
                                    width: 400, height: 250)
                h += "<div class=\"card pc small\">" + svg(spec) + "</div>"
            }
            h += "</div>\n"
        }

        // Config.
        h += "<h2>Configuration</h2>\n"
        if let config, !config.isEmpty {
            h += "<div class=\"grid\"><div class=\"card\" style=\"flex:1\"><div class=\"cols\">"
            for (k, v) in config { h += "<div><span class=\"k\">\(esc(k))</span><span>\(esc(v))</span></div>" }
            h += "</div></div></div>\n"
        } else {
            h += "<p class=\"empty\">No config.json.</p>\n"
        }

        h += """
        <footer>written \(stamp) from \(esc(url.path)) &middot; curves: faint = logged values (at most \(maxPoints) points), bold = centred moving average
        &middot; <a href="#live">reload every 30 s</a> / <a href="#">stop</a></footer>
        <script>function r(){clearTimeout(window.t);if(location.hash=='#live')window.t=setTimeout(function(){location.reload()},30000)}addEventListener('hashchange',r);r()</script>
        </body></html>

        """
        return h
    }

    /// Writes through `FileWriter` (a temp file in the same folder, then a rename over `path`).
    static func writeAtomically(_ data: Data, to path: String) throws {
        try FileWriter.write(data, to: path, durable: false)
    }
}
