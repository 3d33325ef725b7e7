import XCTest
import Foundation
@testable import DiscoGAN
import DiscoCore

/// The 1-D minimax game against its closed forms.
final class ToyGANTests: XCTestCase {
    func testDataDensitiesAndSamples() {
        var rng = Xoshiro256(seed: 3)
        for data in ToyData.allCases {
            // The density integrates to 1 (midpoint rule on [-8, 8]).
            let mass = stride(from: -8.0, to: 8.0, by: 0.01).reduce(0) { $0 + data.density($1 + 0.005) * 0.01 }
            XCTAssertEqual(mass, 1, accuracy: 1e-6, "\(data)")
            // Sample mean and variance: 2 and 0.25 (Gaussian); 0 and 4 + 0.25 (mixture).
            let s = data.sample(100_000, rng: &rng).array.map(Double.init)
            let mean = s.reduce(0, +) / Double(s.count)
            let variance = s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(s.count)
            let want: (Double, Double) = data == .gaussian ? (2, 0.25) : (0, 4.25)
            XCTAssertEqual(mean, want.0, accuracy: 0.02, "\(data) mean")
            XCTAssertEqual(variance, want.1, accuracy: 0.03 * want.1, "\(data) variance")
        }
    }

    /// D trained against a fixed p_g = N(0, 1) approaches D*(x) = p_data / (p_data + p_g):
    /// within 0.1 wherever p_data + p_g is above 5% of its peak.
    func testDiscriminatorApproachesTheClosedFormOptimum() throws {
        _ = try BLAS.load()
        var settings = ToyGAN.Settings()
        settings.data = .gaussian; settings.learningRate = 2e-3
        let toy = ToyGAN(settings: settings)
        var rng = Xoshiro256(seed: 9)
        for _ in 0..<2500 {
            toy.discriminatorStep(real: settings.data.sample(256, rng: &rng), fake: Tensor.normal([256, 1], rng: &rng))
        }
        let xs = stride(from: -3.0, through: 4.0, by: 0.1).map { $0 }
        let d = toy.discriminator(xs)
        func pG(_ x: Double) -> Double { exp(-0.5 * x * x) / (2 * Double.pi).squareRoot() }
        let mass = xs.map { settings.data.density($0) + pG($0) }, peak = mass.max()!
        var worst = 0.0
        for (i, x) in xs.enumerated() where mass[i] > 0.05 * peak {
            let star = settings.data.density(x) / mass[i]
            worst = max(worst, abs(d[i] - star))
        }
        XCTAssertLessThan(worst, 0.1, "max |D - D*| = \(worst)")
    }

    /// Training the game moves V(D, G) towards -log 4 and p_g onto p_data (a short run: the gap
    /// to D* and |V + log 4| both shrink from the first snapshot to the last).
    func testTrainingApproachesTheEquilibrium() throws {
        _ = try BLAS.load()
        var settings = ToyGAN.Settings()
        settings.steps = 1500; settings.snapshots = 3
        let shots = ToyGAN(settings: settings).train()
        XCTAssertEqual(shots.map(\.step), [0, 750, 1500])
        let first = shots.first!, last = shots.last!
        // Mean of p_g near p_data's mean 2 at the end (it starts near G's initial outputs).
        let w = last.grid[1] - last.grid[0]
        let meanG = zip(last.grid, last.pG).reduce(0) { $0 + $1.0 * $1.1 * w }
        XCTAssertEqual(meanG, 2, accuracy: 0.3, "mean of p_g")
        XCTAssertLessThan(abs(last.value + log(4.0)), abs(first.value + log(4.0)) + 1e-9)
        XCTAssertLessThan(abs(last.value + log(4.0)), 0.15, "V = \(last.value)")
        let page = ToyGAN.page(settings: settings, snapshots: shots)
        XCTAssertEqual(page.components(separatedBy: "<svg").count - 1, 4)
    }
}
