// JPEG decode/encode through libjpeg(-turbo). All longjmps from libjpeg land in this file.
#include "codecs.h"
#include "reduce.h"

#include <errno.h>
#include <stdio.h>
// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/// Scans beyond this count abort decoding: a few kilobytes of crafted progressive JPEG can
/// otherwise ask for millions of scans over a large coefficient buffer (minutes of CPU).
#define MAX_SCANS 500

/// Error manager whose error_exit longjmps back here and whose messages stay silent.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message; ///< DC_MESSAGE_SIZE bytes
    int code;      ///< what to return after the longjmp (DC_ERR_CORRUPT unless a read failed)
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
    err->code = DC_ERR_CORRUPT;
}

/// A libjpeg source reading a file descriptor with pread, 64 KB at a time.
typedef struct {
    struct jpeg_source_mgr pub;
    int fd;
    uint64_t pos, size;
    JOCTET buffer[65536];
} fd_source;

static void fd_init_source(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean fd_fill_input_buffer(j_decompress_ptr cinfo) {
    fd_source *src = (fd_source *)cinfo->src;
    ssize_t got;
    do got = pread(src->fd, src->buffer, sizeof src->buffer, (off_t)src->pos); while (got < 0 && errno == EINTR);
    if (got < 0) {
        error_manager *err = (error_manager *)cinfo->err;
        snprintf(err->message, DC_MESSAGE_SIZE, "read failed: %s", strerror(errno));
        err->code = DC_ERR_READ;
        longjmp(err->jump, 1);
    }
    if (got == 0) {
        // As libjpeg's own sources: warn (an error here, see on_emit_message) and end the image.
        WARNMS(cinfo, JWRN_JPEG_EOF);
        static const JOCTET eoi[2] = {0xFF, JPEG_EOI};
        src->pub.next_input_byte = eoi;
        src->pub.bytes_in_buffer = 2;
        return TRUE;
    }
    src->pos += (uint64_t)got;
    src->pub.next_input_byte = src->buffer;
    src->pub.bytes_in_buffer = (size_t)got;
    return TRUE;
}

static void fd_skip_input_data(j_decompress_ptr cinfo, long count) {
    fd_source *src = (fd_source *)cinfo->src;
    if (count <= 0) return;
    if ((size_t)count <= src->pub.bytes_in_buffer) {
        src->pub.next_input_byte += count;
        src->pub.bytes_in_buffer -= (size_t)count;
        return;
    }
    src->pos += (uint64_t)count - src->pub.bytes_in_buffer; // past the buffer: no need to read what is skipped
    src->pub.bytes_in_buffer = 0;
    fd_fill_input_buffer(cinfo);
}

static void fd_term_source(j_decompress_ptr cinfo) { (void)cinfo; }

static void set_fd_source(j_decompress_ptr cinfo, fd_source *src, int fd, uint64_t size) {
    src->pub.init_source = fd_init_source;
    src->pub.fill_input_buffer = fd_fill_input_buffer;
    src->pub.skip_input_data = fd_skip_input_data;
    src->pub.resync_to_restart = jpeg_resync_to_restart;
    src->pub.term_source = fd_term_source;
    src->pub.next_input_byte = NULL;
    src->pub.bytes_in_buffer = 0;
    src->fd = fd;
    src->pos = 0;
    src->size = size;
    cinfo->src = &src->pub;
}

/// Product (0...255) of two 8-bit values scaled by 1/255, rounded as PIL does.
static inline int mul_div255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int dc_jpeg_decode(const dc_input *input, const dc_decode_options *options, dc_image *out,
                   char message[DC_MESSAGE_SIZE]) {
    memset(out, 0, sizeof *out);
    message[0] = 0;
    uint64_t max_pixels = options->max_pixels;
    int min_side = options->min_side;
    unsigned char head[3] = {0, 0, 0};
    if (input->data) {
        if (input->size >= 3) memcpy(head, input->data, 3);
    } else if (input->size >= 3) {
        ssize_t got;
        do got = pread(input->fd, head, 3, 0); while (got < 0 && errno == EINTR);
        if (got < 0) {
            snprintf(message, DC_MESSAGE_SIZE, "read failed: %s", strerror(errno));
            return DC_ERR_READ;
        }
    }
    if (input->size < 3 || head[0] != 0xFF || head[1] != 0xD8) {
        snprintf(message, DC_MESSAGE_SIZE, "not a JPEG file (no SOI marker)");
        return DC_ERR_CORRUPT;
    }
    struct jpeg_decompress_struct cinfo;
    error_manager err;
    struct jpeg_progress_mgr progress = {.progress_monitor = on_progress};
    fd_source *volatile source = NULL;
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile cmyk_row = NULL;
    unsigned char *volatile row = NULL;
    uint64_t *volatile sums = NULL;
    cinfo.err = &err.pub;
    install_error_manager(&err, message);
    if (setjmp(err.jump)) {
        free(pixels);
        free(cmyk_row);
        free(row);
        free(sums);
        jpeg_destroy_decompress(&cinfo);
        free(source);
        return err.code;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    if (input->data) {
        jpeg_mem_src(&cinfo, input->data, (unsigned long)input->size);
    } else {
        source = malloc(sizeof *source);
        if (!source) {
            jpeg_destroy_decompress(&cinfo);
            return DC_ERR_NOMEM;
        }
        set_fd_source(&cinfo, source, input->fd, input->size);
    }
    jpeg_read_header(&cinfo, TRUE);
    if ((uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        snprintf(message, DC_MESSAGE_SIZE, "the header claims %ux%u = %llu pixels, more than the limit of %llu",
                 cinfo.image_width, cinfo.image_height, (unsigned long long)cinfo.image_width * cinfo.image_height,
                 (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        free(source);
        return DC_ERR_TOO_LARGE;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (options->header_only) {
        out->width = out->source_width = (int)cinfo.image_width;
        out->height = out->source_height = (int)cinfo.image_height;
        out->pitch = 1;
        out->channels = cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
        out->bytes_per_sample = 1;
        jpeg_destroy_decompress(&cinfo);
        free(source);
        return DC_OK;
    }
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
    int source_width = (int)cinfo.image_width, source_height = (int)cinfo.image_height, scale = (int)cinfo.scale_denom;
    int channels = cmyk ? 3 : cinfo.output_components;
    if (channels != 1 && channels != 3) {
        snprintf(message, DC_MESSAGE_SIZE, "unsupported JPEG with %d components", cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        free(source);
        return DC_ERR_CORRUPT;
    }
    // Still much larger than wanted after DCT scaling: reduce rows as they arrive.
    int k = dc_reduce_factor(width, height, min_side);
    dc_reducer reducer;
    if (k > 1) {
        row = malloc((size_t)width * channels);
        if (row && dc_reducer_init(&reducer, width, height, channels, k) == 0) sums = reducer.sums;
    } else {
        pixels = malloc((size_t)width * height * channels);
    }
    if (cmyk) cmyk_row = malloc((size_t)width * 4);
    if ((k > 1 ? !sums : !pixels) || (cmyk && !cmyk_row)) {
        free(pixels);
        free(row);
        free(sums);
        free(cmyk_row);
        jpeg_destroy_decompress(&cinfo);
        free(source);
        snprintf(message, DC_MESSAGE_SIZE, "out of memory for %dx%d pixels", width, height);
        return DC_ERR_NOMEM;
    }
    // Adobe's CMYK JPEGs store inverted samples; libjpeg hands them over as stored.
    int inverted = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        unsigned char *target_row = k > 1 ? row : pixels + (size_t)y * width * channels;
        JSAMPROW target = cmyk ? cmyk_row : target_row;
        jpeg_read_scanlines(&cinfo, &target, 1);
        if (cmyk) {
            for (int x = 0; x < width; x++) {
                const unsigned char *s = cmyk_row + 4 * x;
                int kk = inverted ? 255 - s[3] : s[3];
                int nk = 255 - kk;
                for (int c = 0; c < 3; c++) {
                    int ink = inverted ? 255 - s[c] : s[c];
                    target_row[3 * x + c] = (unsigned char)(nk - mul_div255(ink, nk));
                }
            }
        }
        if (k > 1) dc_reducer_add(&reducer, target_row, 1, y, 0, 1, width);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(source);
    free(cmyk_row);
    out->channels = channels;
    out->source_width = source_width;
    out->source_height = source_height;
    out->pitch = scale * k;
    if (k > 1) {
        free(row);
        sums = NULL;
        if (dc_reducer_finish(&reducer, 255.0, out) != 0) {
            snprintf(message, DC_MESSAGE_SIZE, "out of memory for a %dx%d image reduced by %d", width, height, k);
            return DC_ERR_NOMEM;
        }
        return DC_OK;
    }
    out->width = width;
    out->height = height;
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
