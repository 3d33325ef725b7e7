#if canImport(Glibc)
import Glibc
#endif
import DiscoCore

/// Image-similarity scores for `disco eval`. Images are HWC (or one image of an NHWC batch),
/// values in [0, 1].
public enum Metrics {
    public struct Scores: Equatable {
        public var mse: Double, l1: Double, psnr: Double, ssim: Double
    }

    /// MSE, L1, PSNR (dB, peak 1; capped at 100 for identical images) and SSIM of one image pair.
    public static func scores(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, height: Int, width: Int, channels: Int) -> Scores {
        let n = height * width * channels
        var se: Double = 0, ae: Double = 0
        for i in 0..<n { let d = Double(x[i] - y[i]); se += d * d; ae += abs(d) }
        let mse = se / Double(n)
        let psnr = mse > 0 ? min(100, 10 * log10(1 / mse)) : 100
        return Scores(mse: mse, l1: ae / Double(n), psnr: psnr,
                      ssim: ssim(x, y, height: height, width: width, channels: channels))
    }

    /// SSIM (Wang et al. 2004) with an 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03,
    /// data range 1, computed per channel over the valid window positions and averaged. Images
    /// smaller than the window use a window of their size.
    public static func ssim(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, height: Int, width: Int, channels: Int) -> Double {
        let size = min(11, height, width)
        let sigma = 1.5, c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
        var g = [Double](repeating: 0, count: size)
        for i in 0..<size { let d = Double(i) - Double(size - 1) / 2; g[i] = exp(-d * d / (2 * sigma * sigma)) }
        let gs = g.reduce(0, +); g = g.map { $0 / gs }
        var total: Double = 0, count = 0
        for c in 0..<channels {
            for oy in 0...(height - size) {
                for ox in 0...(width - size) {
                    var mx = 0.0, my = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0
                    for ky in 0..<size {
                        for kx in 0..<size {
                            let w = g[ky] * g[kx]
                            let idx = ((oy + ky) * width + (ox + kx)) * channels + c
                            let a = Double(x[idx]), b = Double(y[idx])
                            mx += w * a; my += w * b; sxx += w * a * a; syy += w * b * b; sxy += w * a * b
                        }
                    }
                    let vx = sxx - mx * mx, vy = syy - my * my, cov = sxy - mx * my
                    total += ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
                    count += 1
                }
            }
        }
        return total / Double(count)
    }

    /// Mean and (population) standard deviation of each score over many pairs.
    public static func summary(_ all: [Scores]) -> [String: (mean: Double, std: Double)] {
        func ms(_ v: [Double]) -> (Double, Double) {
            let m = v.reduce(0, +) / Double(max(v.count, 1))
            let s = (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(v.count, 1))).squareRoot()
            return (m, s)
        }
        return ["mse": ms(all.map(\.mse)), "l1": ms(all.map(\.l1)), "psnr": ms(all.map(\.psnr)), "ssim": ms(all.map(\.ssim))]
    }
}
