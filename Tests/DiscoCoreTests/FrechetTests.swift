import XCTest
@testable import DiscoCore

/// The Fréchet distance (Frechet.swift) against scipy's sqrtm (Tests/Fixtures/frechet.safetensors,
/// made by make_frechet_fixture.py) and against closed forms; LAPACK's dsyev through the BLAS loader.
final class FrechetTests: XCTestCase {
    /// Each fixture case: disco's distance on the stored float32 features equals pytorch-fid's
    /// formula with scipy.linalg.sqrtm (float64), and so do its two parts.
    func testMatchesScipySqrtmFixture() throws {
        let f = try loadFixture("frechet.safetensors")
        for c in 0..<3 {
            let a = FeatureStatistics(features: try f.tensor("case\(c).a"))
            let b = FeatureStatistics(features: try f.tensor("case\(c).b"))
            let want = Double(try f.tensor("case\(c).fd")[0])
            let wantTrace = Double(try f.tensor("case\(c).trace_sqrt")[0])
            let got = try Frechet.distance(a, b)
            let trace = try Frechet.traceSqrtProduct(a.covariance, b.covariance, n: a.dimension)
            // The references are stored as float32 (6e-8 relative); both sides compute in float64.
            XCTAssertEqual(got, want, accuracy: 1e-6 * abs(want), "case \(c)")
            XCTAssertEqual(trace, wantTrace, accuracy: 1e-6 * abs(wantTrace), "case \(c)")
            XCTAssertEqual(try Frechet.distance(b, a), got, accuracy: 1e-9 * abs(want), "case \(c): symmetric")
            XCTAssertEqual(try Frechet.distance(a, a), 0, accuracy: 1e-9 * abs(want), "case \(c): zero to itself")
        }
    }

    /// Diagonal covariances commute, so d^2 = |mu_1 - mu_2|^2 + sum (sigma_1i - sigma_2i)^2; a
    /// random rotation Q applied to both (S -> Q S Q^T, mu -> Q mu) leaves it unchanged, and then
    /// the matrices are full.
    func testClosedFormForDiagonalCovariancesAndRotationInvariance() throws {
        var rng = Xoshiro256(seed: 5)
        let d = 10
        var mu1 = [Double](), mu2 = [Double](), s1 = [Double](repeating: 0, count: d * d), s2 = s1
        var want = 0.0
        for i in 0..<d {
            let m1 = Double(rng.nextNormal()), m2 = Double(rng.nextNormal())
            let sd1 = 0.2 + Double(rng.nextUniform()) * 2, sd2 = i == 3 ? 0 : 0.2 + Double(rng.nextUniform()) * 2
            mu1.append(m1); mu2.append(m2)
            s1[i * d + i] = sd1 * sd1; s2[i * d + i] = sd2 * sd2   // one zero variance: singular S_2
            want += (m1 - m2) * (m1 - m2) + (sd1 - sd2) * (sd1 - sd2)
        }
        let a = FeatureStatistics(count: 100, mean: mu1, covariance: s1)
        let b = FeatureStatistics(count: 100, mean: mu2, covariance: s2)
        XCTAssertEqual(try Frechet.distance(a, b), want, accuracy: 1e-10 * want)

        // Q from the eigenvectors of a random symmetric matrix (orthogonal by LAPACK's contract).
        var r = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0...i { let v = Double(rng.nextNormal()); r[i * d + j] = v; r[j * d + i] = v } }
        let q = try BLAS.shared.symmetricEigen(r, n: d).vectors
        func rotateMatrix(_ s: [Double]) -> [Double] {       // Q S Q^T
            var t = [Double](repeating: 0, count: d * d)
            for i in 0..<d { for j in 0..<d { var acc = 0.0; for k in 0..<d { for l in 0..<d { acc += q[i * d + k] * s[k * d + l] * q[j * d + l] } }; t[i * d + j] = acc } }
            return t
        }
        func rotateVector(_ m: [Double]) -> [Double] { (0..<d).map { i in (0..<d).reduce(0) { $0 + q[i * d + $1] * m[$1] } } }
        let ra = FeatureStatistics(count: 100, mean: rotateVector(mu1), covariance: rotateMatrix(s1))
        let rb = FeatureStatistics(count: 100, mean: rotateVector(mu2), covariance: rotateMatrix(s2))
        XCTAssertGreaterThan(abs(ra.covariance[1]), 1e-3, "the rotated covariance is not diagonal")
        XCTAssertEqual(try Frechet.distance(ra, rb), want, accuracy: 1e-9 * want)
    }

    /// dsyev's contract: A v_i = lambda_i v_i, ascending eigenvalues, orthonormal vectors; and the
    /// square root squares back to the matrix.
    func testSymmetricEigenAndSquareRoot() throws {
        var rng = Xoshiro256(seed: 9)
        let n = 7
        var g = [Double](repeating: 0, count: n * n)
        for i in 0..<(n * n) { g[i] = Double(rng.nextNormal()) }
        var s = [Double](repeating: 0, count: n * n)   // G G^T: symmetric positive definite
        for i in 0..<n { for j in 0..<n { for k in 0..<n { s[i * n + j] += g[i * n + k] * g[j * n + k] } } }
        let (values, vectors) = try BLAS.shared.symmetricEigen(s, n: n)
        XCTAssertEqual(values, values.sorted())
        for k in 0..<n {
            for i in 0..<n {
                var av = 0.0
                for j in 0..<n { av += s[i * n + j] * vectors[k * n + j] }
                XCTAssertEqual(av, values[k] * vectors[k * n + i], accuracy: 1e-10 * values.last!)
            }
            for l in 0..<n {
                let dotKL = (0..<n).reduce(0.0) { $0 + vectors[k * n + $1] * vectors[l * n + $1] }
                XCTAssertEqual(dotKL, k == l ? 1 : 0, accuracy: 1e-12)
            }
        }
        let root = try Frechet.symmetricSqrt(s, n: n)
        let square = Frechet.multiply(root, root, n)
        for i in 0..<(n * n) { XCTAssertEqual(square[i], s[i], accuracy: 1e-10 * values.last!) }
    }

    /// The statistics themselves: mean and unbiased covariance of a tiny set worked by hand.
    func testStatisticsByHand() {
        // rows (1, 2), (3, 2), (2, 5): mean (2, 3); deviations (-1,-1), (1,-1), (0,2)
        let s = FeatureStatistics(features: Tensor(shape: [3, 2], values: [1, 2, 3, 2, 2, 5]))
        XCTAssertEqual(s.mean, [2, 3])
        // sum of products / (3 - 1): xx = 2/2, xy = (1 - 1 + 0)/2, yy = 6/2
        XCTAssertEqual(s.covariance, [1, 0, 0, 3])
    }
}
