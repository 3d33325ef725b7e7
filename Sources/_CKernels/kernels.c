#include "kernels.h"
#include <math.h>
#include <stdint.h>
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
