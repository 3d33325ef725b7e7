#!/usr/bin/env python3
"""Times torch_gan.py's MLP GAN iteration alone, on random data (no data loading), as
`disco bench gan --mlp-iterations N` times disco's: the same models, batch 500, one D step and
one G step per iteration. Prints milliseconds per iteration (mean, median, best) and seconds
per epoch extrapolated to Fashion-MNIST's 120 iterations. On a shared machine the best
iteration is the steadiest figure (it is what an iteration costs when nothing else runs).

    /tmp/torchenv/bin/python scripts/torch_gan_step_bench.py --threads 2 --iterations 200
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gan import MLPD, MLPG, d_loss, g_loss  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    if a.iterations < 1 or a.warmup < 0 or a.batch < 2:
        sys.exit("error: --iterations must be at least 1, --warmup at least 0, --batch at least 2")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    G, D = MLPG(64, 0), MLPD(0)
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(a.batch, 784)
    times = []
    for i in range(a.warmup + a.iterations):
        z = torch.randn(a.batch, 64)
        t = time.perf_counter()
        fake = G(z)
        optD.zero_grad(set_to_none=True)
        ld = d_loss("bce", D(real), D(fake.detach()))
        ld.backward()
        optD.step()
        optG.zero_grad(set_to_none=True)
        lg = g_loss("bce", "nonsaturating", D(fake))
        lg.backward()
        optG.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    ms = [1000 * t for t in times]
    print(f"torch mlp batch={a.batch} threads={a.threads} ms_per_iter mean={statistics.mean(ms):.2f} "
          f"median={statistics.median(ms):.2f} best={min(ms):.2f} sec_per_epoch={statistics.mean(ms) * 0.12:.2f} "
          f"(mean x 120 iterations) best_x120={min(ms) * 0.12:.2f}")


if __name__ == "__main__":
    main()
