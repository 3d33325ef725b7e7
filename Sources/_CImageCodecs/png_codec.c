// PNG decode/encode through libpng. All longjmps from libpng land in this file.
#include "codecs.h"

#include <malloc.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/// Memory source/sink shared by the libpng error and I/O callbacks.
typedef struct {
    const unsigned char *data; ///< input bytes (decode)
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
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; // warnings (bad ancillary chunks, unknown sRGB profiles...) are not the user's problem
}

static void read_memory(png_structp png, png_bytep dst, size_t n) {
    png_io *io = (png_io *)png_get_io_ptr(png);
    if (n > io->size - io->pos) png_error(png, "truncated: the file ends before the image data does");
    memcpy(dst, io->data + io->pos, n);
    io->pos += n;
}

int dc_png_decode(const unsigned char *data, size_t size, uint64_t max_pixels,
                  dc_image *out, char message[DC_MESSAGE_SIZE]) {
    memset(out, 0, sizeof *out);
    message[0] = 0;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(message, DC_MESSAGE_SIZE, "not a PNG file (no PNG signature)");
        return DC_ERR_CORRUPT;
    }
    png_io io = {.data = data, .size = size, .message = message, .code = DC_ERR_CORRUPT};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
    if (!png) return DC_ERR_NOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return DC_ERR_NOMEM;
    }
    unsigned char *volatile pixels = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return io.code;
    }
    png_set_read_fn(png, &io, read_memory);
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
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int bytes_per_sample = png_get_bit_depth(png, info) == 16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || rowbytes != (size_t)width * channels * bytes_per_sample) {
        snprintf(message, DC_MESSAGE_SIZE, "unsupported PNG layout (%d channels, %zu bytes per row)", channels, rowbytes);
        png_destroy_read_struct(&png, &info, NULL);
        return DC_ERR_CORRUPT;
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
    out->width = (int)width;
    out->height = (int)height;
    out->channels = channels;
    out->bytes_per_sample = bytes_per_sample;
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
