import XCTest
@testable import DiscoGAN
import DiscoCore

final class MetricsTests: XCTestCase {
    func scores(_ a: [Float], _ b: [Float], h: Int, w: Int, c: Int) -> Metrics.Scores {
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            Metrics.scores(pa.baseAddress!, pb.baseAddress!, height: h, width: w, channels: c)
        } }
    }

    func testIdenticalImagesScorePerfectly() {
        var rng = Xoshiro256(seed: 1)
        let a = (0..<(16 * 16 * 3)).map { _ in rng.nextUniform() }
        let s = scores(a, a, h: 16, w: 16, c: 3)
        XCTAssertEqual(s.mse, 0); XCTAssertEqual(s.l1, 0); XCTAssertEqual(s.psnr, 100)
        XCTAssertEqual(s.ssim, 1, accuracy: 1e-12)
    }

    /// Constant images: zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1); PSNR = 10 log10(1 / (a-b)^2).
    func testConstantImagesMatchClosedForm() {
        let a: Float = 0.25, b: Float = 0.75
        let s = scores([Float](repeating: a, count: 144), [Float](repeating: b, count: 144), h: 12, w: 12, c: 1)
        let c1 = 1e-4, da = Double(a), db = Double(b)
        XCTAssertEqual(s.ssim, (2 * da * db + c1) / (da * da + db * db + c1), accuracy: 1e-9)
        XCTAssertEqual(s.mse, 0.25, accuracy: 1e-12)
        XCTAssertEqual(s.l1, 0.5, accuracy: 1e-12)
        XCTAssertEqual(s.psnr, 10 * log10(1 / 0.25), accuracy: 1e-9)
    }

    /// An image against its negative (x vs 1 - x) has covariance -var: SSIM well below zero's neighbourhood.
    func testNegativeImageHasNegativeStructure() {
        var rng = Xoshiro256(seed: 2)
        let a = (0..<(20 * 20)).map { _ in rng.nextUniform() }
        let s = scores(a, a.map { 1 - $0 }, h: 20, w: 20, c: 1)
        XCTAssertLessThan(s.ssim, -0.5)
    }

    /// Textured pairs (noisy, blurred, unrelated, contrast-changed, shifted; colour and grey, one
    /// image exactly the window's size) against scikit-image's structural_similarity, an
    /// independent implementation (Tests/Fixtures/make_ssim_fixture.py). The reference is stored
    /// as float32, so 1e-6 is its resolution, not a loosening.
    func testSSIMMatchesScikitImageOnTexturedImages() throws {
        let f = try fixture("ssim.safetensors")
        var pairs = 0
        while f.entries["pair\(pairs).ssim"] != nil {
            let x = try f.entry("pair\(pairs).x"), y = try f.entry("pair\(pairs).y")
            XCTAssertEqual(x.shape, y.shape)
            let want = Double(try f.entry("pair\(pairs).ssim").floats[0])
            let s = scores(x.floats, y.floats, h: x.shape[0], w: x.shape[1], c: x.shape[2])
            XCTAssertEqual(s.ssim, want, accuracy: 1e-6, "pair\(pairs) \(x.shape)")
            pairs += 1
        }
        XCTAssertEqual(pairs, 6, "ssim.safetensors: expected 6 pairs")
    }

    func testSummaryMeanAndStd() {
        let all = [Metrics.Scores(mse: 1, l1: 2, psnr: 3, ssim: 0.5), Metrics.Scores(mse: 3, l1: 2, psnr: 5, ssim: 0.7)]
        let s = Metrics.summary(all)
        XCTAssertEqual(s["mse"]!.mean, 2); XCTAssertEqual(s["mse"]!.std, 1)
        XCTAssertEqual(s["l1"]!.std, 0); XCTAssertEqual(s["ssim"]!.mean, 0.6, accuracy: 1e-12)
    }
}
