import XCTest
import _CKernels
@testable import DiscoCore

/// bfloat16 GEMMs (`GEMMPrecision.bf16`): the rounding against an arithmetic definition of it,
/// `BLAS.gemm` against a Double product of the rounded factors, and Winograd's three passes against
/// the naive Double convolution. They need an OpenBLAS with cblas_sbgemm (`make openblas-bf16`,
/// which `make test` runs first); without one they fail, naming what to do.
final class BF16Tests: XCTestCase {
    /// x rounded to 8 significant bits, to nearest with ties to even, by scaling in Double (exact:
    /// float32 values times powers of two), not by bit manipulation; subnormals to a signed zero
    /// (what VCVTNEPS2BF16 does), past bfloat16's largest to infinity.
    static func bf16(_ x: Float) -> Float {
        if x.isNaN || x.isInfinite || x == 0 { return x }
        if abs(x) < Float.leastNormalMagnitude { return x.sign == .minus ? -0.0 : 0.0 }
        let scale = Double(sign: .plus, exponent: 7 - Int(x.exponent), significand: 1)  // |x| scale in [128, 256)
        return Float((Double(x) * scale).rounded(.toNearestOrEven) / scale)
    }

    static func converted(_ xs: [Float]) -> [Float] {
        var bits = [UInt16](repeating: 0, count: xs.count)
        dc_to_bf16(&bits, xs, xs.count)
        return bits.map { Float(bitPattern: UInt32($0) << 16) }
    }

    /// Switches the GEMMs to bfloat16 for `body` (on any CPU: OpenBLAS has bfloat16 kernels for
    /// every kernel set, generic ones where the CPU lacks AVX512-BF16), then back to float32.
    func withBF16(_ body: () throws -> Void) throws {
        #if !arch(x86_64)
        throw XCTSkip("make openblas-bf16 builds for x86-64 only")
        #endif
        let blas = try BLAS.load()
        do { try blas.setGEMMPrecision(.bf16, requireHardware: false) } catch {
            XCTFail("\(error)\n(run `make openblas-bf16`, or `make test`, which builds it)")
            return
        }
        defer { try? blas.setGEMMPrecision(.float32) }
        XCTAssertEqual(BLAS.gemmPrecision, .bf16)
        try body()
    }

    func testRoundingMatchesTheArithmeticDefinition() {
        let one: Float = 1, u = Float(sign: .plus, exponent: -8, significand: 1)  // half of bfloat16's ulp at 1
        // Ties go to the even neighbour: 1 + u -> 1; 1 + 3u -> 1 + 4u. Just above a tie rounds up.
        let special: [Float] = [0, -0.0, one, -one, one + u, one + 3 * u, one + u + u / 64, one + u - u / 64,
                                .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                                .leastNormalMagnitude, .leastNonzeroMagnitude, -Float.leastNonzeroMagnitude,
                                Float(bitPattern: 0x7F7F_7FFF), Float(bitPattern: 0x7F7F_8000), 3.1415927, -65504]
        XCTAssertEqual(Self.bf16(one + u), one)
        XCTAssertEqual(Self.bf16(one + 3 * u), one + 4 * u)
        XCTAssertEqual(Self.bf16(.greatestFiniteMagnitude), .infinity)
        var rng = Xoshiro256(seed: 11)
        var xs = special
        for _ in 0..<20_000 {
            // Random bit patterns (every exponent), and exact ties: a bfloat16 value plus half its ulp.
            let bitsRandom = UInt32(truncatingIfNeeded: rng.next())
            let f = Float(bitPattern: bitsRandom)
            if !f.isNaN { xs.append(f) }
            let tie = Float(bitPattern: (bitsRandom & 0xFFFF_0000) | 0x8000)
            if tie.isFinite { xs.append(tie) }
        }
        let got = Self.converted(xs)
        var wrong = 0
        for (x, y) in zip(xs, got) where y.bitPattern != Self.bf16(x).bitPattern {
            if wrong < 5 { XCTFail("bf16(\(x) = 0x\(String(x.bitPattern, radix: 16))) = 0x\(String(y.bitPattern, radix: 16)), expected 0x\(String(Self.bf16(x).bitPattern, radix: 16))") }
            wrong += 1
        }
        XCTAssertEqual(wrong, 0, "of \(xs.count) values")
        let nan = Self.converted([.nan, -.nan, Float(bitPattern: 0x7F80_0001)])  // a signalling NaN too
        XCTAssertTrue(nan.allSatisfy { $0.isNaN && ($0.bitPattern & 0x0040_0000) != 0 }, "NaN stays a quiet NaN: \(nan.map { String($0.bitPattern, radix: 16) })")
    }

    /// C = alpha op(A) op(B) + beta C for the four transposes, with row strides wider than the
    /// rows, against the Double product of the bfloat16-rounded factors: float32 sums of exact
    /// products, so within k * 2^-23 of the sum of |products|. The float32 product is further off
    /// than that: the factors really were rounded.
    func testGEMMMultipliesTheRoundedFactors() throws {
        try withBF16 {
            let blas = BLAS.shared
            var rng = Xoshiro256(seed: 5)
            let m = 13, n = 11, k = 37, pad = 3
            for transA in [false, true] { for transB in [false, true] {
                let (ar, ac) = transA ? (k, m) : (m, k), (br, bc) = transB ? (n, k) : (k, n)
                let a = (0..<ar * (ac + pad)).map { _ in Float.random(in: -1...1, using: &rng) }
                let b = (0..<br * (bc + pad)).map { _ in Float.random(in: -1...1, using: &rng) }
                var c = [Float](repeating: 1, count: m * (n + pad))
                blas.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 2, a: a, lda: ac + pad,
                          b: b, ldb: bc + pad, beta: 0.5, c: &c, ldc: n + pad)
                var worstBound = 0.0, worstPlain = 0.0
                for i in 0..<m { for j in 0..<n {
                    var exact = 0.0, plain = 0.0, mag = 0.0
                    for p in 0..<k {
                        let av = transA ? a[p * (ac + pad) + i] : a[i * (ac + pad) + p]
                        let bv = transB ? b[j * (bc + pad) + p] : b[p * (bc + pad) + j]
                        exact += Double(Self.bf16(av)) * Double(Self.bf16(bv))
                        plain += Double(av) * Double(bv)
                        mag += abs(Double(Self.bf16(av)) * Double(Self.bf16(bv)))
                    }
                    let got = Double(c[i * (n + pad) + j])
                    let bound = 2 * Double(k) * 0x1p-23 * mag + 1e-6
                    worstBound = max(worstBound, abs(got - (2 * exact + 0.5)) / bound)
                    worstPlain = max(worstPlain, abs(got - (2 * plain + 0.5)) / bound)
                }
                for j in n..<(n + pad) { XCTAssertEqual(c[j], 1, "padding column \(j) written") }
                }
                XCTAssertLessThanOrEqual(worstBound, 1, "transA \(transA) transB \(transB): error / bound")
                XCTAssertGreaterThan(worstPlain, 2, "transA \(transA) transB \(transB): as close to the float32 product as float32 sums")
            } }
            // No products (k = 0): C = beta C, as sgemm does.
            var c: [Float] = [4, -2, 8, 1, 1, 1]
            let none: [Float] = [0]
            blas.gemm(m: 2, n: 2, k: 0, a: none, lda: 1, b: none, ldb: 2, beta: 0.5, c: &c, ldc: 3)
            XCTAssertEqual(c, [2, -1, 8, 0.5, 0.5, 1])
        }
    }

    /// Winograd's forward, input gradient and weight gradient with bfloat16 GEMMs, against the
    /// naive Double convolution. The transformed factors carry bfloat16's relative rounding (2^-9
    /// RMS-ish per factor), and the output transform's sums of several products spread it: F(2x2)
    /// measured 2.3-2.6 x 2^-9 RMS relative error (bound: 4x), F(4x4), whose transforms take
    /// differences of larger terms (coefficients up to 4 and 8), 7-9x (bound: 16x). float32's
    /// Winograd is over 1000x closer. Back in float32, the results are the same, bit for bit, as
    /// before the switch.
    func testWinogradPassesInBF16() throws {
        var rng = Xoshiro256(seed: 9)
        let geometries = [ConvGeometry(batch: 3, height: 8, width: 8, inChannels: 16, outChannels: 24, kernel: 4, stride: 2, padding: 1),
                          ConvGeometry(batch: 2, height: 16, width: 12, inChannels: 9, outChannels: 32, kernel: 4, stride: 2, padding: 1)]
        for g in geometries {
            let x = randn(g.inputShape, &rng), w = randn(g.weightShape, &rng), dy = randn(g.outputShape, &rng)
            let ref = Conv.naiveForward(x: x, w: w, g: g)
            let (refDx, refDw) = Conv.naiveBackward(x: x, w: w, dy: dy, g: g)
            let saved = Winograd.split
            defer { Winograd.split = saved }
            // Both ways of sharing a pass (the point split keeps U's bfloat16 copy in the shared
            // buffer too), with the pass's own weights and with prepared ones (inference: each GEMM
            // rounds U itself).
            for f in [Winograd(tile: 2), Winograd(tile: 4)] { for split in [Winograd.Split.images, .points] { for prepared in [false, true] {
                Winograd.split = split
                let pw = prepared ? f.prepareWeights(w) : nil
                func passes() -> (Tensor, Tensor, Tensor) {
                    let y = Tensor(filling: 1e6, shape: g.outputShape), dx = Tensor(filling: 1e6, shape: g.inputShape)
                    let dw = Tensor(filling: 0, shape: g.weightShape)
                    f.forward(y: y, x: x, w: prepared ? nil : w, prepared: pw, g: g)
                    f.backwardInput(dx: dx, dy: dy, w: prepared ? nil : w, prepared: pw, g: g)
                    f.backwardWeight(dw: dw, x: x, dy: dy, g: g)
                    return (y, dx, dw)
                }
                let before = passes()
                var bf: (Tensor, Tensor, Tensor)?
                try withBF16 { bf = passes() }
                guard let (y, dx, dw) = bf else { return }
                let after = passes()
                for (name, got, want, f32) in [("forward", y, ref, before.0), ("input gradient", dx, refDx, before.1),
                                               ("weight gradient", dw, refDw, before.2)] {
                    let e = rmsRelative(got, want), e32 = rmsRelative(f32, want)
                    XCTAssertLessThanOrEqual(e, (f.tile == 2 ? 4 : 16) * 0x1p-9, "\(f) \(split) prepared \(prepared) \(name) \(g): RMS error / RMS value")
                    XCTAssertGreaterThanOrEqual(e, 0x1p-9 / 16, "\(f) \(name) \(g): no bfloat16 rounding seen (float32: \(e32))")
                    XCTAssertLessThan(e32 * 30, e, "\(f) \(name) \(g): float32 \(e32), bfloat16 \(e)")
                }
                XCTAssertEqual(maxAbsDifference(after.0, before.0), 0, "float32 forward again")
                XCTAssertEqual(maxAbsDifference(after.1, before.1), 0, "float32 input gradient again")
                XCTAssertEqual(maxAbsDifference(after.2, before.2), 0, "float32 weight gradient again")
            } } }
        }
    }

    func rmsRelative(_ a: Tensor, _ b: Tensor) -> Double {
        var d = 0.0, s = 0.0
        for i in 0..<a.count { d += Double(a[i] - b[i]) * Double(a[i] - b[i]); s += Double(b[i]) * Double(b[i]) }
        return (d / max(s, 1e-30)).squareRoot()
    }

    /// On a CPU without AVX512-BF16 the switch is refused unless asked for anyway (bfloat16 would
    /// be slower there), and the GEMMs stay float32.
    func testRefusedWithoutTheInstructions() throws {
        let blas = try BLAS.load()
        guard !blas.cpu.avx512bf16 else { return }  // this CPU has them: nothing to refuse
        XCTAssertThrowsError(try blas.setGEMMPrecision(.bf16)) { XCTAssertTrue("\($0)".contains("AVX512-BF16"), "\($0)") }
        XCTAssertEqual(BLAS.gemmPrecision, .float32)
    }
}
