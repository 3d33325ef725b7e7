// JPEG decode/encode through libjpeg(-turbo). All longjmps from libjpeg land in this file.
#include "codecs.h"

#include <stdio.h>
// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/// Scans beyond this count abort decoding: a few kilobytes of crafted progressive JPEG can
/// otherwise ask for millions of scans over a large coefficient buffer (minutes of CPU).
#define MAX_SCANS 500

/// Error manager whose error_exit longjmps back here and whose messages stay silent.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message; ///< DC_MESSAGE_SIZE bytes
} error_manager;

static void on_error_exit(j_common_ptr cinfo) {
    error_manager *err = (error_manager *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(err->message, DC_MESSAGE_SIZE, "%s", text);
    longjmp(err->jump, 1);
}

/// Warnings that mean the image data is damaged (libjpeg would otherwise paint gray
/// blocks and carry on) are promoted to errors; harmless ones are ignored.
static void on_emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return; // trace messages
    switch (cinfo->err->msg_code) {
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_JPEG_EOF:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        on_error_exit(cinfo);
        break;
    default:
        break;
    }
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void on_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MAX_SCANS) {
        error_manager *err = (error_manager *)cinfo->err;
        snprintf(err->message, DC_MESSAGE_SIZE, "more than %d progressive scans (corrupt or malicious file)", MAX_SCANS);
        longjmp(err->jump, 1);
    }
}

static void install_error_manager(error_manager *err, char *message) {
    jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error_exit;
    err->pub.emit_message = on_emit_message;
    err->pub.output_message = on_output_message;
    err->message = message;
}

/// Product (0...255) of two 8-bit values scaled by 1/255, rounded as PIL does.
static inline int mul_div255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int dc_jpeg_decode(const unsigned char *data, size_t size, uint64_t max_pixels, int min_side,
                   dc_image *out, char message[DC_MESSAGE_SIZE]) {
    memset(out, 0, sizeof *out);
    message[0] = 0;
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8) {
        snprintf(message, DC_MESSAGE_SIZE, "not a JPEG file (no SOI marker)");
        return DC_ERR_CORRUPT;
    }
    struct jpeg_decompress_struct cinfo;
    error_manager err;
    struct jpeg_progress_mgr progress = {.progress_monitor = on_progress};
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile cmyk_row = NULL;
    cinfo.err = &err.pub;
    install_error_manager(&err, message);
    if (setjmp(err.jump)) {
        free(pixels);
        free(cmyk_row);
        jpeg_destroy_decompress(&cinfo);
        return DC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if ((uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        snprintf(message, DC_MESSAGE_SIZE, "the header claims %ux%u = %llu pixels, more than the limit of %llu",
                 cinfo.image_width, cinfo.image_height, (unsigned long long)cinfo.image_width * cinfo.image_height,
                 (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return DC_ERR_TOO_LARGE;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cmyk) cinfo.out_color_space = JCS_CMYK;
    else if (cinfo.jpeg_color_space == JCS_GRAYSCALE) cinfo.out_color_space = JCS_GRAYSCALE;
    else cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    if (min_side > 0) {
        for (unsigned denom = 8; denom > 1; denom /= 2) {
            cinfo.scale_denom = denom;
            jpeg_calc_output_dimensions(&cinfo);
            unsigned shorter = cinfo.output_width < cinfo.output_height ? cinfo.output_width : cinfo.output_height;
            if (shorter >= (unsigned)min_side) break;
            cinfo.scale_denom = 1;
        }
    }
    jpeg_start_decompress(&cinfo);
    int width = (int)cinfo.output_width, height = (int)cinfo.output_height;
    int channels = cmyk ? 3 : cinfo.output_components;
    if (channels != 1 && channels != 3) {
        snprintf(message, DC_MESSAGE_SIZE, "unsupported JPEG with %d components", cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        return DC_ERR_CORRUPT;
    }
    pixels = malloc((size_t)width * height * channels);
    if (cmyk) cmyk_row = malloc((size_t)width * 4);
    if (!pixels || (cmyk && !cmyk_row)) {
        free(pixels);
        free(cmyk_row);
        jpeg_destroy_decompress(&cinfo);
        snprintf(message, DC_MESSAGE_SIZE, "out of memory for %dx%d pixels", width, height);
        return DC_ERR_NOMEM;
    }
    // Adobe's CMYK JPEGs store inverted samples; libjpeg hands them over as stored.
    int inverted = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *row = pixels + (size_t)cinfo.output_scanline * width * channels;
        JSAMPROW target = cmyk ? cmyk_row : row;
        jpeg_read_scanlines(&cinfo, &target, 1);
        if (!cmyk) continue;
        for (int x = 0; x < width; x++) {
            const unsigned char *s = cmyk_row + 4 * x;
            int k = inverted ? 255 - s[3] : s[3];
            int nk = 255 - k;
            for (int c = 0; c < 3; c++) {
                int ink = inverted ? 255 - s[c] : s[c];
                row[3 * x + c] = (unsigned char)(nk - mul_div255(ink, nk));
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bytes_per_sample = 1;
    out->pixels = pixels;
    return DC_OK;
}

int dc_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                   unsigned char **out, size_t *out_size, char message[DC_MESSAGE_SIZE]) {
    *out = NULL;
    *out_size = 0;
    message[0] = 0;
    if (width < 1 || height < 1 || (channels != 1 && channels != 3) || quality < 1 || quality > 100) {
        snprintf(message, DC_MESSAGE_SIZE, "cannot encode %dx%d pixels with %d channels at quality %d as JPEG", width,
                 height, channels, quality);
        return DC_ERR_ARGUMENT;
    }
    struct jpeg_compress_struct cinfo;
    error_manager err;
    unsigned char *buffer = NULL;
    unsigned long buffer_size = 0;
    cinfo.err = &err.pub;
    install_error_manager(&err, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return DC_ERR_CORRUPT;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &buffer, &buffer_size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *out_size = buffer_size;
    return DC_OK;
}
