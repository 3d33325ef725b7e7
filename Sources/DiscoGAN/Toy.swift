import Foundation
import DiscoCore

/// `disco gan toy`: Goodfellow et al.'s minimax game made visible on 1-D data.
///
/// Data x ~ p_data (a Gaussian N(2, 0.5^2), or the mixture 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2));
/// noise z ~ U(-1, 1). G and D are MLPs 1 -> h -> h -> 1 (ReLU; D's output a logit). D maximises
/// V(D, G) = E log D(x) + E log(1 - D(G(z))); G takes the non-saturating step (maximises
/// E log D(G(z))). For a fixed G the best D is D*(x) = p_data(x) / (p_data(x) + p_g(x)); at
/// p_g = p_data, D* = 1/2 everywhere and V = -log 4. Each snapshot records p_data, p_g (a histogram
/// of G's samples), D and D* on a grid, and V.
public enum ToyData: String, CaseIterable, Codable, Sendable {
    case gaussian, mixture

    /// (weight, mean, standard deviation) of each component.
    var components: [(Double, Double, Double)] {
        switch self {
        case .gaussian: return [(1, 2, 0.5)]
        case .mixture: return [(0.5, -2, 0.5), (0.5, 2, 0.5)]
        }
    }

    public func density(_ x: Double) -> Double {
        components.reduce(0) { s, c in
            let (w, m, sd) = c, u = (x - m) / sd
            return s + w * exp(-0.5 * u * u) / (sd * (2 * Double.pi).squareRoot())
        }
    }

    public func sample(_ n: Int, rng: inout Xoshiro256) -> Tensor {
        let t = Tensor(uninitialized: [n, 1])
        let cs = components
        for i in 0..<n {
            var u = Double(rng.nextUniform()), k = 0
            while k < cs.count - 1 && u > cs[k].0 { u -= cs[k].0; k += 1 }
            // Box-Muller
            let a = max(Double(rng.nextUniform()), 1e-12), b = Double(rng.nextUniform())
            t[i] = Float(cs[k].1 + cs[k].2 * (-2 * log(a)).squareRoot() * cos(2 * Double.pi * b))
        }
        return t
    }
}

/// The gradients of the vanilla GAN's two steps (Goodfellow et al.) for MLPs G and D, whose D
/// outputs logits: D's loss bce(D(x), 1) + bce(D(G(z)), 0), G's the non-saturating bce(D(G(z)), 1)
/// (means over the batch). `disco gan toy` trains with them; the MLP GAN's PyTorch fixture checks
/// them.
public enum MLPGAN {
    /// Zeroes and fills D's gradients; returns D's loss.
    @discardableResult
    public static func discriminatorGradients(_ D: MLP, real: Tensor, fake: Tensor) -> Float {
        D.zeroGradients()
        let r = D.forward(real), f = D.forward(fake)
        let lr = bceWithLogitsLoss(logits: r.output, target: 1), lf = bceWithLogitsLoss(logits: f.output, target: 0)
        D.backward(r.trace, dOutput: lr.grad); D.backward(f.trace, dOutput: lf.grad)
        return lr.loss + lf.loss
    }

    /// Zeroes and fills G's gradients through a frozen D (D's gradients are left zero); returns
    /// G's loss.
    @discardableResult
    public static func generatorGradients(_ G: MLP, _ D: MLP, z: Tensor) -> Float {
        G.zeroGradients()
        let g = G.forward(z)
        let d = D.forward(g.output)
        let loss = bceWithLogitsLoss(logits: d.output, target: 1)
        let dx = D.backward(d.trace, dOutput: loss.grad)
        D.zeroGradients()
        G.backward(g.trace, dOutput: dx)
        return loss.loss
    }
}

public final class ToyGAN {
    public struct Settings: Codable, Sendable {
        public var data = ToyData.gaussian
        public var steps = 3000
        public var batch = 256
        public var hidden = 32
        public var learningRate: Float = 1e-3
        public var snapshots = 6
        public var seed: UInt64 = 0
        public init() {}
    }

    public struct Snapshot {
        public var step: Int
        public var grid: [Double], pData: [Double], pG: [Double], d: [Double], dStar: [Double]
        public var value: Double
        /// E |D - D*| under the mixture (p_data + p_g) / 2: how far D is from the best response,
        /// where either distribution has mass. (The largest gap is dominated by spikes of p_g: a
        /// piecewise-linear G maps whole intervals of z to nearly one x.)
        public var meanGap: Double
    }

    public let settings: Settings
    public let G: MLP, D: MLP
    let optG: Adam, optD: Adam
    var rng: Xoshiro256

    public init(settings: Settings) {
        self.settings = settings
        rng = Xoshiro256(seed: settings.seed)
        let h = settings.hidden
        G = MLP(sizes: [1, h, h, 1], hidden: .relu, output: .identity)
        D = MLP(sizes: [1, h, h, 1], hidden: .relu, output: .identity)
        G.initialize(rng: &rng); D.initialize(rng: &rng)
        let hp = Adam.Hyperparameters(learningRate: settings.learningRate, beta1: 0.5, beta2: 0.999, weightDecay: 0)
        optG = Adam(parameterCount: G.parameters.count, hyperparameters: hp)
        optD = Adam(parameterCount: D.parameters.count, hyperparameters: hp)
    }

    public func noise(_ n: Int) -> Tensor { Tensor.uniform([n, 1], low: -1, high: 1, rng: &rng) }

    /// One D step on a batch of data and of G's samples; returns D's loss.
    @discardableResult
    public func discriminatorStep() -> Float {
        let real = settings.data.sample(settings.batch, rng: &rng)
        let fake = G.forward(noise(settings.batch)).output
        return discriminatorStep(real: real, fake: fake)
    }

    /// One D step against given samples (the test trains D against a fixed distribution this way).
    @discardableResult
    public func discriminatorStep(real: Tensor, fake: Tensor) -> Float {
        let loss = MLPGAN.discriminatorGradients(D, real: real, fake: fake)
        optD.update(params: D.parameters, grads: D.grads)
        return loss
    }

    /// One non-saturating G step; returns -E log D(G(z)).
    @discardableResult
    public func generatorStep() -> Float {
        let loss = MLPGAN.generatorGradients(G, D, z: noise(settings.batch))
        optG.update(params: G.parameters, grads: G.grads)
        return loss
    }

    /// D(x) = sigmoid(logit) on the points of `xs`.
    public func discriminator(_ xs: [Double]) -> [Double] {
        let out = D.forward(Tensor(shape: [xs.count, 1], values: xs.map { Float($0) })).output
        return (0..<xs.count).map { Double(stableSigmoid(out[$0])) }
    }

    /// The grid, p_data, a histogram density of `samples` (bins of the grid's step), D, D* and V.
    public func snapshot(step: Int, gSamples: Int = 50_000) -> Snapshot {
        let lo = -5.0, hi = 5.0, bins = 100, w = (hi - lo) / Double(bins)
        let grid = (0..<bins).map { lo + (Double($0) + 0.5) * w }
        let g = G.forward(noise(gSamples)).output
        var counts = [Double](repeating: 0, count: bins)
        for i in 0..<g.count {
            let b = Int(((Double(g[i]) - lo) / w).rounded(.down))
            if (0..<bins).contains(b) { counts[b] += 1 }
        }
        let pG = counts.map { $0 / (Double(gSamples) * w) }
        let pData = grid.map(settings.data.density)
        let dStar = zip(pData, pG).map { $0 + $1 > 0 ? $0 / ($0 + $1) : 0.5 }
        let d = discriminator(grid)
        // V on fresh samples.
        let real = settings.data.sample(20_000, rng: &rng), fake = G.forward(noise(20_000)).output
        let dr = D.forward(real).output, df = D.forward(fake).output
        var v = 0.0
        for i in 0..<dr.count { v += log(max(Double(stableSigmoid(dr[i])), 1e-12)) / Double(dr.count) }
        for i in 0..<df.count { v += log(max(1 - Double(stableSigmoid(df[i])), 1e-12)) / Double(df.count) }
        var gap = 0.0
        for i in 0..<bins { gap += abs(d[i] - dStar[i]) * (pData[i] + pG[i]) / 2 * w }
        return Snapshot(step: step, grid: grid, pData: pData, pG: pG, d: d, dStar: dStar, value: v, meanGap: gap)
    }

    /// Trains for `settings.steps` alternating D and G steps, with `settings.snapshots` snapshots
    /// (the first before any step); `progress` sees each one.
    public func train(progress: (Snapshot) -> Void = { _ in }) -> [Snapshot] {
        var shots: [Snapshot] = []
        let every = max(1, settings.steps / max(settings.snapshots - 1, 1))
        func shoot(_ s: Int) { let sn = snapshot(step: s); shots.append(sn); progress(sn) }
        shoot(0)
        for s in 1...settings.steps {
            discriminatorStep()
            generatorStep()
            if s % every == 0 || s == settings.steps { shoot(s) }
        }
        return shots
    }

    /// A self-contained page: per snapshot, p_data, p_g, D and D*; and V against -log 4.
    public static func page(settings: Settings, snapshots: [Snapshot]) -> String {
        let esc = Report.esc
        var h = """
        <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>disco gan toy (\(settings.data.rawValue))</title>
        <style>body{font-family:system-ui,sans-serif;margin:16px 24px;color:#222}.grid{display:flex;flex-wrap:wrap;gap:12px}
        .card{border:1px solid #ddd;border-radius:6px;padding:6px;flex:1 1 420px;max-width:560px}.plot{width:100%;height:auto}</style></head><body>
        <h1>The minimax game on 1-D data (\(esc(settings.data.rawValue)))</h1>
        <p>Black: p_data. Blue: p_g, a histogram of G's samples. Orange: D(x). Dashed green: the optimal
        D*(x) = p_data / (p_data + p_g) for the current G. As p_g approaches p_data, D* flattens to 1/2 and
        V(D, G) = E log D(x) + E log(1 - D(G(z))) approaches -log 4 = \(String(format: "%.4f", -log(4.0))).</p>
        <div class="grid">
        """
        for s in snapshots {
            func curve(_ name: String, _ ys: [Double]) -> Report.Curve {
                Report.Curve(name: name, raw: zip(s.grid, ys).map { Report.Point(x: $0, y: $1) }, smooth: nil)
            }
            let top = max(1.05, (s.pData + s.pG).max() ?? 1)
            let spec = Report.PlotSpec(
                id: "toy-\(s.step)", title: "step \(s.step): V = \(String(format: "%.4f", s.value)), E|D - D*| = \(String(format: "%.3f", s.meanGap))",
                xLabel: "x", yLabel: "density / probability",
                series: [Report.PlotSeries(name: "p_data", color: "#333333", curve: curve("p_data", s.pData)),
                         Report.PlotSeries(name: "p_g", color: "#4e79a7", curve: curve("p_g", s.pG)),
                         Report.PlotSeries(name: "D(x)", color: "#f28e2b", curve: curve("D", s.d)),
                         Report.PlotSeries(name: "D*(x)", color: "#59a14f", dash: "5,4", curve: curve("D*", s.dStar))],
                xRange: (s.grid.first!, s.grid.last!), yRange: (0, top), reference: [(0.5, "1/2")], iterationAxis: false)
            h += "<div class=\"card\">" + Report.svg(spec) + "</div>\n"
        }
        let values = Report.Curve(name: "V", raw: snapshots.map { Report.Point(x: Double($0.step), y: $0.value) }, smooth: nil)
        let vSpec = Report.PlotSpec(id: "toy-value", title: "V(D, G) over training", yLabel: "V",
                                    series: [Report.PlotSeries(name: "V(D, G)", color: "#e15759", curve: values)],
                                    reference: [(-log(4.0), "-log 4")])
        h += "<div class=\"card\">" + Report.svg(vSpec) + "</div>\n</div></body></html>\n"
        return h
    }
}

extension ToyGAN {
    /// `disco gan toy`'s run: trains a `ToyGAN` of `settings` (`progress` sees each snapshot), then
    /// writes `out`/log.jsonl (per snapshot: step, V, E|D - D*| as "mean_gap") and `out`/toy.html.
    /// Returns the snapshots.
    @discardableResult
    public static func writeRun(settings: Settings, out: String, progress: (Snapshot) -> Void = { _ in }) throws -> [Snapshot] {
        try Checkpoint.createDirectory(out)
        var log = Data()
        let shots = ToyGAN(settings: settings).train { s in
            progress(s)
            let entry: [String: Any] = ["step": s.step, "value": s.value, "mean_gap": s.meanGap]
            if let line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) { log.append(line); log.append(0x0A) }
        }
        do {
            try Checkpoint.writeAtomically(log, to: out + "/log.jsonl")
            try Checkpoint.writeAtomically(Data(page(settings: settings, snapshots: shots).utf8), to: out + "/toy.html")
        } catch { throw DiscoError("--out \(out): \(error)") }
        return shots
    }
}
