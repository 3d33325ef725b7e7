// The direct image-channel convolution kernels (see direct_conv.h): AVX2 + FMA intrinsics,
// compiled for those instructions by function attribute whatever the target flags, so that a
// DISCO_PORTABLE=1 build has them too; DiscoCore calls them only when the CPU has AVX2 and FMA.
//
// Legend: C = image channels (1...3), K = channels on the other side (a multiple of 16),
// Ho x Wo = the convolution's output, 2Ho x 2Wo its input; PW = 2 Wo + 2 (padded width).
// Layouts: images NHWC without N; weights wt [16 C][K] = [ky][kx][c][K] (K contiguous).
#include "direct_conv.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define DC_AVX2 __attribute__((target("avx2,fma")))
#define DC_INLINE static inline __attribute__((always_inline))

// y [Ho * Wo][K] from pad [2Ho + 2][PW][C]: blocks of 6 pixels (row-major, the last block
// shifted back to overlap the one before, small images repeating their last pixel) x 16
// channels in 12 accumulators; each tap loads 2 weight vectors and broadcasts 6 x values.
DC_AVX2 DC_INLINE void forward(float *y, const float *pad, const float *wt, long Ho, long Wo, long C, long K) {
    const long PW = 2 * Wo + 2, M = Ho * Wo, rowTaps = 4 * C;
    for (long i = 0; i < M; i += 6) {
        const long s = i < M - 6 ? i : (M > 6 ? M - 6 : 0);
        long q[6];
        const float *p[6];
        for (int j = 0; j < 6; j++) {
            q[j] = s + j < M ? s + j : M - 1;
            p[j] = pad + 2 * ((q[j] / Wo) * PW + q[j] % Wo) * C;
        }
        for (long kb = 0; kb < K; kb += 16) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;  // channels kb ..< kb + 8
            __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;                   // kb + 8 ..< kb + 16
            for (long ky = 0; ky < 4; ky++) {
                const long r = ky * PW * C;
                const float *p0 = p[0] + r, *p1 = p[1] + r, *p2 = p[2] + r, *p3 = p[3] + r, *p4 = p[4] + r, *p5 = p[5] + r;
                const float *w = wt + ky * rowTaps * K + kb;
                for (long t = 0; t < rowTaps; t++, w += K) {
                    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
                    __m256 v;
                    v = _mm256_broadcast_ss(p0 + t); a0 = _mm256_fmadd_ps(v, w0, a0); b0 = _mm256_fmadd_ps(v, w1, b0);
                    v = _mm256_broadcast_ss(p1 + t); a1 = _mm256_fmadd_ps(v, w0, a1); b1 = _mm256_fmadd_ps(v, w1, b1);
                    v = _mm256_broadcast_ss(p2 + t); a2 = _mm256_fmadd_ps(v, w0, a2); b2 = _mm256_fmadd_ps(v, w1, b2);
                    v = _mm256_broadcast_ss(p3 + t); a3 = _mm256_fmadd_ps(v, w0, a3); b3 = _mm256_fmadd_ps(v, w1, b3);
                    v = _mm256_broadcast_ss(p4 + t); a4 = _mm256_fmadd_ps(v, w0, a4); b4 = _mm256_fmadd_ps(v, w1, b4);
                    v = _mm256_broadcast_ss(p5 + t); a5 = _mm256_fmadd_ps(v, w0, a5); b5 = _mm256_fmadd_ps(v, w1, b5);
                }
            }
            float *o;
            o = y + q[0] * K + kb; _mm256_storeu_ps(o, a0); _mm256_storeu_ps(o + 8, b0);
            o = y + q[1] * K + kb; _mm256_storeu_ps(o, a1); _mm256_storeu_ps(o + 8, b1);
            o = y + q[2] * K + kb; _mm256_storeu_ps(o, a2); _mm256_storeu_ps(o + 8, b2);
            o = y + q[3] * K + kb; _mm256_storeu_ps(o, a3); _mm256_storeu_ps(o + 8, b3);
            o = y + q[4] * K + kb; _mm256_storeu_ps(o, a4); _mm256_storeu_ps(o + 8, b4);
            o = y + q[5] * K + kb; _mm256_storeu_ps(o, a5); _mm256_storeu_ps(o + 8, b5);
        }
    }
}

DC_AVX2 void dc_direct_forward(float *y, const float *pad, const float *wt, long Ho, long Wo, long C, long K) {
    if (C == 3) forward(y, pad, wt, Ho, Wo, 3, K);  // the RGB layers, with the tap loop's length known
    else forward(y, pad, wt, Ho, Wo, C, K);
}

// The four sums of a, b, c, d.
DC_AVX2 DC_INLINE __m128 sum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// y [2H][2W][C] from x [H][W][K] (x = dy of the convolution, H = Ho, W = Wo). Output pixel
// (Y, X) takes input rows iy with ky = Y + 1 - 2 iy in 0..<4 (two of them), and the same for
// columns: four input pixels of K channels each. Pixels X, X + 2, X + 4, X + 6 (one parity,
// 4 consecutive u = X / 2; the last group of a row shifted back to overlap the one before,
// narrow rows repeating their last pixel) share their taps: 4 C accumulators over K, 4 input
// loads and C weight loads per 4 C FMAs, summed across lanes at the end.
DC_AVX2 DC_INLINE void transposed(float *y, const float *x, const float *wt, const float *bias,
                                  const float *zero, long H, long W, long C, long K) {
    const long Wy = 2 * W;
    for (long Y = 0; Y < 2 * H; Y++) {
        for (long parity = 0; parity < 2; parity++) {
            for (long g = 0; g < W; g += 4) {
                const long s = g < W - 4 ? g : (W > 4 ? W - 4 : 0);
                long u[4];
                for (int i = 0; i < 4; i++) u[i] = s + i < W ? s + i : W - 1;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;  // channel 0 of pixels u0..u3
                __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                   // channel 1
                __m256 c0 = a0, c1 = a0, c2 = a0, c3 = a0;                   // channel 2
                for (long ky = (Y + 1) % 2; ky < 4; ky += 2) {
                    const long iy = (Y + 1 - ky) / 2;
                    if (iy < 0 || iy >= H) continue;
                    for (long kx = (parity + 1) % 2; kx < 4; kx += 2) {
                        const long d = (parity + 1 - kx) / 2;  // ix = u + d
                        const float *src[4];
                        for (int i = 0; i < 4; i++) {
                            const long ix = u[i] + d;
                            src[i] = ix >= 0 && ix < W ? x + (iy * W + ix) * K : zero;
                        }
                        const float *x0 = src[0], *x1 = src[1], *x2 = src[2], *x3 = src[3];
                        const float *w = wt + (ky * 4 + kx) * C * K;
                        for (long j = 0; j < K; j += 8) {
                            // 12 accumulators, C weights and one input vector: 16 registers.
                            const __m256 w0 = _mm256_loadu_ps(w + j);
                            const __m256 w1 = C > 1 ? _mm256_loadu_ps(w + K + j) : w0;
                            const __m256 w2 = C > 2 ? _mm256_loadu_ps(w + 2 * K + j) : w0;
                            __m256 v;
                            v = _mm256_loadu_ps(x0 + j); a0 = _mm256_fmadd_ps(v, w0, a0);
                            if (C > 1) b0 = _mm256_fmadd_ps(v, w1, b0);
                            if (C > 2) c0 = _mm256_fmadd_ps(v, w2, c0);
                            v = _mm256_loadu_ps(x1 + j); a1 = _mm256_fmadd_ps(v, w0, a1);
                            if (C > 1) b1 = _mm256_fmadd_ps(v, w1, b1);
                            if (C > 2) c1 = _mm256_fmadd_ps(v, w2, c1);
                            v = _mm256_loadu_ps(x2 + j); a2 = _mm256_fmadd_ps(v, w0, a2);
                            if (C > 1) b2 = _mm256_fmadd_ps(v, w1, b2);
                            if (C > 2) c2 = _mm256_fmadd_ps(v, w2, c2);
                            v = _mm256_loadu_ps(x3 + j); a3 = _mm256_fmadd_ps(v, w0, a3);
                            if (C > 1) b3 = _mm256_fmadd_ps(v, w1, b3);
                            if (C > 2) c3 = _mm256_fmadd_ps(v, w2, c3);
                        }
                    }
                }
                float sums[3][4];
                _mm_storeu_ps(sums[0], sum4(a0, a1, a2, a3));
                _mm_storeu_ps(sums[1], sum4(b0, b1, b2, b3));
                _mm_storeu_ps(sums[2], sum4(c0, c1, c2, c3));
                for (int i = 0; i < 4; i++) {
                    float *out = y + (Y * Wy + parity + 2 * u[i]) * C;
                    for (long c = 0; c < C; c++) out[c] = bias ? sums[c][i] + bias[c] : sums[c][i];
                }
            }
        }
    }
}

DC_AVX2 void dc_direct_transposed(float *y, const float *x, const float *wt, const float *bias,
                                  const float *zero, long H, long W, long C, long K) {
    switch (C) {  // the loop bodies with C known
    case 1: transposed(y, x, wt, bias, zero, H, W, 1, K); break;
    case 2: transposed(y, x, wt, bias, zero, H, W, 2, K); break;
    default: transposed(y, x, wt, bias, zero, H, W, 3, K); break;
    }
}

// acc [16 C][K] += the weight gradient of one image: pad [2Ho + 2][PW][C], dy [Ho * Wo][K].
// Taps 6 at a time (the last group shifted back to overlap the one before, adding only its new
// taps) x 16 channels: 12 accumulators walk all pixels, 6 broadcast x loads and 2 dy loads per
// 12 FMAs.
DC_AVX2 DC_INLINE void weight_grad(float *acc, const float *pad, const float *dy, long Ho, long Wo, long C, long K) {
    const long PW = 2 * Wo + 2, taps = 16 * C;
    long off[48];  // tap (ky, kx, c) -> its offset in pad from the pixel's top-left tap
    for (long t = 0; t < 16; t++)
        for (long c = 0; c < C; c++) off[t * C + c] = ((t / 4) * PW + t % 4) * C + c;
    for (long tg = 0; tg < taps; tg += 6) {
        const long s = tg < taps - 6 ? tg : taps - 6;  // taps s ..< s + 6; those below tg are the group before's
        const long o0 = off[s], o1 = off[s + 1], o2 = off[s + 2], o3 = off[s + 3], o4 = off[s + 4], o5 = off[s + 5];
        for (long kb = 0; kb < K; kb += 16) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;  // channels kb ..< kb + 8
            __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;                   // kb + 8 ..< kb + 16
            for (long oy = 0; oy < Ho; oy++) {
                const float *p = pad + 2 * oy * PW * C, *d = dy + oy * Wo * K + kb;
                for (long ox = 0; ox < Wo; ox++, p += 2 * C, d += K) {
                    const __m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
                    __m256 v;
                    v = _mm256_broadcast_ss(p + o0); a0 = _mm256_fmadd_ps(v, d0, a0); b0 = _mm256_fmadd_ps(v, d1, b0);
                    v = _mm256_broadcast_ss(p + o1); a1 = _mm256_fmadd_ps(v, d0, a1); b1 = _mm256_fmadd_ps(v, d1, b1);
                    v = _mm256_broadcast_ss(p + o2); a2 = _mm256_fmadd_ps(v, d0, a2); b2 = _mm256_fmadd_ps(v, d1, b2);
                    v = _mm256_broadcast_ss(p + o3); a3 = _mm256_fmadd_ps(v, d0, a3); b3 = _mm256_fmadd_ps(v, d1, b3);
                    v = _mm256_broadcast_ss(p + o4); a4 = _mm256_fmadd_ps(v, d0, a4); b4 = _mm256_fmadd_ps(v, d1, b4);
                    v = _mm256_broadcast_ss(p + o5); a5 = _mm256_fmadd_ps(v, d0, a5); b5 = _mm256_fmadd_ps(v, d1, b5);
                }
            }
            const __m256 as[6] = {a0, a1, a2, a3, a4, a5}, bs[6] = {b0, b1, b2, b3, b4, b5};
            for (long j = tg - s; j < 6; j++) {
                float *q = acc + (s + j) * K + kb;
                _mm256_storeu_ps(q, _mm256_add_ps(_mm256_loadu_ps(q), as[j]));
                _mm256_storeu_ps(q + 8, _mm256_add_ps(_mm256_loadu_ps(q + 8), bs[j]));
            }
        }
    }
}

DC_AVX2 void dc_direct_weight_grad(float *acc, const float *pad, const float *dy, long Ho, long Wo, long C, long K) {
    if (C == 3) weight_grad(acc, pad, dy, Ho, Wo, 3, K);
    else weight_grad(acc, pad, dy, Ho, Wo, C, K);
}

#endif
