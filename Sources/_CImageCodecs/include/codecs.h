// C shim around libpng and libjpeg for DiscoImage.
//
// Every libpng/libjpeg error exit (setjmp/longjmp) is caught here and becomes a return
// code plus a message; library warnings are silenced. Swift never sees a longjmp.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Return codes of every dc_* function.
enum {
    DC_OK = 0,
    DC_ERR_CORRUPT = 1,   ///< the data is not a valid image (message says why)
    DC_ERR_TOO_LARGE = 2, ///< the header claims more pixels than allowed; nothing was allocated for them
    DC_ERR_NOMEM = 3,     ///< an allocation failed
    DC_ERR_ARGUMENT = 4,  ///< bad arguments from the caller
};

/// A decoded image: `height` rows of `width` pixels of `channels` interleaved samples
/// (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), each `bytes_per_sample` bytes (1, or 2 for
/// 16-bit PNG in native byte order). `pixels` is malloc'd; release it with dc_free.
typedef struct {
    int width;
    int height;
    int channels;
    int bytes_per_sample;
    unsigned char *pixels;
} dc_image;

/// Size of the message buffers passed to the functions below.
#define DC_MESSAGE_SIZE 256

/// Decodes a PNG held in memory. Images with width*height > max_pixels are refused
/// (DC_ERR_TOO_LARGE) right after the header is read.
int dc_png_decode(const unsigned char *data, size_t size, uint64_t max_pixels,
                  dc_image *out, char message[DC_MESSAGE_SIZE]);

/// Decodes a JPEG held in memory to gray (1 channel) or RGB (3); CMYK/YCCK become RGB.
/// With min_side > 0, libjpeg's DCT scaling decodes at the smallest of 1/1, 1/2, 1/4, 1/8
/// of the full size whose shorter side is still at least min_side (much faster when the
/// caller shrinks the image anyway); 0 decodes at full size.
int dc_jpeg_decode(const unsigned char *data, size_t size, uint64_t max_pixels, int min_side,
                   dc_image *out, char message[DC_MESSAGE_SIZE]);

/// Encodes 8-bit pixels (channels 1..4) as PNG into a malloc'd buffer (*out, *out_size).
/// fast = 0: libpng's defaults (zlib level 6, adaptive filtering); fast = 1: zlib level 1 and
/// the Paeth filter on every row (several times faster, files a few percent larger).
int dc_png_encode(const unsigned char *pixels, int width, int height, int channels, int fast,
                  unsigned char **out, size_t *out_size, char message[DC_MESSAGE_SIZE]);

/// Encodes 8-bit gray (channels 1) or RGB (3) pixels as baseline JPEG at quality 1...100.
int dc_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                   unsigned char **out, size_t *out_size, char message[DC_MESSAGE_SIZE]);

/// Frees memory returned by the functions above.
void dc_free(void *p);

/// Bytes currently allocated through malloc (glibc mallinfo2), for leak checks in tests.
size_t dc_heap_bytes_in_use(void);

#ifdef __cplusplus
}
#endif
