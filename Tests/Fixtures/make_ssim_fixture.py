"""SSIM reference values from an independent implementation: scikit-image's
structural_similarity (Gaussian window sigma 1.5, truncate 3.5 -> 11x11, K1 0.01, K2 0.03,
data range 1, population covariance), on textured image pairs. Writes ssim.safetensors:
pairN.x, pairN.y (H, W, C float32, in [0, 1]) and pairN.ssim (float64, one value).

    python3 -m venv /tmp/skenv && /tmp/skenv/bin/pip install scikit-image safetensors numpy
    /tmp/skenv/bin/python Tests/Fixtures/make_ssim_fixture.py
"""
import os
import numpy as np
from safetensors.numpy import save_file
from skimage.metrics import structural_similarity

rng = np.random.default_rng(20261202)


def texture(h, w, c):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, c))
    for k in range(c):
        f1, f2 = rng.uniform(0.2, 0.9, 2)
        out[..., k] = 0.5 + 0.25 * np.sin(f1 * xx + k) * np.cos(f2 * yy) + 0.15 * rng.standard_normal((h, w))
    return np.clip(out, 0, 1)


def pairs():
    # noisy copy, blurred copy, a different texture, a contrast change, shifted; colour and grey
    x = texture(24, 24, 3)
    yield x, np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    b = x.copy()
    b[1:-1, 1:-1] = (x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] + x[1:-1, 1:-1]) / 5
    yield x, b
    yield x, texture(24, 24, 3)
    g = texture(20, 31, 1)
    yield g, 0.3 + 0.4 * g
    yield g, np.roll(g, 2, axis=1)
    yield texture(11, 11, 1), texture(11, 11, 1)


def main():
    d = {}
    for n, (x, y) in enumerate(pairs()):
        x32, y32 = x.astype(np.float32), y.astype(np.float32)
        s = structural_similarity(x32.astype(np.float64), y32.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1.0, channel_axis=-1)
        d[f"pair{n}.x"], d[f"pair{n}.y"] = x32, y32
        d[f"pair{n}.ssim"] = np.array([s], dtype=np.float64)
        print(f"pair{n}: {x.shape} ssim {s:.6f}")
    save_file(d, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ssim.safetensors"))


if __name__ == "__main__":
    main()
