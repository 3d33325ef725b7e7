// The direct image-channel convolution kernels (see direct_conv.h): AVX2 + FMA intrinsics,
// compiled for those instructions by function attribute whatever the target flags, so that a
// DISCO_PORTABLE=1 build has them too; DiscoCore calls them only when the CPU has AVX2 and FMA.
// The attribute also names prfchw for the forward's prefetch-for-write: a hint, executed as a
// no-op by a CPU without it.
//
// Legend: C = image channels (1...3), K = channels on the other side (a multiple of 16),
// Ho x Wo = the convolution's output, 2Ho x 2Wo its input; PW = 2 Wo + 2 (padded width).
// Layouts: images NHWC without N; weights wt [16 C][K] = [ky][kx][c][K] (K contiguous).
#include "direct_conv.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#define DC_AVX2 __attribute__((target("avx2,fma,prfchw")))
#define DC_INLINE static inline __attribute__((always_inline))

// The step of a 6 x 16 register block: for j < 6, a[j] += x_j w0 and b[j] += x_j w1, x_j the
// float at p[j] + o broadcast (one tap of 6 pixels, or one pixel of 6 taps).
DC_AVX2 DC_INLINE void step6x16(__m256 a[6], __m256 b[6], const float *const p[6], long o, __m256 w0, __m256 w1) {
    for (int j = 0; j < 6; j++) {
        const __m256 v = _mm256_broadcast_ss(p[j] + o);
        a[j] = _mm256_fmadd_ps(v, w0, a[j]);
        b[j] = _mm256_fmadd_ps(v, w1, b[j]);
    }
}

// y [Ho * Wo][K] from pad [2Ho + 2][PW][C]: blocks of 6 pixels (row-major, the last block
// shifted back to overlap the one before, small images repeating their last pixel) x 16
// channels in 12 accumulators; each tap loads 2 weight vectors and broadcasts 6 x values.
// Each sum v is stored as max(v, slope v) (slope 1: v itself). stream: non-temporal stores.
DC_AVX2 DC_INLINE void forward(float *y, const float *pad, const float *wt, long Ho, long Wo, long C, long K,
                               float slope, int stream) {
    const long PW = 2 * Wo + 2, M = Ho * Wo, rowTaps = 4 * C;
    const __m256 sv = _mm256_set1_ps(slope);
    for (long i = 0; i < M; i += 6) {
        const long s = i < M - 6 ? i : (M > 6 ? M - 6 : 0);
        long q[6];
        const float *p[6];  // the pixels' top-left taps
        for (int j = 0; j < 6; j++) {
            q[j] = s + j < M ? s + j : M - 1;
            p[j] = pad + 2 * ((q[j] / Wo) * PW + q[j] % Wo) * C;
        }
        // The next block's output lines, for writing (they are not in cache: each image's y is
        // Ho Wo K floats, 256 KB for e1); streamed stores need none.
        if (!stream)
            for (long l = 0; l < 6 * K && (i + 6) * K + l < M * K; l += 16) _mm_prefetch((const char *)(y + (i + 6) * K + l), _MM_HINT_ET0);
        for (long kb = 0; kb < K; kb += 16) {
            __m256 a[6], b[6];  // channels kb ..< kb + 8, kb + 8 ..< kb + 16
            for (int j = 0; j < 6; j++) a[j] = b[j] = _mm256_setzero_ps();
            for (long ky = 0; ky < 4; ky++) {
                const float *w = wt + ky * rowTaps * K + kb;
                for (long t = 0; t < rowTaps; t++, w += K)
                    step6x16(a, b, p, ky * PW * C + t, _mm256_loadu_ps(w), _mm256_loadu_ps(w + 8));
            }
            if (slope != 1)
                for (int j = 0; j < 6; j++) {
                    a[j] = _mm256_max_ps(a[j], _mm256_mul_ps(a[j], sv));
                    b[j] = _mm256_max_ps(b[j], _mm256_mul_ps(b[j], sv));
                }
            for (int j = 0; j < 6; j++) {
                if (stream) {
                    _mm256_stream_ps(y + q[j] * K + kb, a[j]);
                    _mm256_stream_ps(y + q[j] * K + kb + 8, b[j]);
                } else {
                    _mm256_storeu_ps(y + q[j] * K + kb, a[j]);
                    _mm256_storeu_ps(y + q[j] * K + kb + 8, b[j]);
                }
            }
        }
    }
}

DC_AVX2 void dc_direct_forward(float *y, const float *pad, const float *wt, long Ho, long Wo, long C, long K,
                               float slope, int stream) {
    stream = stream && ((uintptr_t)y & 31) == 0;  // the streaming store needs 32-byte alignment
    if (C == 3) forward(y, pad, wt, Ho, Wo, 3, K, slope, stream);  // the RGB layers, with the tap loop's length known
    else forward(y, pad, wt, Ho, Wo, C, K, slope, stream);
    if (stream) _mm_sfence();  // the streamed stores become visible, in order, before the caller signals it is done
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
// loads and C weight loads per 4 C FMAs, summed across lanes at the end. A tap outside the
// image reads `zero`.
DC_AVX2 DC_INLINE void transposed(float *y, const float *x, const float *wt, const float *bias,
                                  const float *zero, long H, long W, long C, long K) {
    const long Wy = 2 * W, groups = 2 * ((W + 3) / 4);
    // Input row t + 2 (first read at output row 2t + 3) streams in while rows 2t and 2t + 1 run,
    // a slice before each of their groups: else each new row's first reads wait on memory (the
    // batch's x does not stay in cache). Past the last row it is the next image's first (x's
    // batch is contiguous); addresses as integers, since they may pass the end of the batch.
    const uintptr_t row = (uintptr_t)(W * K) * sizeof(float);
    const uintptr_t slice = (row / 64 + 2 * groups - 1) / (2 * groups) * 64;
    for (long Y = 0; Y < 2 * H; Y++) {
        uintptr_t ahead = (uintptr_t)x + (uintptr_t)(Y / 2 + 2) * row + (uintptr_t)(Y % 2) * groups * slice;
        const uintptr_t rowEnd = (uintptr_t)x + (uintptr_t)(Y / 2 + 3) * row;
        for (long parity = 0; parity < 2; parity++) {
            for (long g = 0; g < W; g += 4) {
                for (const uintptr_t e = ahead + slice < rowEnd ? ahead + slice : rowEnd; ahead < e; ahead += 64)
                    _mm_prefetch((const char *)ahead, _MM_HINT_T0);
                const long s = g < W - 4 ? g : (W > 4 ? W - 4 : 0);
                long u[4];
                for (int i = 0; i < 4; i++) u[i] = s + i < W ? s + i : W - 1;
                __m256 acc[3][4];  // [c][i]: channel c of pixel u[i], 8 partial sums over K
                for (int c = 0; c < 3; c++)
                    for (int i = 0; i < 4; i++) acc[c][i] = _mm256_setzero_ps();
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
                        const float *w = wt + (ky * 4 + kx) * C * K;
                        for (long j = 0; j < K; j += 8) {
                            // 12 accumulators, C weights and one input vector: 16 registers.
                            __m256 wc[3];
                            for (long c = 0; c < C; c++) wc[c] = _mm256_loadu_ps(w + c * K + j);
                            for (int i = 0; i < 4; i++) {
                                const __m256 v = _mm256_loadu_ps(src[i] + j);
                                for (long c = 0; c < C; c++) acc[c][i] = _mm256_fmadd_ps(v, wc[c], acc[c][i]);
                            }
                        }
                    }
                }
                float sums[3][4];
                for (long c = 0; c < C; c++) _mm_storeu_ps(sums[c], sum4(acc[c][0], acc[c][1], acc[c][2], acc[c][3]));
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
DC_AVX2 DC_INLINE void weight_grad(float *acc, const float *pad, const float *dy, const float *next_dy,
                                  long Ho, long Wo, long C, long K) {
    const long PW = 2 * Wo + 2, taps = 16 * C;
    long off[48];  // tap (ky, kx, c) -> its offset in pad from the pixel's top-left tap
    for (long t = 0; t < 16; t++)
        for (long c = 0; c < C; c++) off[t * C + c] = ((t / 4) * PW + t % 4) * C + c;
    // The next image's dy streams in while this one's sweeps run, a line every `every` pixel
    // steps, spread so the last line is asked for in the last sweep. Requests in bursts (a slice
    // after each sweep, or the whole image up front) stall the sweep until the misses drain:
    // measured on Zen 3, 133-148 GFLOP/s against 147-156 spread (batch 64, e1's shape, 2 threads).
    // Each worker's first image comes in by the hardware's stride prefetcher.
    const long lines = next_dy ? (Ho * Wo * K + 15) / 16 : 0, sweeps = (taps + 5) / 6 * (K / 16);
    const long perSweep = (lines + sweeps - 1) / sweeps;
    const long every = perSweep > 0 && Ho * Wo / perSweep > 1 ? Ho * Wo / perSweep : 1;
    long ahead = 0, countdown = every;
    for (long tg = 0; tg < taps; tg += 6) {
        const long s = tg < taps - 6 ? tg : taps - 6;  // taps s ..< s + 6; those below tg are the group before's
        const float *p[6];  // the taps of pixel (0, 0)
        for (int j = 0; j < 6; j++) p[j] = pad + off[s + j];
        for (long kb = 0; kb < K; kb += 16) {
            __m256 a[6], b[6];  // channels kb ..< kb + 8, kb + 8 ..< kb + 16
            for (int j = 0; j < 6; j++) a[j] = b[j] = _mm256_setzero_ps();
            for (long oy = 0; oy < Ho; oy++) {
                const float *d = dy + oy * Wo * K + kb;
                for (long ox = 0; ox < Wo; ox++, d += K) {
                    if (--countdown == 0) {
                        countdown = every;
                        if (ahead < lines) _mm_prefetch((const char *)(next_dy + 16 * ahead++), _MM_HINT_T1);
                    }
                    step6x16(a, b, p, 2 * (oy * PW + ox) * C, _mm256_loadu_ps(d), _mm256_loadu_ps(d + 8));
                }
            }
            for (long j = tg - s; j < 6; j++) {
                float *q = acc + (s + j) * K + kb;
                _mm256_storeu_ps(q, _mm256_add_ps(_mm256_loadu_ps(q), a[j]));
                _mm256_storeu_ps(q + 8, _mm256_add_ps(_mm256_loadu_ps(q + 8), b[j]));
            }
        }
    }
}

DC_AVX2 void dc_direct_weight_grad(float *acc, const float *pad, const float *dy, const float *next_dy,
                                   long Ho, long Wo, long C, long K) {
    if (C == 3) weight_grad(acc, pad, dy, next_dy, Ho, Wo, 3, K);
    else weight_grad(acc, pad, dy, next_dy, Ho, Wo, C, K);
}

#endif
