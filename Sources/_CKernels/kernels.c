#include "kernels.h"
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline float from_bits(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint32_t to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

static inline float sigmoid1(float x) {
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer, kept in the low bits
    float t = -x;
    float tc = t < -87.3f ? -87.3f : (t > 88.0f ? 88.0f : t);
    // e^t = 2^k e^r, k = round(t / ln 2), r = t - k ln 2 (ln 2 in two parts).
    float shifted = tc * 1.44269504088896341f + magic;
    float k = shifted - magic;
    float r = tc - k * 0.693359375f - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    float e = p * from_bits(((to_bits(shifted) - to_bits(magic)) + 127u) << 23);
    e = t > 88.0f ? INFINITY : e;
    float s = 1.0f / (1.0f + e);
    return x != x ? x : s;
}

void dc_sigmoid(float *y, const float *x, long n) {
    // Each iteration reads x[i] before writing y[i]: safe in place.
#pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) y[i] = sigmoid1(x[i]);
}

void dc_adam(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, long n,
             float w1, float beta2, float wd, float step_size, float bc2_sqrt, float eps) {
    const float ow1 = 1 - w1, ob2 = 1 - beta2;
    const int low = w1 < 0.5f, decay = wd != 0;
    for (long i = 0; i < n; i++) {
        float gi = decay ? g[i] + wd * p[i] : g[i];
        float mi = low ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * ow1;
        float vi = beta2 * v[i] + ob2 * gi * gi;
        m[i] = mi; v[i] = vi;
        p[i] -= step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

// MARK: bfloat16 GEMMs

void dc_to_bf16(uint16_t *y, const float *x, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t u = to_bits(x[i]);
        uint32_t mag = u & 0x7fffffffu;
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // to nearest, ties to even
        r = mag < 0x00800000u ? (u >> 16) & 0x8000u : r;      // zero or subnormal: signed zero
        r = mag > 0x7f800000u ? (u >> 16) | 0x0040u : r;      // NaN: quiet NaN
        y[i] = (uint16_t)r;
    }
}

// This thread's bfloat16 copies of the two operands: grown to the largest block seen, freed when
// the thread exits (a pthread key's destructor: Dispatch's threads come and go).
typedef struct { uint16_t *buffer[2]; long capacity[2]; } bf16_buffers;
static pthread_key_t bf16_key;
static pthread_once_t bf16_once = PTHREAD_ONCE_INIT;

static void bf16_free(void *p) {
    bf16_buffers *b = p;
    free(b->buffer[0]); free(b->buffer[1]); free(b);
}

static void bf16_make_key(void) {
    if (pthread_key_create(&bf16_key, bf16_free) != 0) { fprintf(stderr, "disco: pthread_key_create failed\n"); abort(); }
}

static uint16_t *bf16_block(int which, const float *x, long rows, long cols, long ld) {
    pthread_once(&bf16_once, bf16_make_key);
    bf16_buffers *b = pthread_getspecific(bf16_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b || pthread_setspecific(bf16_key, b) != 0) { fprintf(stderr, "disco: out of memory for bfloat16 buffers\n"); abort(); }
    }
    long need = rows * cols;
    if (need > b->capacity[which]) {
        free(b->buffer[which]);
        long cap = need + need / 4 + 1024;
        b->buffer[which] = aligned_alloc(64, (size_t)((cap * 2 + 63) / 64 * 64));
        if (!b->buffer[which]) { fprintf(stderr, "disco: out of memory for a %ld-value bfloat16 buffer\n", cap); abort(); }
        b->capacity[which] = cap;
    }
    uint16_t *y = b->buffer[which];
    if (ld == cols) dc_to_bf16(y, x, need);
    else for (long r = 0; r < rows; r++) dc_to_bf16(y + r * cols, x + r * ld, cols);
    return y;
}

// C = beta C (k == 0: no products; sbgemm would refuse a zero leading dimension).
static void scale_c(long m, long n, float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
}

// Stored shapes: A is m x k (k x m transposed), B is k x n (n x k transposed).
void dc_sbgemm_f32_bf16b(dc_sbgemm_fn fn, int transA, int transB, long m, long n, long k, float alpha,
                         const float *a, long lda, const uint16_t *b, long ldb, float beta, float *c, long ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) { scale_c(m, n, beta, c, ldc); return; }
    long ar = transA ? k : m, ac = transA ? m : k;
    const uint16_t *ab = bf16_block(0, a, ar, ac, lda);
    fn(101, transA ? 112 : 111, transB ? 112 : 111, (int)m, (int)n, (int)k, alpha,
       ab, (int)ac, b, (int)ldb, beta, c, (int)ldc);
}

void dc_sbgemm_f32(dc_sbgemm_fn fn, int transA, int transB, long m, long n, long k, float alpha,
                   const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (m == 0 || n == 0 || k == 0) {
        dc_sbgemm_f32_bf16b(fn, transA, transB, m, n, k, alpha, a, lda, NULL, 0, beta, c, ldc);
        return;
    }
    long br = transB ? n : k, bc = transB ? k : n;
    dc_sbgemm_f32_bf16b(fn, transA, transB, m, n, k, alpha, a, lda, bf16_block(1, b, br, bc, ldb), bc, beta, c, ldc);
}
