/// The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian:
///
///     d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))
///
/// (Dowson and Landau 1982; Heusel et al. 2017 use it on Inception-v3 pool features and call it
/// FID). Here it is a general routine: disco applies it to the penultimate features of its own
/// Fashion-MNIST classifier, which is *not* Inception FID, and its values are not comparable with
/// published FIDs.
///
/// Everything is computed in Float64. The trace term uses symmetric eigendecompositions only
/// (LAPACK dsyev): with A = S_1^(1/2) (from S_1's eigendecomposition, negative rounding-level
/// eigenvalues clamped to 0), S_1 S_2 = A (A S_2) has the eigenvalues of (A S_2) A = A S_2 A, which
/// is symmetric positive semidefinite, so tr((S_1 S_2)^(1/2)) = sum of sqrt(max(lambda_i(A S_2 A), 0)).
/// This is exact for singular covariances too (fewer samples than dimensions), where scipy's
/// sqrtm of the non-symmetric S_1 S_2 needs pytorch-fid's diagonal offset.
public struct FeatureStatistics: Sendable, Equatable {
    /// Number of feature vectors summarised.
    public let count: Int
    /// Dimension D.
    public let dimension: Int
    /// Mean [D].
    public let mean: [Double]
    /// Covariance [D, D] row-major, unbiased (divided by count - 1, as numpy.cov and pytorch-fid).
    public let covariance: [Double]

    public init(count: Int, mean: [Double], covariance: [Double]) {
        precondition(!mean.isEmpty && covariance.count == mean.count * mean.count,
                     "FeatureStatistics: mean [\(mean.count)] and covariance of \(covariance.count) values")
        self.count = count; dimension = mean.count; self.mean = mean; self.covariance = covariance
    }

    /// Mean and unbiased covariance of the rows of `features` [N, D] (N >= 2), accumulated in
    /// Float64 about the mean.
    public init(features: Tensor) {
        precondition(features.shape.count == 2 && features.shape[0] >= 2,
                     "FeatureStatistics: features \(features.shape), need [N >= 2, D]")
        let n = features.shape[0], d = features.shape[1]
        var mu = [Double](repeating: 0, count: d)
        for r in 0..<n { let row = features.data + r * d; for j in 0..<d { mu[j] += Double(row[j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        var cov = [Double](repeating: 0, count: d * d), centred = [Double](repeating: 0, count: d)
        for r in 0..<n {
            let row = features.data + r * d
            for j in 0..<d { centred[j] = Double(row[j]) - mu[j] }
            for i in 0..<d {
                let ci = centred[i]
                if ci == 0 { continue }
                for j in 0...i { cov[i * d + j] += ci * centred[j] }
            }
        }
        for i in 0..<d { for j in 0...i {
            let v = cov[i * d + j] / Double(n - 1)
            cov[i * d + j] = v; cov[j * d + i] = v
        } }
        self.init(count: n, mean: mu, covariance: cov)
    }
}

public enum Frechet {
    /// d^2 between two feature sets' Gaussians (the quantity FID reports; no square root taken).
    /// Throws if LAPACK is missing or the covariances hold non-finite values.
    public static func distance(_ a: FeatureStatistics, _ b: FeatureStatistics, blas: BLAS = .shared) throws -> Double {
        precondition(a.dimension == b.dimension, "Frechet.distance: dimensions \(a.dimension) and \(b.dimension)")
        let d = a.dimension
        var meanTerm = 0.0, traceA = 0.0, traceB = 0.0
        for j in 0..<d {
            let diff = a.mean[j] - b.mean[j]
            meanTerm += diff * diff
            traceA += a.covariance[j * d + j]; traceB += b.covariance[j * d + j]
        }
        return meanTerm + traceA + traceB - 2 * (try traceSqrtProduct(a.covariance, b.covariance, n: d, blas: blas))
    }

    /// tr((S_1 S_2)^(1/2)) for symmetric positive semidefinite S_1, S_2 (n x n, row-major).
    public static func traceSqrtProduct(_ s1: [Double], _ s2: [Double], n: Int, blas: BLAS = .shared) throws -> Double {
        let rootS1 = try symmetricSqrt(s1, n: n, blas: blas)
        let m = multiply(multiply(rootS1, s2, n), rootS1, n)
        // Symmetrise away the rounding of the two products before the symmetric solver.
        var sym = m
        for i in 0..<n { for j in 0..<i { let v = 0.5 * (m[i * n + j] + m[j * n + i]); sym[i * n + j] = v; sym[j * n + i] = v } }
        return try blas.symmetricEigen(sym, n: n).values.reduce(0) { $0 + max($1, 0).squareRoot() }
    }

    /// The symmetric positive semidefinite square root V diag(sqrt(max(lambda, 0))) V^T.
    public static func symmetricSqrt(_ s: [Double], n: Int, blas: BLAS = .shared) throws -> [Double] {
        let (values, vectors) = try blas.symmetricEigen(s, n: n)
        var out = [Double](repeating: 0, count: n * n)
        for k in 0..<n {
            let r = max(values[k], 0).squareRoot()
            if r == 0 { continue }
            let v = k * n  // row k of `vectors` is eigenvector k
            for i in 0..<n {
                let vi = r * vectors[v + i]
                for j in 0..<n { out[i * n + j] += vi * vectors[v + j] }
            }
        }
        return out
    }

    /// n x n row-major product, in Float64.
    static func multiply(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in 0..<n {
            let aik = a[i * n + k]
            if aik == 0 { continue }
            for j in 0..<n { c[i * n + j] += aik * b[k * n + j] }
        } }
        return c
    }
}
