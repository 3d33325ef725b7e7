"""PyTorch reference for one step of the MLP GAN (Goodfellow et al.; `MLPGAN` in
Sources/DiscoGAN/Toy.swift): G z(64) -> 128 ReLU -> 784 sigmoid, D 784 -> 128 ReLU -> 1 logit;
D's loss bce(D(x), 1) + bce(D(G(z)), 0), G's the non-saturating bce(D(G(z)), 1), means over a
batch of 8; all gradients at the initial weights. Writes mlpgan_step.safetensors.

Weights: the hash init of make_fixtures.py, (2u - 1) / sqrt(fan_in) for every weight and bias of
parameter number j (named_parameters order) with seed 21 (G) and 22 (D). Inputs: z = 2u - 1 with
j = 3000, x = u with j = 3001 (seed 23). Nothing else needs storing.

References are float64. Each gradient is stored sampled (256 evenly spaced elements, .idx /
.sample) with its L2 norm; each tolerance (tol.*, tol.*.norm) is 20x PyTorch's own float32-vs-float64
deviation, at least 1e-6 of the tensor's largest value (of the norm). The seed is the first (from 23 up) whose ReLU inputs all
lie farther from 0 than 20x PyTorch's float32-vs-float64 deviation in their layer, so no float32
implementation's rounding can flip a kink (`margin`: the closest one, in units of that bound).

    /tmp/torchenv/bin/python Tests/Fixtures/make_mlpgan_fixture.py
"""
import math
import os
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

N, Z, H, P = 8, 64, 128, 784


def hash_uniform(n, j, seed):
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64((j + 1) * 40503) + np.uint64(seed * 12345)) % np.uint64(2**32)
    return h.astype(np.float64) / 2.0**32


def mlp(sizes, out):
    layers = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(nn.ReLU() if k < len(sizes) - 2 else out)
    return nn.Sequential(*layers)


def hash_init(net, seed):
    with torch.no_grad():
        for j, (name, p) in enumerate(net.named_parameters()):
            layer = dict(net.named_modules())[name.rsplit(".", 1)[0]]
            u = hash_uniform(p.numel(), j, seed)
            p.copy_(torch.from_numpy((2 * u - 1) / math.sqrt(layer.in_features)).reshape(p.shape))


def run(dtype, seed):
    G = mlp([Z, H, P], nn.Sigmoid()).to(dtype)
    D = mlp([P, H, 1], nn.Identity()).to(dtype)
    hash_init(G, 21); hash_init(D, 22)
    G, D = G.to(dtype), D.to(dtype)
    z = torch.from_numpy(2 * hash_uniform(N * Z, 3000, seed) - 1).reshape(N, Z).to(dtype)
    x = torch.from_numpy(hash_uniform(N * P, 3001, seed)).reshape(N, P).to(dtype)
    pre = []
    hook = lambda m, i, o: pre.append(i[0].detach())
    for net in (G, D):
        for m in net:
            if isinstance(m, nn.ReLU):
                m.register_forward_hook(hook)
    out = {}
    fake = G(z).detach()
    lr, lf = D(x), D(fake)
    d_loss = F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
    d_loss.backward()
    out["d.loss"] = d_loss.detach().reshape(1)
    for n, p in D.named_parameters():
        out["d.grad." + n] = p.grad.detach().clone()
    D.zero_grad(); G.zero_grad()
    for p in D.parameters():
        p.requires_grad_(False)
    lg = D(G(z))
    g_loss = F.binary_cross_entropy_with_logits(lg, torch.ones_like(lg))
    g_loss.backward()
    out["g.loss"] = g_loss.detach().reshape(1)
    for n, p in G.named_parameters():
        out["g.grad." + n] = p.grad.detach().clone()
    return out, pre


def main():
    for seed in range(23, 200):
        ref, pre64 = run(torch.float64, seed)
        r32, pre32 = run(torch.float32, seed)
        # Each ReLU input must be farther from 0 than 20x float32's deviation in its layer.
        margin = min((a.abs().min() / (20 * (b.double() - a).abs().max())).item() for a, b in zip(pre64, pre32))
        if margin >= 1:
            break
    else:
        raise RuntimeError("no seed with every ReLU input clear of 0")
    d = {"seed": torch.tensor([seed], dtype=torch.int64), "margin": torch.tensor([margin], dtype=torch.float64)}
    for k, v in ref.items():
        dev = (r32[k].double() - v).abs().max().item()
        tol = max(20 * dev, 1e-6 * v.abs().max().item())
        flat = v.reshape(-1)
        n = flat.numel()
        idx = list(range(n)) if n <= 256 else [i * n // 256 for i in range(256)]
        d[k + ".idx"] = torch.tensor(idx, dtype=torch.int64)
        d[k + ".sample"] = flat[idx].to(torch.float32)
        d[k + ".norm"] = torch.tensor([flat.norm().item()], dtype=torch.float64)
        d["tol." + k] = torch.tensor([tol], dtype=torch.float64)
        norm_dev = abs(r32[k].double().norm().item() - flat.norm().item())
        d["tol." + k + ".norm"] = torch.tensor([max(20 * norm_dev, 1e-6 * flat.norm().item())], dtype=torch.float64)
        print(f"  {k}: n {n}, max {v.abs().max().item():.3e}, tol {tol:.2e}")
    save_file(d, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlpgan_step.safetensors"))
    print(f"seed {seed}: the closest ReLU input is {margin:.1f}x 20x its layer's float32 deviation from 0")


if __name__ == "__main__":
    main()
