import Foundation

// The report's plots as inline SVG: curve processing (downsampling, moving average), axes and
// ticks, and the loss, D-output and histogram plots.
extension Report {
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

    /// The group of a log key, from `StepLosses.Term` (keys that are not terms: `.other`).
    static func group(of key: String) -> Group {
        guard let t = StepLosses.Term(rawValue: key) else { return .other }
        if let d = t.domain, let real = t.isReal { return .dOutput(domain: d, real: real) }
        switch t.network {
        case .generator: return .generator
        case .discriminator: return .discriminator
        case .none: return .other
        }
    }

    /// Totals first, then by family (adversarial, feature matching, reconstruction, identity), A
    /// before B; keys that are not terms last, by name.
    static func keyOrder(_ a: String, _ b: String) -> Bool {
        func rank(_ k: String) -> Int {
            guard let t = StepLosses.Term(rawValue: k) else { return 9 }
            switch t.family {
            case .total: return 0
            case .adversarial: return t.network == .discriminator ? 5 : 1
            case .featureMatching: return 2
            case .reconstruction: return 3
            case .identity: return 4
            case .dOutput, .schedule: return 9
            }
        }
        return (rank(a), a) < (rank(b), b)
    }

    /// A term's colour by family (its B twin dashed); others from the palette.
    static func color(for key: String, fallback: Int) -> (String, String?) {
        guard let t = StepLosses.Term(rawValue: key) else { return (palette[fallback % palette.count], nil) }
        let dash = t.domain == "B" ? "6 3" : nil
        switch t.family {
        case .total: return ("#333333", nil)
        case .adversarial: return (t.network == .discriminator ? "#b07aa1" : "#4e79a7", dash)
        case .featureMatching: return ("#f28e2b", dash)
        case .reconstruction: return ("#59a14f", dash)
        case .identity, .dOutput, .schedule: return (palette[fallback % palette.count], dash)
        }
    }

    // MARK: plots

    static let palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f", "#edc948", "#ff9da7", "#bab0ac"]

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
}
