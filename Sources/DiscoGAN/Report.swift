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

    /// The Configuration section's body (both pages): config.json's keys and values, or a note
    /// that there is none.
    static func configSection(_ config: [(String, String)]?) -> String {
        guard let config, !config.isEmpty else { return "<p class=\"empty\">No config.json.</p>\n" }
        var h = "<div class=\"grid\"><div class=\"card\" style=\"flex:1\"><div class=\"cols\">"
        for (k, v) in config { h += "<div><span class=\"k\">\(esc(k))</span><span>\(esc(v))</span></div>" }
        return h + "</div></div></div>\n"
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
        h += configSection(config)

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
