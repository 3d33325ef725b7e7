import XCTest
import Foundation
@testable import DiscoGAN

final class ReportTests: XCTestCase {
    var run = ""

    override func setUpWithError() throws {
        run = NSTemporaryDirectory() + "disco-report-\(getpid())-\(UInt32.random(in: 0...UInt32.max))/my-run"
        try FileManager.default.createDirectory(atPath: run + "/samples", withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: (run as NSString).deletingLastPathComponent)
    }

    // MARK: fixtures

    /// A valid 2x2 RGB PNG built from bytes (stored zlib blocks, CRC-32 and Adler-32 computed here).
    static func tinyPNG() -> Data {
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            }
            return c ^ 0xFFFF_FFFF
        }
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)] }
        func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
            let tb = Array(type.utf8) + body
            return be32(UInt32(body.count)) + tb + be32(crc32(tb))
        }
        let raw: [UInt8] = [0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255]  // filter byte + 2 RGB pixels, twice
        var a: UInt32 = 1, b: UInt32 = 0
        for x in raw { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        let n = UInt16(raw.count)
        let zlib: [UInt8] = [0x78, 0x01, 0x01, UInt8(n & 255), UInt8(n >> 8), UInt8(~n & 255), UInt8(~n >> 8)] + raw + be32((b << 16) | a)
        let ihdr = be32(2) + be32(2) + [8, 2, 0, 0, 0]
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", zlib) + chunk("IEND", []))
    }

    /// 300 lines, iterations 10...3000 alternating D and G steps, values known in closed form.
    func writeLog(lines: Int = 300) throws {
        var s = ""
        for i in 1...lines {
            let it = i * 10
            let t = Double(it) * 0.25
            if i % 3 == 0 {
                s += "{\"D_A_fake\":\(0.5 - 0.3 / Double(i)),\"D_A_real\":\(0.5 + 0.3 / Double(i)),\"D_B_fake\":0.45,\"D_B_real\":0.55,"
                s += "\"data_wait\":0.5,\"dis_A\":0.69,\"dis_B\":0.7,\"dis_total\":1.39,\"iter\":\(it),\"kind\":\"D\",\"time\":\(t)}\n"
            } else {
                s += "{\"fm_A\":0.02,\"fm_B\":0.03,\"gan_A\":0.69,\"gan_B\":0.71,\"gen_total\":\(Double(i)),\"iter\":\(it),\"kind\":\"G\","
                s += "\"rate\":0.01,\"recon_A\":0.05,\"recon_B\":0.06,\"time\":\(t)}\n"
            }
        }
        s += "{\"iter\": 3010, \"gen_to"  // a half-written last line is skipped
        try s.write(toFile: run + "/log.jsonl", atomically: false, encoding: .utf8)
    }

    func writeHist() throws {
        let real = (0..<32).map { $0 < 16 ? 1 : 3 }, fake = [Int](repeating: 2, count: 32)
        let obj: [String: Any] = ["iter": 3000, "bins": 32, "real_A": real, "fake_A": fake, "real_B": fake, "fake_B": real]
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: run + "/hist.json"))
    }

    func readReport() throws -> String { try String(contentsOfFile: run + "/report.html", encoding: .utf8) }

    // MARK: report

    /// data_wait and time are running totals that restart at a resume: per interval, the wait's
    /// share of the time, worked out by hand.
    func testDataWaitIsPlottedPerInterval() {
        typealias P = Report.Point
        let wait = [P(x: 10, y: 1), P(x: 20, y: 3), P(x: 30, y: 3), P(x: 40, y: 0.5), P(x: 50, y: 2.5)]
        let time = [P(x: 10, y: 10), P(x: 20, y: 20), P(x: 30, y: 30), P(x: 40, y: 5), P(x: 50, y: 15)]
        let share = Report.intervalShare(cumulative: wait, times: time)
        XCTAssertEqual(share.map(\.x), [10, 20, 30, 40, 50])
        for (got, want) in zip(share.map(\.y), [10.0, 20, 0, 10, 20]) { XCTAssertEqual(got, want, accuracy: 1e-9) }
    }

    func testFullReport() throws {
        try writeLog()
        try writeHist()
        let png = Self.tinyPNG()
        try png.write(to: URL(fileURLWithPath: run + "/samples/iter-00001000.png"))
        try png.write(to: URL(fileURLWithPath: run + "/samples/iter-00002000.png"))
        try png.write(to: URL(fileURLWithPath: run + "/samples/iter-00003000.png"))
        try #"{"iterations": 20000, "model": "discogan", "adam": {"beta1": 0.5, "learningRate": 0.0002}}"#
            .write(toFile: run + "/config.json", atomically: false, encoding: .utf8)

        try writeReport(runDirectory: run)
        let html = try readReport()
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertTrue(html.contains("<h1>my-run</h1>"))
        XCTAssertTrue(html.contains("<svg"))
        XCTAssertTrue(html.contains("data:image/png;base64," + png.base64EncodedString()))
        XCTAssertTrue(html.contains("samples at iteration 3000"))
        XCTAssertEqual(Report.pngSize(path: run + "/samples/iter-00003000.png")!.0, 2)
        XCTAssertTrue(html.contains("width=\"760\" height=\"760\""))  // a 2x2 grid scaled up by a whole factor
        XCTAssertTrue(html.contains("iteration 2000"))
        for name in ["gen_total", "gan_A", "gan_B", "fm_B", "recon_A", "dis_total", "dis_B",
                     "D_A(x_A) real", "D_A(x_BA) generated", "D_B(x_AB) generated", "real x_A", "generated x_BA"] {
            XCTAssertTrue(html.contains(esc(name)), name)
        }
        XCTAssertTrue(html.contains("Generator losses") && html.contains("Discriminator losses"))
        XCTAssertTrue(html.contains("adam.beta1") && html.contains("discogan"))
        XCTAssertTrue(html.contains("iteration <b>3000</b> / 20000"))
        XCTAssertFalse(html.contains("<script src") || html.contains("<link") || html.contains("https://"))
        XCTAssertFalse(html.contains("NaN") || html.contains("inf,"))
        // No temp files left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])
    }

    func esc(_ s: String) -> String { Report.esc(s) }

    func testPlottedSeriesSpanTheLog() throws {
        try writeLog()
        let log = Report.readLog(runDirectory: run)
        XCTAssertEqual(log.records, 300)
        XCTAssertEqual(log.lastIteration, 3000)
        XCTAssertEqual(log.series["gen_total"]?.count, 200)
        XCTAssertEqual(log.series["dis_total"]?.count, 100)
        XCTAssertNil(log.series["kind"])
        XCTAssertNil(log.series["iter"])
        let g = Report.curve(name: "gen_total", points: log.series["gen_total"]!, maxPoints: 50)
        XCTAssertEqual(g.raw.count, 50)
        XCTAssertEqual(g.raw.first, Report.Point(x: 10, y: 1))
        XCTAssertEqual(g.raw.last, Report.Point(x: 2990, y: 299))
        XCTAssertEqual(g.smooth?.first?.x, 10)
        XCTAssertEqual(g.smooth?.last?.x, 2990)
        // D outputs: first D line is i = 3 (iter 30), last i = 300 (iter 3000).
        let d = log.series["D_A_real"]!
        XCTAssertEqual(d.first!.x, 30); XCTAssertEqual(d.first!.y, 0.6, accuracy: 1e-12)
        XCTAssertEqual(d.last!.x, 3000); XCTAssertEqual(d.last!.y, 0.501, accuracy: 1e-12)

        // The SVG polylines: the downsampled raw curve of gen_total spans the plot's x axis.
        try writeReport(runDirectory: run)
        let html = try readReport()
        let xs = try polylineXs(html, series: "gen_total", kind: "raw")
        XCTAssertEqual(xs.count, 200)
        XCTAssertEqual(xs.first!, 62, accuracy: 0.05)          // left edge of the plot area
        XCTAssertEqual(xs.last!, 560 - 16, accuracy: 0.05)     // right edge
    }

    func polylineXs(_ html: String, series: String, kind: String) throws -> [Double] {
        let marker = "data-series=\"\(series)\" data-kind=\"\(kind)\" points=\""
        let start = try XCTUnwrap(html.range(of: marker))
        let rest = html[start.upperBound...]
        let end = try XCTUnwrap(rest.firstIndex(of: "\""))
        return rest[..<end].split(separator: " ").map { Double($0.split(separator: ",")[0])! }
    }

    func testDownsampleKeepsEndpointsAndBound() {
        let pts = (0..<12345).map { Report.Point(x: Double($0 * 10), y: sin(Double($0))) }
        let d = Report.downsample(pts)
        XCTAssertEqual(d.count, 1000)
        XCTAssertEqual(d.first, pts.first)
        XCTAssertEqual(d.last, pts.last)
        XCTAssertTrue(zip(d, d.dropFirst()).allSatisfy { $0.x < $1.x })
        XCTAssertEqual(Report.downsample(Array(pts.prefix(999))).count, 999)
        XCTAssertEqual(Report.downsample(Array(pts.prefix(5)), maxPoints: 2), [pts[0], pts[4]])
    }

    func testMovingAverageByHand() {
        // Centred, half-width 1, shrinking at the ends.
        XCTAssertEqual(Report.movingAverage([1, 2, 3, 4, 5], halfWidth: 1), [1.5, 2, 3, 4, 4.5])
        // Half-width 2 on [0, 0, 9, 0, 0, 3]: i=0 -> (0+0+9)/3, i=2 -> 9/5, i=5 -> (0+0+3)/3.
        let m = Report.movingAverage([0, 0, 9, 0, 0, 3], halfWidth: 2)
        XCTAssertEqual(m[0], 3, accuracy: 1e-12)
        XCTAssertEqual(m[2], 1.8, accuracy: 1e-12)
        XCTAssertEqual(m[3], 12.0 / 5, accuracy: 1e-12)
        XCTAssertEqual(m[5], 1, accuracy: 1e-12)
        XCTAssertEqual(Report.movingAverage([1, 2], halfWidth: 0), [1, 2])
    }

    func testResumedRunKeepsTheLaterLine() {
        let lines = [#"{"iter": 10, "gen_total": 1}"#, #"{"iter": 20, "gen_total": 2}"#,
                     #"{"iter": 10, "gen_total": 5}"#, #"{"iter": 15, "gen_total": 6}"#, "not json", "", #"{"x": 1}"#]
        let log = Report.parseLog(lines: lines.map { Data($0.utf8) })
        XCTAssertEqual(log.records, 4)
        XCTAssertEqual(log.series["gen_total"]!, [.init(x: 10, y: 5), .init(x: 15, y: 6), .init(x: 20, y: 2)])
    }

    func testLargeLogIsReadInSlicesSpanningTheRun() throws {
        var s = ""
        for i in 1...5000 { s += "{\"iter\": \(i), \"gen_total\": \(Double(i) / 7), \"pad\": \"\(String(repeating: "x", count: 60))\"}\n" }
        try s.write(toFile: run + "/log.jsonl", atomically: false, encoding: .utf8)
        let (lines, sampled) = Report.readLogLines(path: run + "/log.jsonl", fullReadLimit: 40_000, slices: 16)
        XCTAssertTrue(sampled)
        let log = Report.parseLog(lines: lines, sampled: sampled)
        let g = log.series["gen_total"]!
        XCTAssertEqual(g.first!.x, 1)
        XCTAssertEqual(g.last!.x, 5000)
        XCTAssertLessThan(g.count, 1000)
        XCTAssertEqual(log.records, g.count)  // no partial line parsed
    }

    func testEmptyRunDegradesGracefully() throws {
        try writeReport(runDirectory: run)
        var html = try readReport()
        XCTAssertTrue(html.contains("No sample grids yet"))
        XCTAssertTrue(html.contains("No losses logged yet"))
        XCTAssertTrue(html.contains("No hist.json yet"))
        XCTAssertTrue(html.contains("No config.json"))

        // An empty log, then a single line: still a valid page; one point plots without NaN.
        XCTAssertTrue(FileManager.default.createFile(atPath: run + "/log.jsonl", contents: Data()))
        try writeReport(runDirectory: run)
        XCTAssertTrue(try readReport().contains("No losses logged yet"))
        try #"{"iter": 3, "kind": "D", "dis_total": 1.38, "D_A_real": 0.5, "D_A_fake": 0.5}"#.write(toFile: run + "/log.jsonl", atomically: false, encoding: .utf8)
        try writeReport(runDirectory: run)
        html = try readReport()
        XCTAssertTrue(html.contains("Discriminator losses"))
        XCTAssertFalse(html.contains("Generator losses"))
        XCTAssertFalse(html.lowercased().contains("nan"))
    }

    func testTicksAndGroups() {
        XCTAssertEqual(Report.linearTicks(0, 1, target: 5).ticks, [0, 0.2, 0.4, 0.6, 0.8, 1])
        XCTAssertEqual(Report.linearTicks(10, 2990, target: 6).ticks, [500, 1000, 1500, 2000, 2500])
        XCTAssertEqual(Report.tickLabel(1500, step: 500, iteration: true), "1500")
        XCTAssertEqual(Report.tickLabel(15000, step: 5000, iteration: true), "15k")
        XCTAssertEqual(Report.tickLabel(2500, step: 2500, iteration: true), "2.5k")
        XCTAssertEqual(Report.logTicks(0.01, 2), [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2])
        XCTAssertEqual(Report.group(of: "gen_total"), .generator)
        XCTAssertEqual(Report.group(of: "recon_A"), .generator)
        XCTAssertEqual(Report.group(of: "dis_B"), .discriminator)
        XCTAssertEqual(Report.group(of: "D_B_fake"), .dOutput(domain: "B", real: false))
        XCTAssertEqual(Report.group(of: "data_wait"), .other)
    }

    // MARK: progress line

    func testDurationFormatting() {
        XCTAssertEqual(ProgressLine.formatDuration(4930), "1h22m")
        XCTAssertEqual(ProgressLine.formatDuration(3605), "1h00m")
        XCTAssertEqual(ProgressLine.formatDuration(245), "4m05s")
        XCTAssertEqual(ProgressLine.formatDuration(42.9), "42s")
        XCTAssertEqual(ProgressLine.formatDuration(93600), "1d02h")
        XCTAssertEqual(ProgressLine.formatDuration(.infinity), "--")
    }

    func testLineFormat() {
        let losses: StepLosses = ["gen_total": 0.83, "gan_A": 0.70, "gan_B": 0.72, "fm_A": 0.03, "fm_B": 0.03,
                                       "recon_A": 0.06, "recon_B": 0.06, "dis_total": 1.38, "rate": 0.01]
        XCTAssertEqual(ProgressLine.format(iter: 1200, total: 20000, rate: 3.4, losses: losses),
                       "iter 1200/20000  3.4 it/s  ETA 1h32m  G 0.83 (gan 0.71 fm 0.03 rec 0.06)  D 1.38")
        // 18800 iterations left at 18800/4930 it/s: 4930 s.
        XCTAssertTrue(ProgressLine.format(iter: 1200, total: 20000, rate: 18800 / 4930, losses: [:]).hasSuffix("3.8 it/s  ETA 1h22m"))
        XCTAssertEqual(ProgressLine.format(iter: 0, total: 10, rate: nil, losses: [:]), "iter 0/10  -- it/s  ETA --")
        XCTAssertEqual(ProgressLine.format(iter: 5, total: 10, rate: 0.5, losses: ["gen_total": 0.0012]),
                       "iter 5/10  0.50 it/s  ETA 10s  G 1.2e-03")
    }

    final class Clock { var t = 0.0 }

    func testRateIsOverTheRecentWindow() {
        let clock = Clock()
        var out: [String] = []
        var p = ProgressLine(total: 100_000, start: 1000, isTerminal: false, plainEvery: 1_000_000,
                             clock: { clock.t }, output: { out.append($0) })
        p.window = 20
        var it = 1000
        // 60 s at 10 it/s, then 30 s at 2 it/s: the rate reads 2, not the average since the start.
        for _ in 0..<600 { clock.t += 0.1; it += 1; p.update(iter: it, losses: [:]) }
        XCTAssertEqual(p.rate(now: clock.t)!, 10, accuracy: 0.01)
        for _ in 0..<60 { clock.t += 0.5; it += 1; p.update(iter: it, losses: [:]) }
        XCTAssertEqual(p.rate(now: clock.t)!, 2, accuracy: 0.05)
        XCTAssertLessThanOrEqual(p.marks.count, 40)
        XCTAssertTrue(p.line(now: clock.t).hasPrefix("iter 1660/100000  2.0 it/s  ETA 13h39m"))  // 98340 / 2 s = 13h39m30s
        XCTAssertEqual(out, [])  // plainEvery not reached
    }

    func testPlainModePrintsRarely() {
        let clock = Clock()
        var out: [String] = []
        var p = ProgressLine(total: 1000, start: 0, isTerminal: false, plainEvery: 100, plainInterval: 10,
                             clock: { clock.t }, output: { out.append($0) })
        // 64 it/s: 100 iterations take 1.6 s, so the 10 s interval is the rarer condition -> every 640 iterations.
        for it in 1...1000 { clock.t = Double(it) / 64; p.update(iter: it, losses: ["gen_total": 0.5, "dis_total": 1.4]) }
        p.finish()
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(out[0], "iter 640/1000  64.0 it/s  ETA 5s  G 0.50  D 1.40\n")
        XCTAssertTrue(out[1].hasPrefix("iter 1000/1000"), out[1])
        XCTAssertTrue(out.allSatisfy { $0.hasSuffix("\n") && !$0.contains("\r") })

        // Slow (0.5 it/s): 10 s pass every 5 iterations, so 100 iterations is the rarer condition.
        out = []
        clock.t = 0
        var q = ProgressLine(total: 250, start: 0, isTerminal: false, plainEvery: 100, plainInterval: 10,
                             clock: { clock.t }, output: { out.append($0) })
        for it in 1...230 { clock.t += 2; q.update(iter: it, losses: [:]) }
        q.finish()
        XCTAssertEqual(out.map { $0.split(separator: " ")[1] }, ["100/250", "200/250", "230/250"])
    }

    func testTerminalModeRewritesInPlace() {
        let clock = Clock()
        var out: [String] = []
        var p = ProgressLine(total: 200, start: 0, isTerminal: true, clock: { clock.t }, output: { out.append($0) })
        for it in 1...199 { clock.t += 0.01; p.update(iter: it, losses: ["dis_total": 1.5]) }
        // 1.99 s at most 4 redraws per second: the first update plus one per 0.25 s.
        XCTAssertTrue((8...10).contains(out.count), "\(out.count)")
        XCTAssertTrue(out.allSatisfy { $0.hasPrefix("\r") && !$0.contains("\n") })
        p.finish()
        XCTAssertEqual(out.last, "\n")
        XCTAssertTrue(out[out.count - 2].hasPrefix("\riter 199/200"))
    }

    /// On a terminal the redrawn line fits the terminal's width (one column spare, so it never
    /// wraps): it used to run to 84 columns on an 80-column terminal and scroll at every redraw.
    /// Less important parts go first (the G terms, then it/s, the ETA...), the iteration last.
    func testTerminalLineFitsTheWidth() {
        let losses: StepLosses = ["gen_total": 0.83, "gan_A": 0.70, "gan_B": 0.72, "fm_A": 0.03, "fm_B": 0.03,
                                       "recon_A": 0.06, "recon_B": 0.06, "dis_total": 1.38]
        for columns in [80, 60, 40, 24, 12, 1] {
            let clock = Clock()
            var out: [String] = []
            var width = columns
            var p = ProgressLine(total: 200_000, start: 12_000, isTerminal: true, columns: { width },
                                 clock: { clock.t }, output: { out.append($0) })
            for it in 12_001...12_400 {
                clock.t += 0.01
                if it == 12_200 { width = max(1, columns / 2) }  // the terminal shrinks
                p.update(iter: it, losses: losses)
            }
            p.finish()
            XCTAssertGreaterThan(out.count, 5)
            XCTAssertEqual(out.last, "\n")
            for s in out.dropLast() {
                XCTAssertTrue(s.hasPrefix("\r") && !s.contains("\n"), s)
                // Before the shrink the line may use columns - 1; after it, half of that.
                XCTAssertLessThanOrEqual(s.count - 1, max(1, columns - 1), "\(columns) columns: \(s)")
            }
            let last = out[out.count - 2].dropFirst().trimmingCharacters(in: .whitespaces)
            XCTAssertLessThanOrEqual(last.count, max(1, columns / 2 - 1), "\(columns) columns: \(last)")
            if columns >= 40 { XCTAssertTrue(last.hasPrefix("iter 12400/200000"), last) }
        }
        // Wide enough: the whole line, as in plain mode.
        var out: [String] = []
        var p = ProgressLine(total: 200_000, start: 12_000, isTerminal: true, columns: { 200 }, clock: { 0 }, output: { out.append($0) })
        p.update(iter: 12_001, losses: losses)
        XCTAssertEqual(out, ["\r" + ProgressLine.format(iter: 12_001, total: 200_000, rate: nil, losses: losses)])
        // 80 columns: the G terms go first.
        out = []
        p = ProgressLine(total: 2_000_000, start: 1_200_000, isTerminal: true, columns: { 80 }, clock: { 0 }, output: { out.append($0) })
        p.update(iter: 1_200_001, losses: losses)
        XCTAssertEqual(out, ["\riter 1200001/2000000  -- it/s  ETA --  G 0.83  D 1.38"])
    }

    /// The width: the terminal's (TIOCGWINSZ), else $COLUMNS, else 80.
    func testTerminalColumns() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        XCTAssertEqual(ProgressLine.terminalColumns(fd: fds[1], environment: ["COLUMNS": "33"]), 33)
        XCTAssertEqual(ProgressLine.terminalColumns(fd: fds[1], environment: ["COLUMNS": "wide"]), 80)
        XCTAssertEqual(ProgressLine.terminalColumns(fd: fds[1], environment: ["COLUMNS": "0"]), 80)
        XCTAssertEqual(ProgressLine.terminalColumns(fd: fds[1], environment: [:]), 80)
        // A pseudo-terminal set to 57 columns (its master side answers TIOCGWINSZ too).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        try XCTSkipIf(master < 0, "no pseudo-terminals here")
        defer { close(master) }
        var ws = winsize(ws_row: 24, ws_col: 57, ws_xpixel: 0, ws_ypixel: 0)
        XCTAssertEqual(ioctl(master, UInt(TIOCSWINSZ), &ws), 0)
        XCTAssertEqual(ProgressLine.terminalColumns(fd: master, environment: ["COLUMNS": "33"]), 57)
    }
}
