"""Fréchet distance reference values from an independent implementation: pytorch-fid's formula
(calculate_frechet_distance) with scipy.linalg.sqrtm of the non-symmetric product S1 S2, in
float64, on feature sets stored as float32. Writes frechet.safetensors:
caseN.a [Na, D], caseN.b [Nb, D] (float32 features, rows = samples), caseN.fd (float64, one value),
caseN.mean_term, caseN.trace_sqrt (float64: |mu_a - mu_b|^2 and tr sqrtm(S_a S_b)).
Covariances are numpy.cov (unbiased, N - 1), as pytorch-fid and disco use.

    /tmp/torchenv/bin/python Tests/Fixtures/make_frechet_fixture.py
"""
import os
import numpy as np
from safetensors.numpy import save_file
from scipy import linalg

rng = np.random.default_rng(20261203)


def features(n, d, scale, shift):
    # correlated Gaussian-ish features with a skewed (ReLU-like) part, like classifier features
    mix = rng.standard_normal((d, d)) * scale / np.sqrt(d)
    x = rng.standard_normal((n, d)) @ mix + shift
    x[:, : d // 3] = np.maximum(x[:, : d // 3], 0)
    return x.astype(np.float32)


def frechet(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    assert np.all(np.isfinite(covmean)), "sqrtm not finite"
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-6), np.max(np.abs(covmean.imag))
        covmean = covmean.real
    diff = mu1 - mu2
    tr = float(np.trace(covmean))
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr), float(diff.dot(diff)), tr


def main():
    cases = [
        (features(400, 12, 1.0, 0.0), features(300, 12, 1.5, 0.3)),      # small, clearly different
        (features(300, 40, 2.0, 1.0), features(250, 40, 2.0, 1.0)),      # same scale and shift, other mixing
        (features(300, 48, 3.0, 0.5), features(280, 48, 1.0, -0.5)),     # larger, different scale
    ]
    d = {}
    for n, (a, b) in enumerate(cases):
        fd, mt, tr = frechet(a, b)
        d[f"case{n}.a"], d[f"case{n}.b"] = a, b
        d[f"case{n}.fd"] = np.array([fd], dtype=np.float64)
        d[f"case{n}.mean_term"] = np.array([mt], dtype=np.float64)
        d[f"case{n}.trace_sqrt"] = np.array([tr], dtype=np.float64)
        print(f"case{n}: a {a.shape} b {b.shape} fd {fd:.9g} mean term {mt:.6g} tr sqrt {tr:.9g}")
    save_file(d, os.path.join(os.path.dirname(os.path.abspath(__file__)), "frechet.safetensors"))


if __name__ == "__main__":
    main()
