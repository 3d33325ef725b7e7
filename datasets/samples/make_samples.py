"""Builds the tiny sample images in datasets/samples and the reference values the
DiscoImage tests compare against. Run with any Python that has Pillow and numpy:

    python datasets/samples/make_samples.py

PNGs are written by a small raw PNG writer below (so 16-bit RGB and Adam7 interlacing are
possible and pixel values are known in closed form, see pixel formulas in the tests); JPEGs
are written by Pillow, and their decoded values as Pillow sees them are stored in
expected/jpeg.json. expected/resize.json holds Pillow's float ("F" mode) resize results.
"""
import json, os, struct, zlib
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 9, 7  # odd, non-square: catches transposed axes and every Adam7 pass


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(rows, width, height, depth, color, interlace=False, palette=None, trns=None):
    """rows: function(x, y) -> tuple of samples. color: PNG colour type."""
    per_pixel = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]

    def scanline(xs, y):
        samples = [s for x in xs for s in rows(x, y)]
        if depth == 16:
            return b"".join(struct.pack(">H", s) for s in samples)
        if depth == 8:
            return bytes(samples)
        bits = "".join(format(s, "0%db" % depth) for s in samples)  # sub-byte depths
        bits += "0" * (-len(bits) % 8)
        return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))

    raw = b""
    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        for x0, y0, dx, dy in passes:
            xs = list(range(x0, width, dx))
            if not xs:
                continue
            for y in range(y0, height, dy):
                raw += b"\x00" + scanline(xs, y)
    else:
        for y in range(height):
            raw += b"\x00" + scanline(range(width), y)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, int(interlace)))
    if palette:
        out += chunk(b"PLTE", bytes(c for rgb in palette for c in rgb))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


# Closed-form pixel values (the Swift tests use the same formulas).
def gray8(x, y): return (x * 31 + y * 47 + 3) % 256
def rgb8(x, y): return ((x * 37 + y * 11) % 256, (x * 5 + y * 53 + 7) % 256, (x * y * 13 + 100) % 256)
def alpha8(x, y): return (x * 29 + y * 71 + 30) % 256
def gray16(x, y): return (x * 9001 + y * 3001 + 17) % 65536
def rgb16(x, y): return (gray16(x, y), (gray16(x, y) * 7 + 123) % 65536, (x * 4099 + y * 65011) % 65536)
PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 200, 10)]
def index2(x, y): return (x + 2 * y) % 4


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def make_pngs():
    write("gray8.png", png_bytes(lambda x, y: (gray8(x, y),), W, H, 8, 0))
    write("gray1.png", png_bytes(lambda x, y: ((x + y) % 2,), W, H, 1, 0))
    write("gray16.png", png_bytes(lambda x, y: (gray16(x, y),), W, H, 16, 0))
    write("gray-alpha8.png", png_bytes(lambda x, y: (gray8(x, y), alpha8(x, y)), W, H, 8, 4))
    write("rgb8.png", png_bytes(lambda x, y: rgb8(x, y), W, H, 8, 2))
    write("rgb16.png", png_bytes(lambda x, y: rgb16(x, y), W, H, 16, 2))
    write("rgba8.png", png_bytes(lambda x, y: rgb8(x, y) + (alpha8(x, y),), W, H, 8, 6))
    write("palette2.png", png_bytes(lambda x, y: (index2(x, y),), W, H, 2, 3, palette=PALETTE))
    write("palette-trns.png", png_bytes(lambda x, y: (index2(x, y),), W, H, 8, 3, palette=PALETTE, trns=bytes([255, 128, 0])))
    write("interlaced-rgb8.png", png_bytes(lambda x, y: rgb8(x, y), W, H, 8, 2, interlace=True))
    write("interlaced-gray16.png", png_bytes(lambda x, y: (gray16(x, y),), W, H, 16, 0, interlace=True))
    # Sanity: Pillow reads the 8-bit ones with the formulas' values.
    assert Image.open(os.path.join(HERE, "interlaced-rgb8.png")).getpixel((3, 5)) == rgb8(3, 5)
    assert Image.open(os.path.join(HERE, "rgba8.png")).getpixel((4, 2)) == rgb8(4, 2) + (alpha8(4, 2),)


def make_jpegs():
    yy, xx = np.mgrid[0:12, 0:16]
    rgb = np.stack([xx * 15, yy * 20, 255 - xx * 8 - yy * 6], axis=-1).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    path = lambda n: os.path.join(HERE, n)
    im.save(path("baseline.jpg"), quality=90)
    im.save(path("progressive.jpg"), quality=90, progressive=True)
    im.convert("L").save(path("gray.jpg"), quality=90)
    im.convert("CMYK").save(path("cmyk.jpg"), quality=95)  # Adobe marker, inverted samples
    expected = {}
    for name in ["baseline.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg"]:
        decoded = Image.open(path(name))
        decoded = decoded.convert("L" if decoded.mode == "L" else "RGB")
        a = np.asarray(decoded)
        expected[name] = {"width": decoded.width, "height": decoded.height,
                          "channels": 1 if a.ndim == 2 else 3, "pixels": a.reshape(-1).tolist()}
    expected["source_rgb"] = rgb.reshape(-1).tolist()
    with open(path("expected/jpeg.json"), "w") as f:
        json.dump(expected, f)


def make_broken():
    b = lambda n: os.path.join(HERE, "broken", n)
    good_png = open(os.path.join(HERE, "rgb8.png"), "rb").read()
    good_jpg = open(os.path.join(HERE, "baseline.jpg"), "rb").read()
    write("broken/empty.png", b"")
    write("broken/truncated.png", good_png[: len(good_png) * 6 // 10])
    write("broken/truncated.jpg", good_jpg[: len(good_jpg) * 6 // 10])
    bad = bytearray(good_png)
    idat = bad.index(b"IDAT")
    length = struct.unpack(">I", bad[idat - 4:idat])[0]
    bad[idat + 4 + length] ^= 0xFF  # the IDAT CRC no longer matches its (intact) data
    write("broken/bad-crc.png", bytes(bad))
    rng = np.random.default_rng(3)
    write("broken/garbage.jpg", b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    # Valid headers claiming 200000 x 200000 pixels (4e10 > the 1e8 default limit).
    ihdr = struct.pack(">IIBBBBB", 200000, 200000, 8, 2, 0, 0, 0)
    write("broken/huge.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)))
    huge = bytearray(good_jpg)
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    write("broken/huge.jpg", bytes(huge))
    write("broken/notes.txt", b"not an image\n")
    write("broken/text-named.png", b"this is text with a .png name\n")


def short(values):
    """float32 values as the shortest decimal that reads back as the same float32."""
    return [float("%.9g" % v) for v in values]


def make_resize_fixture():
    rng = np.random.default_rng(0)
    cases = []
    for (w, h), targets in [((13, 11), [(5, 4), (4, 9), (29, 23), (13, 6)]), ((24, 20), [(5, 4)])]:
        src = rng.random((h, w), dtype=np.float32)
        for filt, name in [(Image.BILINEAR, "bilinear"), (Image.BICUBIC, "bicubic"), (Image.LANCZOS, "lanczos")]:
            for tw, th in targets:
                out = np.asarray(Image.fromarray(src, "F").resize((tw, th), filt)).clip(0, 1)
                cases.append({"width": w, "height": h, "input": short(src.reshape(-1)), "filter": name,
                              "out_width": tw, "out_height": th, "output": short(out.reshape(-1))})
    with open(os.path.join(HERE, "expected/resize.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    make_pngs()
    make_jpegs()
    make_broken()
    make_resize_fixture()
