import Foundation
import DiscoCore

/// Writes `RUN/report.html` for a `disco gan train` run: the classic plots of a GAN, one
/// self-contained page (images as data URIs, plots as inline SVG from ReportPlot.swift):
/// - mean D(x) and D(G(z)) over training (log.jsonl's D_x, D_G_z);
/// - the losses (loss_D, loss_G);
/// - the sample grid of each epoch (samples/epoch-N.png; one row per label when conditional);
/// - per epoch, histograms of D's output on fixed real images and on generated ones (samples/epoch-N.json).
/// Missing inputs give a page that says so. Replaced atomically through `FileWriter`.
public func writeGANReport(runDirectory: String) throws {
    try Report.writeAtomically(Data(Report.renderGAN(runDirectory: runDirectory).utf8), to: runDirectory + "/report.html")
}

extension Report {
    struct EpochRecord {
        var epoch: Int, iteration: Int
        var image: String?
        var range: (Double, Double), real: [Double], fake: [Double]
        var meanReal: Double, meanFake: Double
        var output: String
        var rows: [String]
    }

    /// samples/epoch-N.json (and the .png beside it), oldest first.
    static func readEpochs(runDirectory: String) -> [EpochRecord] {
        let dir = runDirectory + "/samples"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("epoch-") && $0.hasSuffix(".json") }.sorted()
        return names.compactMap { n in
            guard let d = FileManager.default.contents(atPath: dir + "/" + n),
                  let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any],
                  let e = number(o["epoch"]), let it = number(o["iter"]), let r = o["range"] as? [Any], r.count == 2,
                  let lo = number(r[0]), let hi = number(r[1]), let real = o["real"] as? [Any], let fake = o["fake"] as? [Any] else { return nil }
            let png = dir + "/" + n.dropLast(5) + ".png"
            return EpochRecord(epoch: Int(e), iteration: Int(it), image: FileManager.default.fileExists(atPath: png) ? png : nil,
                               range: (lo, hi), real: real.compactMap { number($0) }, fake: fake.compactMap { number($0) },
                               meanReal: number(o["mean_real"]) ?? .nan, meanFake: number(o["mean_fake"]) ?? .nan,
                               output: o["output"] as? String ?? "D", rows: o["rows"] as? [String] ?? [])
        }
    }

    /// One epoch's histograms of D's output: real and generated images, as fractions per bin.
    static func dHistogramPlot(_ r: EpochRecord) -> String {
        let (lo, hi) = r.range, bins = max(r.real.count, 1), w = (hi - lo) / Double(bins)
        func fractions(_ counts: [Double]) -> Curve {
            let total = counts.reduce(0, +)
            return Curve(name: "", raw: counts.enumerated().map { Point(x: lo + Double($0) * w, y: total > 0 ? $1 / total : 0) }, smooth: nil)
        }
        let series = [PlotSeries(name: "real x", color: "#2e8b57", curve: fractions(r.real), histogram: true, binWidth: w),
                      PlotSeries(name: "generated G(z)", color: "#d62728", curve: fractions(r.fake), histogram: true, binWidth: w)]
        let ymax = max(series.flatMap { $0.curve.raw.map(\.y) }.max() ?? 1, 1e-6) * 1.08
        let title = String(format: "epoch %d: mean %.2f real, %.2f generated", r.epoch, r.meanReal, r.meanFake)
        return svg(PlotSpec(id: "dhist-\(r.epoch)", title: title, xLabel: r.output, yLabel: "fraction of images", series: series,
                            xRange: (lo, hi), yRange: (0, ymax), iterationAxis: false, width: 420, height: 260))
    }

    static func renderGAN(runDirectory: String) -> String {
        let url = URL(fileURLWithPath: runDirectory).standardizedFileURL
        let name = url.lastPathComponent.isEmpty ? runDirectory : url.lastPathComponent
        let log = readLog(runDirectory: runDirectory)
        let config = readConfig(runDirectory: runDirectory)
        let epochs = readEpochs(runDirectory: runDirectory)
        let configObj = FileManager.default.contents(atPath: runDirectory + "/config.json").flatMap { try? JSONDecoder().decode(GANConfig.self, from: $0) }
        let lsgan = configObj?.loss == .lsgan

        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(esc(name)) - disco gan report</title>
        <style>
        body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#222}
        header{background:#fff;border-bottom:1px solid #ddd;padding:14px 24px}
        h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:22px 24px 8px;color:#333}
        .meta{color:#555;font-size:13px} .meta b{color:#222}
        .grid{display:flex;flex-wrap:wrap;gap:16px;margin:0 24px}
        .card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px}
        .plot{width:100%;height:auto;display:block}
        .pc{flex:1 1 460px;max-width:680px;padding:8px 8px 4px} .pc.small{flex:1 1 320px;max-width:440px}
        .empty{color:#777;font-style:italic;margin:0 24px}
        .samples img{image-rendering:pixelated;display:block;border:1px solid #ccc}
        .caption{font-size:12px;color:#555;margin-top:4px}
        .cols{columns:3 300px;column-gap:24px}
        .cols div{break-inside:avoid;font-size:13px;padding:2px 0;border-bottom:1px solid #eee;display:flex;justify-content:space-between;gap:10px}
        .cols span.k{color:#555;font-family:ui-monospace,Menlo,Consolas,monospace}
        footer{color:#888;font-size:12px;margin:24px}
        </style></head><body>
        <header><h1>\(esc(name))</h1><div class="meta">
        """
        var meta: [String] = []
        if let c = configObj { meta.append("<b>\(esc(c.summary))</b>, batch \(c.batch), lr \(c.learningRate)") }
        if let it = log.lastIteration { meta.append("iteration <b>\(it)</b>") } else { meta.append("no iterations logged yet") }
        if let last = epochs.last, let c = configObj { meta.append("epoch <b>\(last.epoch)</b> / \(c.epochs)") }
        if let t = log.times.last { meta.append("session time <b>\(ProgressLine.formatDuration(t.y))</b>") }
        h += meta.joined(separator: " &middot; ") + "</div></header>\n"

        // D(x) and D(G(z)).
        let dName = lsgan ? "mean D (raw, LSGAN: real target 1, generated 0)" : "mean sigmoid(D)"
        h += "<h2>D(x) on real images and D(G(z)) on generated ones</h2>\n"
        if let dx = log.series["D_x"], let dg = log.series["D_G_z"] {
            let spec = PlotSpec(id: "d-out", title: "Mean D(x) and D(G(z)) per batch (D step, before its update)", yLabel: dName,
                                series: [PlotSeries(name: "D(x) real", color: "#2e8b57", curve: curve(name: "D_x", points: dx)),
                                         PlotSeries(name: "D(G(z)) generated", color: "#d62728", dash: "6 3", curve: curve(name: "D_G_z", points: dg))],
                                yRange: lsgan ? nil : (0, 1), reference: lsgan ? [(0.5, "0.5")] : [(0.5, "0.5: D cannot tell them apart")])
            h += "<div class=\"grid\"><div class=\"card pc\">" + svg(spec) + "</div>"
            var losses: [PlotSeries] = []
            for (k, label, col) in [("loss_D", "D's loss", "#b07aa1"), ("loss_G", "G's loss", "#4e79a7")] {
                if let p = log.series[k] { losses.append(PlotSeries(name: label, color: col, curve: curve(name: k, points: p))) }
            }
            var refs: [(y: Double, label: String)] = []
            if !lsgan && configObj?.generatorLoss != .minimax { refs = [(2 * Foundation.log(2.0), "D: 2 log 2 at D = 1/2"), (Foundation.log(2.0), "G: log 2")] }
            h += "<div class=\"card pc\">" + svg(PlotSpec(id: "losses", title: "Losses", yLabel: "loss", series: losses, reference: refs)) + "</div></div>\n"
        } else {
            h += "<p class=\"empty\">Nothing logged yet.</p>\n"
        }

        // Samples per epoch, newest first.
        h += "<h2>Samples of fixed z after each epoch" + ((epochs.last?.rows.isEmpty == false) ? " (one row per label: \(esc(epochs.last!.rows.joined(separator: ", "))))" : "") + "</h2>\n"
        let withImages = epochs.filter { $0.image != nil }
        if withImages.isEmpty {
            h += "<p class=\"empty\">No sample grids yet (samples/epoch-N.png).</p>\n"
        } else {
            h += "<div class=\"grid\">"
            for (i, r) in withImages.reversed().enumerated() {
                guard let p = r.image, let uri = dataURI(path: p) else { continue }
                let k = i == 0 ? 2 : 1
                let size = pngSize(path: p).map { " width=\"\($0.0 * k)\" height=\"\($0.1 * k)\"" } ?? ""
                h += "<div class=\"card samples\"><img alt=\"samples after epoch \(r.epoch)\" src=\"\(uri)\"\(size)><div class=\"caption\">epoch \(r.epoch) &middot; iteration \(r.iteration)\(r.epoch == 0 ? " (before training)" : "")</div></div>"
            }
            h += "</div>\n"
        }

        // Histograms of D's output per epoch.
        h += "<h2>D's output on real and generated images, per epoch (fixed images, eval mode)</h2>\n"
        if epochs.isEmpty {
            h += "<p class=\"empty\">No histograms yet (samples/epoch-N.json).</p>\n"
        } else {
            h += "<div class=\"grid\">"
            for r in epochs.reversed() { h += "<div class=\"card pc small\">" + dHistogramPlot(r) + "</div>" }
            h += "</div>\n"
        }

        h += "<h2>Configuration</h2>\n"
        h += configSection(config)
        h += "<footer>written \(ISO8601DateFormatter().string(from: Date())) from \(esc(url.path))</footer>\n</body></html>\n"
        return h
    }
}
