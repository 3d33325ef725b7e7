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
    DC_ERR_READ = 5,      ///< reading the input file failed (message says why)
};

/// A decoded image: `height` rows of `width` pixels of `channels` interleaved samples
/// (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), each `bytes_per_sample` bytes: 1, 2 for 16-bit PNG
/// in native byte order, or 4 for a reduced image (float in [0, 1], colour not premultiplied).
/// `pixels` is malloc'd (NULL after a header-only decode); release it with dc_free.
typedef struct {
    int width;
    int height;
    int channels;
    int bytes_per_sample;
    unsigned char *pixels;
    /// The stored image's full size, and how many of its pixels one decoded pixel spans along
    /// each axis (JPEG DCT scale times reduction factor; 1 at full size): the decoded image
    /// covers source_width / pitch x source_height / pitch of its own pixels (the last row and
    /// column may be partial).
    int source_width;
    int source_height;
    int pitch;
} dc_image;

/// Size of the message buffers passed to the functions below.
#define DC_MESSAGE_SIZE 256

/// Encoded bytes to decode: `size` bytes at `data`, or, when `data` is NULL, read from the file
/// descriptor `fd` (from offset 0, with pread: the descriptor's offset is left alone) as
/// decoding proceeds, so the file is never held in memory.
typedef struct {
    const unsigned char *data;
    size_t size;
    int fd;
} dc_input;

/// An image is reduced while decoding when its shorter side is at least 2 * DC_REDUCE_GAP *
/// min_side: by k = shorter / (DC_REDUCE_GAP * min_side), so at least DC_REDUCE_GAP * min_side
/// pixels remain for the caller's own resize (PIL's "reducing gap": the box filter's error then
/// stays far below the 8-bit step).
#define DC_REDUCE_GAP 3

/// What to decode.
typedef struct {
    /// Images whose header claims more than width * height pixels are refused (DC_ERR_TOO_LARGE)
    /// before any pixel memory is allocated.
    uint64_t max_pixels;
    /// 0: full size. > 0: the caller will shrink the image so its shorter side is min_side. A JPEG
    /// is then decoded at the smallest 1/1, 1/2, 1/4, 1/8 scale that keeps the shorter side at
    /// least min_side (libjpeg's DCT scaling); then any image (PNG, or JPEG still large) is
    /// reduced by an integer factor k (dc_reduce_factor) as its rows are decoded: each output
    /// pixel is the mean of a k x k block (partial at the right and bottom edges), alpha-weighted
    /// when there is alpha (compositing the result equals the mean of the composited block). Only
    /// the reduced image is allocated: memory is a few rows plus the result, whatever the size.
    int min_side;
    /// Only read the header: width, height (full size) and channels; no pixels.
    int header_only;
} dc_decode_options;

/// The reduction factor for an image of width x height wanted at min_side (1: none).
int dc_reduce_factor(int width, int height, int min_side);

/// Decodes a PNG (8- or 16-bit, any colour type; palettes and tRNS become RGB(A), gray below 8
/// bits becomes 8-bit). Interlaced images are reduced pass by pass, without a full-size buffer.
int dc_png_decode(const dc_input *input, const dc_decode_options *options, dc_image *out,
                  char message[DC_MESSAGE_SIZE]);

/// Decodes a JPEG to gray (1 channel) or RGB (3); CMYK/YCCK become RGB. Progressive JPEGs
/// are decoded by libjpeg through a whole-image coefficient buffer (2 bytes per sample at full size).
int dc_jpeg_decode(const dc_input *input, const dc_decode_options *options, dc_image *out,
                   char message[DC_MESSAGE_SIZE]);

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
