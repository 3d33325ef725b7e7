// Elementwise float32 kernels that Swift does not vectorize (its sqrt keeps C's errno path, a
// scalar call per element). Compiled with -ffp-contract=off and without fast-math: every element
// goes through the same IEEE operations whether it falls in a vector or in the scalar remainder,
// so a value does not depend on its position, on how callers split an array, or on the CPU.
#pragma once

#include <stdint.h>

#include "direct_conv.h"  // the direct image-channel convolutions
#include "pool.h"         // the worker pool behind Parallel

/// y[i] = 1 / (1 + e^-x[i]) for i < n; y may be x (in place), else the two must not overlap.
/// e^-x by Cody-Waite range reduction and Cephes' degree-6 polynomial for expf (about 1 ulp), so
/// y is within a few ulp of the exact sigmoid. Below x = -88 (e^-x near float32's largest) y is 0
/// (the exact value is below 6.1e-39); above x = 87.3 y is 1, which the exact value rounds to. NaN
/// stays NaN.
void dc_sigmoid(float *y, const float *x, long n);

/// One Adam step on n parameters p with gradients g and moments m, v (four separate arrays), in
/// PyTorch's order (torch.optim.Adam, amsgrad off, L2 weight decay `wd` added to the gradient):
///   gi = g + wd * p (wd != 0), m = lerp(m, gi, w1) (PyTorch's two-sided lerp, w1 = 1 - beta1),
///   v = beta2 * v + (1 - beta2) * gi * gi, p -= step_size * (m / (sqrt(v) / bc2_sqrt + eps)).
void dc_adam(float *p, const float *g, float *m, float *v, long n,
             float w1, float beta2, float wd, float step_size, float bc2_sqrt, float eps);

/// y[i] = x[i] rounded to bfloat16 (float32's upper 16 bits: sign, 8-bit exponent, 7-bit
/// fraction), to nearest with ties to even, for i < n; as the AVX512-BF16 instruction
/// VCVTNEPS2BF16 rounds: a subnormal x becomes a zero of its sign, a NaN stays a (quiet) NaN, a
/// value past bfloat16's largest becomes infinity.
void dc_to_bf16(uint16_t *y, const float *x, long n);

/// OpenBLAS's cblas_sbgemm: C[m x n] = alpha op(A) op(B) + beta C, A and B bfloat16, C float32,
/// row-major cblas arguments (order 101, trans 111 or 112).
typedef void (*dc_sbgemm_fn)(int order, int transA, int transB, int m, int n, int k, float alpha,
                             const uint16_t *a, int lda, const uint16_t *b, int ldb, float beta,
                             float *c, int ldc);

/// C[m x n] = alpha op(A)[m x k] op(B)[k x n] + beta C with float32 A, B, C (row-major, row
/// strides lda, ldb, ldc as stored, before op), multiplied by `fn` after A's and B's blocks are
/// rounded to bfloat16 (dc_to_bf16) into buffers of the calling thread (kept for its next call,
/// freed when it exits). k == 0 scales C by beta.
/// Products of two bfloat16 are exact in float32, and `fn` sums them in float32.
void dc_sbgemm_f32(dc_sbgemm_fn fn, int transA, int transB, long m, long n, long k, float alpha,
                   const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);

/// dc_sbgemm_f32 with B already bfloat16 (rounded by dc_to_bf16, row stride ldb): only A is
/// rounded here. For a B used by many products (Winograd's transformed weights U).
void dc_sbgemm_f32_bf16b(dc_sbgemm_fn fn, int transA, int transB, long m, long n, long k, float alpha,
                         const float *a, long lda, const uint16_t *b, long ldb, float beta, float *c, long ldc);
