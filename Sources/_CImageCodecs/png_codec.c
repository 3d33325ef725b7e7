// PNG decode/encode through libpng. All longjmps from libpng land in this file.
#include "codecs.h"
#include "reduce.h"

#include <errno.h>
#include <malloc.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/// Source/sink shared by the libpng error and I/O callbacks.
typedef struct {
    const unsigned char *data; ///< input bytes (decode from memory), or NULL to read `fd`
    int fd;                    ///< input file (decode when data is NULL)
    size_t size;               ///< input size, or bytes written so far (encode)
    size_t pos;                ///< read position (decode)
    unsigned char *out;        ///< output buffer (encode)
    size_t capacity;           ///< output capacity (encode)
    char *message;             ///< DC_MESSAGE_SIZE bytes
    int code;                  ///< error code to return after the longjmp
} png_io;

static void on_error(png_structp png, png_const_charp msg) {
    png_io *io = (png_io *)png_get_error_ptr(png);
    snprintf(io->message, DC_MESSAGE_SIZE, "%s", msg);
    io->code = strstr(msg, "exceeds user limit") ? DC_ERR_TOO_LARGE : DC_ERR_CORRUPT;
    if (strstr(msg, "Insufficient memory") || strstr(msg, "Out of memory")) io->code = DC_ERR_NOMEM;
    if (strncmp(msg, "read failed", 11) == 0) io->code = DC_ERR_READ;
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; // warnings (bad ancillary chunks, unknown sRGB profiles...) are not the user's problem
}

static void read_input(png_structp png, png_bytep dst, size_t n) {
    png_io *io = (png_io *)png_get_io_ptr(png);
    if (n > io->size - io->pos) png_error(png, "truncated: the file ends before the image data does");
    if (io->data) {
        memcpy(dst, io->data + io->pos, n);
        io->pos += n;
        return;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(io->fd, dst + done, n - done, (off_t)(io->pos + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            char text[DC_MESSAGE_SIZE];
            snprintf(text, sizeof text, "read failed: %s", strerror(errno));
            png_error(png, text);
        }
        if (got == 0) png_error(png, "truncated: the file ends before the image data does (did it shrink while being read?)");
        done += (size_t)got;
    }
    io->pos += n;
}

int dc_png_decode(const dc_input *input, const dc_decode_options *options, dc_image *out,
                  char message[DC_MESSAGE_SIZE]) {
    memset(out, 0, sizeof *out);
    message[0] = 0;
    uint64_t max_pixels = options->max_pixels;
    unsigned char signature[8];
    if (input->size < 8) {
        snprintf(message, DC_MESSAGE_SIZE, "not a PNG file (no PNG signature)");
        return DC_ERR_CORRUPT;
    }
    if (input->data) {
        memcpy(signature, input->data, 8);
    } else {
        ssize_t got;
        do got = pread(input->fd, signature, 8, 0); while (got < 0 && errno == EINTR);
        if (got < 0) {
            snprintf(message, DC_MESSAGE_SIZE, "read failed: %s", strerror(errno));
            return DC_ERR_READ;
        }
        if (got < 8) memset(signature, 0, sizeof signature);
    }
    if (png_sig_cmp(signature, 0, 8) != 0) {
        snprintf(message, DC_MESSAGE_SIZE, "not a PNG file (no PNG signature)");
        return DC_ERR_CORRUPT;
    }
    png_io io = {.data = input->data, .fd = input->fd, .size = input->size, .message = message, .code = DC_ERR_CORRUPT};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
    if (!png) return DC_ERR_NOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return DC_ERR_NOMEM;
    }
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile row = NULL;
    uint64_t *volatile sums = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(row);
        free(sums);
        png_destroy_read_struct(&png, &info, NULL);
        return io.code;
    }
    png_set_read_fn(png, &io, read_input);
    // Refuse absurd sizes while parsing IHDR, and cap the memory any single chunk may take
    // (zTXt/iCCP decompression bombs) and the number of ancillary chunks kept.
    png_uint_32 side_limit = max_pixels > 0x7fffffffu ? 0x7fffffffu : (png_uint_32)(max_pixels ? max_pixels : 1);
    png_set_user_limits(png, side_limit, side_limit);
    png_set_chunk_malloc_max(png, 16u << 20);
    png_set_chunk_cache_max(png, 1000);
    png_read_info(png, info);

    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if ((uint64_t)width * height > max_pixels) {
        snprintf(message, DC_MESSAGE_SIZE, "the header claims %ux%u = %llu pixels, more than the limit of %llu",
                 width, height, (unsigned long long)width * height, (unsigned long long)max_pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return DC_ERR_TOO_LARGE;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (depth == 16) png_set_swap(png);
#endif
    int interlaced = png_get_interlace_type(png, info) == PNG_INTERLACE_ADAM7;
    int k = options->header_only ? 1 : dc_reduce_factor((int)width, (int)height, options->min_side);
    // Full size: libpng merges Adam7 passes into full rows. Reduced: each pass's own pixels are
    // added to the block sums where they belong, so no full-size buffer is needed.
    int passes = k == 1 ? png_set_interlace_handling(png) : (interlaced ? 7 : 1);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int bytes_per_sample = png_get_bit_depth(png, info) == 16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || rowbytes != (size_t)width * channels * bytes_per_sample) {
        snprintf(message, DC_MESSAGE_SIZE, "unsupported PNG layout (%d channels, %zu bytes per row)", channels, rowbytes);
        png_destroy_read_struct(&png, &info, NULL);
        return DC_ERR_CORRUPT;
    }
    out->width = out->source_width = (int)width;
    out->height = out->source_height = (int)height;
    out->pitch = k;
    out->channels = channels;
    out->bytes_per_sample = bytes_per_sample;
    if (options->header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return DC_OK;
    }
    if (k > 1) {
        dc_reducer reducer;
        row = malloc(rowbytes);
        if (!row || dc_reducer_init(&reducer, (int)width, (int)height, channels, k) != 0) {
            free(row);
            png_destroy_read_struct(&png, &info, NULL);
            snprintf(message, DC_MESSAGE_SIZE, "out of memory for a %ux%u image reduced by %d", width, height, k);
            return DC_ERR_NOMEM;
        }
        sums = reducer.sums;
        for (int pass = 0; pass < passes; pass++) {
            png_uint_32 cols = interlaced ? PNG_PASS_COLS(width, pass) : width;
            png_uint_32 rows = interlaced ? PNG_PASS_ROWS(height, pass) : height;
            if (cols == 0 || rows == 0) continue; // libpng skips empty passes
            int y0 = interlaced ? PNG_PASS_START_ROW(pass) : 0, dy = interlaced ? 1 << PNG_PASS_ROW_SHIFT(pass) : 1;
            int x0 = interlaced ? PNG_PASS_START_COL(pass) : 0, dx = interlaced ? 1 << PNG_PASS_COL_SHIFT(pass) : 1;
            for (png_uint_32 j = 0; j < rows; j++) {
                png_read_row(png, row, NULL);
                dc_reducer_add(&reducer, row, bytes_per_sample, y0 + (int)j * dy, x0, dx, (int)cols);
            }
        }
        png_read_end(png, NULL); // a file cut after the image data is still reported as truncated
        png_destroy_read_struct(&png, &info, NULL);
        free(row);
        sums = NULL;
        if (dc_reducer_finish(&reducer, bytes_per_sample == 2 ? 65535.0 : 255.0, out) != 0) {
            snprintf(message, DC_MESSAGE_SIZE, "out of memory for a %ux%u image reduced by %d", width, height, k);
            return DC_ERR_NOMEM;
        }
        return DC_OK;
    }
    pixels = malloc(rowbytes * height);
    if (!pixels) {
        png_destroy_read_struct(&png, &info, NULL);
        snprintf(message, DC_MESSAGE_SIZE, "out of memory for %ux%u pixels", width, height);
        return DC_ERR_NOMEM;
    }
    // Row by row (no row-pointer array); an interlaced image takes one sweep per Adam7 pass,
    // libpng merging each pass into the full rows.
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < height; y++) png_read_row(png, pixels + y * rowbytes, NULL);
    png_read_end(png, NULL); // a file cut after the image data is still reported as truncated
    png_destroy_read_struct(&png, &info, NULL);
    out->pixels = pixels;
    return DC_OK;
}

static void write_memory(png_structp png, png_bytep src, size_t n) {
    png_io *io = (png_io *)png_get_io_ptr(png);
    if (io->size + n > io->capacity) {
        size_t capacity = io->capacity ? io->capacity : 4096;
        while (capacity < io->size + n) capacity *= 2;
        unsigned char *grown = realloc(io->out, capacity);
        if (!grown) png_error(png, "Out of memory while encoding");
        io->out = grown;
        io->capacity = capacity;
    }
    memcpy(io->out + io->size, src, n);
    io->size += n;
}

static void flush_memory(png_structp png) { (void)png; }

int dc_png_encode(const unsigned char *pixels, int width, int height, int channels, int fast,
                  unsigned char **out, size_t *out_size, char message[DC_MESSAGE_SIZE]) {
    *out = NULL;
    *out_size = 0;
    message[0] = 0;
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                       PNG_COLOR_TYPE_RGB_ALPHA};
    if (width < 1 || height < 1 || channels < 1 || channels > 4) {
        snprintf(message, DC_MESSAGE_SIZE, "cannot encode %dx%d pixels with %d channels as PNG", width, height, channels);
        return DC_ERR_ARGUMENT;
    }
    png_io io = {.message = message, .code = DC_ERR_CORRUPT};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
    if (!png) return DC_ERR_NOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return DC_ERR_NOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        free(io.out);
        png_destroy_write_struct(&png, &info);
        return io.code;
    }
    png_set_write_fn(png, &io, write_memory, flush_memory);
    if (fast) {
        // zlib's fastest level and one filter instead of trying all five per row: about 5x
        // faster than the defaults (level 6, adaptive filters), files a few percent larger.
        png_set_compression_level(png, 1);
        png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_PAETH);
    }
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * width * channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = io.out;
    *out_size = io.size;
    return DC_OK;
}

void dc_free(void *p) { free(p); }

size_t dc_heap_bytes_in_use(void) { return mallinfo2().uordblks; }
