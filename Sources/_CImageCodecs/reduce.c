#include "reduce.h"
#include "codecs.h"

#include <stdlib.h>

int dc_reduce_factor(int width, int height, int min_side) {
    if (min_side <= 0 || width <= 0 || height <= 0) return 1;
    int64_t shorter = width < height ? width : height;
    int64_t k = shorter / ((int64_t)min_side * DC_REDUCE_GAP);
    return k >= 2 ? (int)k : 1;
}

int dc_reducer_init(dc_reducer *r, int width, int height, int channels, int k) {
    r->width = width;
    r->height = height;
    r->channels = channels;
    r->alpha = channels == 2 || channels == 4;
    r->k = k;
    r->out_width = (width + k - 1) / k;
    r->out_height = (height + k - 1) / k;
    r->sums = calloc((size_t)r->out_width * r->out_height * channels, sizeof(uint64_t));
    return r->sums ? 0 : -1;
}

void dc_reducer_free(dc_reducer *r) {
    free(r->sums);
    r->sums = NULL;
}

/// Adds one pixel's samples `s` into the block sums `px`.
#define ADD_PIXEL(px, s, c, alpha)                                                                \
    do {                                                                                          \
        if (alpha) {                                                                              \
            uint64_t a_ = (s)[(c) - 1];                                                           \
            for (int ch_ = 0; ch_ < (c) - 1; ch_++) (px)[ch_] += (uint64_t)(s)[ch_] * a_;         \
            (px)[(c) - 1] += a_;                                                                  \
        } else {                                                                                  \
            for (int ch_ = 0; ch_ < (c); ch_++) (px)[ch_] += (s)[ch_];                            \
        }                                                                                         \
    } while (0)

void dc_reducer_add(dc_reducer *r, const unsigned char *samples, int bytes_per_sample, int y, int x0, int dx,
                    int count) {
    const int c = r->channels, k = r->k, alpha = r->alpha;
    uint64_t *line = r->sums + (size_t)(y / k) * r->out_width * c;
    if (dx == 1 && x0 == 0) {
        // A whole row: block by block, no division per pixel.
        int x = 0;
        for (int ox = 0; ox < r->out_width && x < count; ox++) {
            uint64_t *px = line + (size_t)ox * c;
            int end = x + k < count ? x + k : count;
            if (bytes_per_sample == 2) {
                const uint16_t *s = (const uint16_t *)samples + (size_t)x * c;
                for (; x < end; x++, s += c) ADD_PIXEL(px, s, c, alpha);
            } else {
                const uint8_t *s = samples + (size_t)x * c;
                for (; x < end; x++, s += c) ADD_PIXEL(px, s, c, alpha);
            }
        }
        return;
    }
    for (int i = 0; i < count; i++) {
        int x = x0 + i * dx;
        uint64_t *px = line + (size_t)(x / k) * c;
        if (bytes_per_sample == 2) {
            const uint16_t *s = (const uint16_t *)samples + (size_t)i * c;
            ADD_PIXEL(px, s, c, alpha);
        } else {
            const uint8_t *s = samples + (size_t)i * c;
            ADD_PIXEL(px, s, c, alpha);
        }
    }
}

int dc_reducer_finish(dc_reducer *r, double max_value, dc_image *image) {
    const int c = r->channels, k = r->k;
    float *out = malloc((size_t)r->out_width * r->out_height * c * sizeof(float));
    if (out) {
        for (int oy = 0; oy < r->out_height; oy++) {
            int rows = r->height - oy * k < k ? r->height - oy * k : k;
            for (int ox = 0; ox < r->out_width; ox++) {
                int cols = r->width - ox * k < k ? r->width - ox * k : k;
                size_t at = ((size_t)oy * r->out_width + ox) * c;
                const uint64_t *sum = r->sums + at;
                double n = (double)rows * cols;
                if (r->alpha) {
                    // Straight colour: sum(v * a) / sum(a); then alpha * colour + (1 - alpha) * white
                    // of the block equals the mean of the composited pixels.
                    double a = (double)sum[c - 1];
                    for (int ch = 0; ch < c - 1; ch++) out[at + ch] = a > 0 ? (float)((double)sum[ch] / a / max_value) : 0;
                    out[at + c - 1] = (float)(a / n / max_value);
                } else {
                    for (int ch = 0; ch < c; ch++) out[at + ch] = (float)((double)sum[ch] / n / max_value);
                }
            }
        }
    }
    int out_width = r->out_width, out_height = r->out_height;
    dc_reducer_free(r);
    if (!out) return -1;
    image->width = out_width;
    image->height = out_height;
    image->bytes_per_sample = 4;
    image->pixels = (unsigned char *)out;
    return 0;
}
