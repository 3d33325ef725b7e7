// The direct image-channel convolutions (4x4 kernel, stride 2, padding 1, C <= 3 image
// channels; DiscoCore's DirectConv / ImageChannelBlock call them per image). AVX2 + FMA: x86-64
// only, and to be called only on a CPU that has both. Legend: C = image channels (1...3), K =
// channels on the other side (a multiple of 16), Ho x Wo = the convolution's output (its input
// 2Ho x 2Wo), PW = 2 Wo + 2. Layouts NHWC without N; wt [16 C][K] = [ky][kx][c][K].
#pragma once

#if defined(__x86_64__)
/// y [Ho * Wo][K] = conv(x, w): pad [2Ho + 2][PW][C] is the image inside a zero border. Each
/// output v is stored as max(v, slope v): slope 1 stores v, a leaky ReLU's slope (0 < slope < 1)
/// applies it. stream != 0: non-temporal stores (y bypasses the caches: for outputs larger than
/// they are, read only later), if y is 32-byte aligned.
void dc_direct_forward(float *y, const float *pad, const float *wt, long Ho, long Wo, long C, long K,
                       float slope, int stream);

/// y [2H][2W][C] = the transposed convolution of x [H][W][K] (the convolution's input gradient
/// for dy = x, Ho = H, Wo = W), plus bias [C] unless NULL. zero: K zeros (the border).
void dc_direct_transposed(float *y, const float *x, const float *wt, const float *bias,
                          const float *zero, long H, long W, long C, long K);

/// acc [16 C][K] += the weight gradient of one image, acc[(ky, kx, c)][k] += sum over the pixels
/// of dy[oy, ox, k] * pad[2oy + ky, 2ox + kx, c]: pad [2Ho + 2][PW][C], dy [Ho * Wo][K].
/// next_dy: the next image's dy (same shape), prefetched meanwhile; NULL if none.
void dc_direct_weight_grad(float *acc, const float *pad, const float *dy, const float *next_dy,
                           long Ho, long Wo, long C, long K);
#endif
