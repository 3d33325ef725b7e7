// Box reduction by an integer factor as rows are decoded (shared by the PNG and JPEG decoders).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "codecs.h"

/// Sums of k x k blocks of a width x height image with `channels` samples per pixel, fed any
/// subset of its pixels in any order (rows, or the sparse rows of Adam7 passes). With alpha
/// (2 or 4 channels, alpha last), colour is summed premultiplied by alpha.
typedef struct {
    int width, height, channels, alpha, k;
    int out_width, out_height;
    uint64_t *sums; ///< out_width * out_height * channels
} dc_reducer;

/// Allocates the sums; 0 on success, -1 when out of memory.
int dc_reducer_init(dc_reducer *r, int width, int height, int channels, int k);

/// Adds `count` pixels of row `y` at columns x0, x0 + dx, ...: `samples` holds them packed,
/// `bytes_per_sample` 1 (uint8) or 2 (uint16, native order).
void dc_reducer_add(dc_reducer *r, const unsigned char *samples, int bytes_per_sample, int y, int x0, int dx,
                    int count);

/// Puts the block means into `image` as floats in [0, 1] (samples scaled by 1 / max_value,
/// malloc'd; width, height and bytes_per_sample 4 set); 0 on success, -1 when out of memory
/// (`image` untouched). Frees the sums either way.
int dc_reducer_finish(dc_reducer *r, double max_value, dc_image *image);

/// Frees the sums (after an error).
void dc_reducer_free(dc_reducer *r);
