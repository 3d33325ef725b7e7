import Foundation

/// One status line for a training run:
///
///     iter 1200/20000  3.4 it/s  ETA 1h22m  G 0.83 (gan 0.71 fm 0.03 rec 0.06)  D 1.38
///
/// On a terminal the line is rewritten in place (`\r`) at most every `terminalInterval` seconds,
/// fitted to the terminal's width less one column (`terminalColumns`, asked at each redraw), so it
/// never wraps: the G terms go first, then it/s, the ETA and the losses.
/// Otherwise (CI logs, `| tee`) a plain line is printed only when both `plainEvery` iterations and
/// `plainInterval` seconds have passed since the last one (whichever is rarer), plus the final
/// iteration, so logs stay short at any speed.
///
/// it/s is measured over the last `window` seconds (not since the start), and the ETA follows it.
/// Losses are merged across updates (a D step reports dis_*, a G step gen_* / gan_* / fm_* / recon_*),
/// so the line always shows the latest value of each; gan / fm / rec are the means over the
/// directions present (`gan_A`, `gan_B`, ...).
public struct ProgressLine {
    public let total: Int
    public let start: Int
    /// Rewrite one line in place (a terminal) or print plain lines.
    public let isTerminal: Bool
    /// Plain mode: at least this many iterations between lines...
    public var plainEvery: Int
    /// ...and at least this many seconds.
    public var plainInterval: Double
    /// Terminal mode: at most one redraw per this many seconds.
    public var terminalInterval: Double = 0.25
    /// Seconds over which it/s is measured.
    public var window: Double = 20

    let clock: () -> Double
    let output: (String) -> Void
    /// Terminal mode: the terminal's width in columns.
    let columns: () -> Int
    /// (time, iteration) marks, oldest first; the first one is at or before `now - window`.
    private(set) var marks: [(t: Double, iter: Int)]
    private(set) var latest = StepLosses()
    private var iter: Int
    private var lastShown: (t: Double, iter: Int)
    private var shownOnce = false
    private var pending = false
    private var lineOpen = false
    private var shownWidth = 0

    /// - Parameters:
    ///   - total: the run's final iteration.
    ///   - start: the iteration training starts (or resumes) from.
    ///   - isTerminal: defaults to `isatty(1)`.
    ///   - plainEvery, plainInterval: the plain-mode spacing (both must have passed).
    ///   - columns: the terminal's width (default `terminalColumns()` of stdout); inject for tests.
    ///   - clock: seconds from any fixed origin (monotonic by default); inject for tests.
    ///   - output: where text goes (stdout through stdio by default, so it interleaves with `print`).
    public init(total: Int, start: Int = 0, isTerminal: Bool? = nil, plainEvery: Int = 100,
                plainInterval: Double = 10, columns: (() -> Int)? = nil, clock: (() -> Double)? = nil, output: ((String) -> Void)? = nil) {
        self.total = total
        self.start = start
        self.isTerminal = isTerminal ?? (isatty(1) != 0)
        self.plainEvery = max(1, plainEvery)
        self.plainInterval = plainInterval
        self.columns = columns ?? { ProgressLine.terminalColumns() }
        self.clock = clock ?? { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
        self.output = output ?? { s in fputs(s, stdout); fflush(stdout) }
        let now = self.clock()
        marks = [(now, start)]
        iter = start
        lastShown = (now, start)
    }

    /// Records iteration `iter` (just completed) with the step's losses; prints when due.
    public mutating func update(iter: Int, losses: StepLosses) {
        let now = clock()
        latest.update(with: losses)
        self.iter = iter
        if now - marks[marks.count - 1].t >= window / 32 { marks.append((now, iter)) }
        while marks.count >= 2 && marks[1].t <= now - window { marks.removeFirst() }

        let last = iter >= total
        let due: Bool
        if isTerminal {
            due = !shownOnce || last || now - lastShown.t >= terminalInterval
        } else {
            due = last || (iter - lastShown.iter >= plainEvery && now - lastShown.t >= plainInterval)
        }
        if due { show(now: now) } else { pending = true }
    }

    /// Prints the latest state if it was not shown, and ends the line.
    public mutating func finish() {
        if pending { show(now: clock()) }
        if lineOpen { output("\n"); lineOpen = false }
    }

    /// Iterations per second over the recent window; nil before any progress.
    public func rate(now: Double) -> Double? {
        let base = marks[0]
        let dt = now - base.t, di = iter - base.iter
        guard dt > 0, di > 0 else { return nil }
        return Double(di) / dt
    }

    /// The current line (without `\r` or newline).
    public func line(now: Double) -> String {
        ProgressLine.format(iter: iter, total: total, rate: rate(now: now), losses: latest)
    }

    private mutating func show(now: Double) {
        if isTerminal {
            // One column spare: a line filling the last column wraps on some terminals.
            let width = max(1, columns() - 1)
            let text = ProgressLine.format(iter: iter, total: total, rate: rate(now: now), losses: latest, width: width)
            // Blanks over the rest of a longer previous line (within the width).
            let pad = max(0, min(shownWidth, width) - text.count)
            output("\r" + text + String(repeating: " ", count: pad))
            shownWidth = text.count
            lineOpen = true
        } else {
            output(line(now: now) + "\n")
        }
        lastShown = (now, iter)
        shownOnce = true
        pending = false
    }

    /// The width of the terminal on `fd` (TIOCGWINSZ); else `COLUMNS` from `environment` (a
    /// positive number); else 80.
    public static func terminalColumns(fd: Int32 = 1,
                                       environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        var size = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 { return Int(size.ws_col) }
        if let c = environment["COLUMNS"].flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }), c > 0 { return c }
        return 80
    }

    // MARK: formatting

    /// `iter 1200/20000  3.4 it/s  ETA 1h22m  G 0.83 (gan 0.71 fm 0.03 rec 0.06)  D 1.38`
    public static func format(iter: Int, total: Int, rate: Double?, losses: StepLosses) -> String {
        format(iter: iter, total: total, rate: rate, losses: losses, width: nil)
    }

    /// The line in at most `width` characters (nil: no limit): the first of ever shorter forms
    /// that fits (without the G terms; single spaces; without it/s; without the ETA; without the
    /// losses), else the shortest cut to `width`.
    public static func format(iter: Int, total: Int, rate: Double?, losses: StepLosses, width: Int?) -> String {
        let p = parts(iter: iter, total: total, rate: rate, losses: losses)
        let full = [p.head, p.rate, p.eta, p.g.map { g in p.terms.map { g + " " + $0 } ?? g }, p.d, p.other]
        guard let width else { return full.compactMap { $0 }.joined(separator: "  ") }
        let short = [p.head, p.rate, p.eta, p.g, p.d, p.other]
        let forms: [(parts: [String?], separator: String)] = [
            (full, "  "), (short, "  "), (short, " "),
            ([p.head, p.eta, p.g, p.d, p.other], " "), ([p.head, p.g, p.d, p.other], " "), ([p.head], ""),
        ]
        var text = ""
        for form in forms {
            text = form.parts.compactMap { $0 }.joined(separator: form.separator)
            if text.count <= width { return text }
        }
        return String(text.prefix(max(0, width)))
    }

    /// The pieces of the line; nil where there is nothing to show.
    static func parts(iter: Int, total: Int, rate: Double?, losses: StepLosses)
        -> (head: String, rate: String, eta: String, g: String?, terms: String?, d: String?, other: String?) {
        let head = "iter \(iter)/\(total)"
        let rateText: String, eta: String
        if let r = rate {
            rateText = formatRate(r) + " it/s"
            eta = "ETA " + formatDuration(Double(max(0, total - iter)) / r)
        } else {
            rateText = "-- it/s"
            eta = iter >= total ? "ETA 0s" : "ETA --"
        }
        func mean(_ family: StepLosses.Term.Family) -> Float? {
            let vs = losses.values(of: family, network: .generator)
            return vs.isEmpty ? nil : vs.reduce(0, +) / Float(vs.count)
        }
        var g: String?, terms: String?, d: String?, other: String?
        if let total = losses[.genTotal] {
            g = "G " + formatLoss(total)
            let t = [("gan", mean(.adversarial)), ("fm", mean(.featureMatching)), ("rec", mean(.reconstruction)), ("idt", mean(.identity))]
                .compactMap { n, v in v.map { n + " " + formatLoss($0) } }
            if !t.isEmpty { terms = "(" + t.joined(separator: " ") + ")" }
        }
        if let total = losses[.disTotal] { d = "D " + formatLoss(total) }
        if g == nil && d == nil && !losses.isEmpty {
            other = losses.entries.prefix(6).map { $0.key + " " + formatLoss($0.value) }.joined(separator: " ")
        }
        return (head, rateText, eta, g, terms, d, other)
    }

    /// 4930 -> "1h22m", 245 -> "4m05s", 42 -> "42s", 93600 -> "1d02h".
    public static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "--" }
        let s = Int(max(0, seconds))
        let d = s / 86400, h = (s % 86400) / 3600, m = (s % 3600) / 60, sec = s % 60
        if d > 0 { return "\(d)d" + String(format: "%02dh", h) }
        if h > 0 { return "\(h)h" + String(format: "%02dm", m) }
        if m > 0 { return "\(m)m" + String(format: "%02ds", sec) }
        return "\(sec)s"
    }

    static func formatRate(_ r: Double) -> String {
        r >= 100 ? String(format: "%.0f", r) : r >= 1 ? String(format: "%.1f", r) : String(format: "%.2f", r)
    }

    static func formatLoss(_ v: Float) -> String {
        let a = abs(v)
        if a == 0 || (a >= 0.01 && a < 1000) { return String(format: "%.2f", v) }
        return String(format: "%.1e", v)
    }
}
