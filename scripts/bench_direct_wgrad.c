// The direct 3-channel weight gradient (Sources/_CKernels/direct_conv.c) alone, as
// DirectConv.backwardWeight drives it: e1's shape (x [64, 64, 64, 3], dy [64, 32, 32, 64]),
// the batch split between two threads, each image copied inside a zero border and then
// dc_direct_weight_grad called with the next image's dy to prefetch. Best of 60 rounds.
//   /opt/swift/usr/bin/clang -O3 -ISources/_CKernels/include scripts/bench_direct_wgrad.c \
//       Sources/_CKernels/direct_conv.c -pthread -o /tmp/wgrad && /tmp/wgrad [same]
// "same": every image reads image 0's dy (always in cache): the kernel's rate without memory.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "direct_conv.h"

enum { N = 64, H = 64, W = 64, C = 3, K = 64, Ho = 32, Wo = 32, PW = W + 2, THREADS = 2, ROUNDS = 60 };
static float *x, *dy, acc[THREADS][16 * C * K];
static int same;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *work(void *arg) {
    const long id = (long)arg, lo = id * N / THREADS, hi = (id + 1) * N / THREADS;
    float *pad = calloc((H + 2) * PW * C, sizeof(float));
    for (long n = lo; n < hi; n++) {
        for (int y = 0; y < H; y++) memcpy(pad + ((y + 1) * PW + 1) * C, x + (n * H + y) * W * C, W * C * sizeof(float));
        const float *d = dy + (same ? 0 : n) * Ho * Wo * K, *next = dy + (same ? 0 : n + 1) * Ho * Wo * K;
        dc_direct_weight_grad(acc[id], pad, d, n + 1 < hi ? next : NULL, Ho, Wo, C, K);
    }
    free(pad);
    return NULL;
}

int main(int argc, char **argv) {
    same = argc > 1 && strcmp(argv[1], "same") == 0;
    x = aligned_alloc(64, sizeof(float) * N * H * W * C);
    dy = aligned_alloc(64, sizeof(float) * N * Ho * Wo * K);
    for (long i = 0; i < (long)N * H * W * C; i++) x[i] = (float)(rand() % 100) / 100;
    for (long i = 0; i < (long)N * Ho * Wo * K; i++) dy[i] = (float)(rand() % 100) / 100;
    double best = 1e9;
    for (int r = 0; r < ROUNDS; r++) {
        const double t0 = now();
        pthread_t th[THREADS];
        for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, work, (void *)i);
        for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
        const double t = now() - t0;
        if (t < best) best = t;
    }
    const double flop = 2.0 * N * Ho * Wo * K * 16 * C;
    printf("%s dy: best %.3f ms, %.1f GFLOP/s\n", same ? "cached" : "batch", best * 1e3, flop / best / 1e9);
    return 0;
}
