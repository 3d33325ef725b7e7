#!/usr/bin/env python3
"""The GAN family of `disco gan train`, in PyTorch, for timing beside disco and for scoring with
the same classifier (`disco gan eval --samples DIR`). The models follow the shared spec of
issue 11 (docs: README, `disco gan`):

--arch mlp   images as 784-vectors in [0, 1].
             G: z (64) [+ one-hot 10] -> Linear 128, ReLU -> Linear 784, sigmoid.
             D: 784 [+ one-hot 10] -> Linear 128, ReLU -> Linear 1 (logit).
             nn.Linear's default initialisation. Defaults: batch 500, lr 2e-4.
--arch dcgan images zero-padded 28 -> 32x32 (2 pixels each side, in [0, 1], so the padding is
             the black background), then mapped to [-1, 1]. Width w (--width, 32), 4x4 kernels,
             nz = 100.
             G: [nz (+10 one-hot)] x 1 x 1 -> ConvT(4w, k4 s1 p0) BN ReLU -> ConvT(2w, k4 s2 p1)
                BN ReLU -> ConvT(w) BN ReLU -> ConvT(1, k4 s2 p1) + bias, tanh       (1, 4, 8, 16, 32)
             D: [1 (+10 label planes: plane k all ones for label k)] x 32 x 32 -> Conv(w, k4 s2 p1)
                LeakyReLU 0.2 -> Conv(2w) BN LReLU -> Conv(4w) BN LReLU -> Conv(1, k4 s1 p0) + bias
                (the logit)                                                     (32, 16, 8, 4, 1)
             Biases only on the last layer of each network (zero-initialised); conv weights
             N(0, 0.02), BN gamma N(1, 0.02), beta 0 (Radford et al.). Defaults: batch 64, lr 2e-4.
--conditional (Mirza and Osindero): the label joins z and D's input as above; the fakes of each
             step carry the real batch's labels.
--loss bce   D: BCE-with-logits(D(x), 1) + BCE(D(G(z)), 0); G: BCE(D(G(z)), 1) (non-saturating),
             or with --g-loss minimax G minimises log(1 - D(G(z))) = -BCE(D(G(z)), 0).
--loss lsgan (Mao et al.) D: 0.5 mean((D(x) - 1)^2) + 0.5 mean(D(G(z))^2); G: 0.5 mean((D(G(z)) - 1)^2).
Adam betas (0.5, 0.999). Epoch = floor(N / batch) iterations over a seeded shuffle (the last
partial batch dropped); each iteration draws z ~ N(0, 1), takes one D step on the real batch and
G(z) (detached), then one G step on the same z.

Data: --data DIR, as `disco data fashion-mnist classes --out DIR` writes it: DIR/train/<k>-<name>/*.png
(DIR itself if it has no train/); labels = position of the folder name in the sorted list.

Samples: --samples-out DIR --count N writes N 28x28 PNGs from G in eval mode (BN running
statistics), the DCGAN's cropped back to the central 28x28 and mapped (y + 1) / 2; conditional:
N / 10 per class, in DIR/<k>-<name>/NNNNN.png (the class folder names of the data), so
`disco gan eval --samples DIR --real DATA/test` scores label accuracy; unconditional: DIR/NNNNN.png.

    /tmp/torchenv/bin/python scripts/torch_gan.py --data datasets/fashion --arch dcgan --conditional \\
        --epochs 10 --seed 1 --threads 2 --samples-out /tmp/torch-cdcgan --count 10000 --json
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


def load_classes(root):
    folder = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
    names = sorted(d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))
    if not names:
        sys.exit(f"error: --data {root}: no class folders (expected {folder}/<label>-<name>/*.png)")
    images, labels = [], []
    for k, name in enumerate(names):
        files = sorted(f for f in os.listdir(os.path.join(folder, name)) if f.lower().endswith((".png", ".jpg", ".jpeg")))
        if not files:
            sys.exit(f"error: {os.path.join(folder, name)}: no PNG or JPEG images")
        for f in files:
            im = Image.open(os.path.join(folder, name, f)).convert("L")
            if im.size != (28, 28):
                im = im.resize((28, 28), Image.BICUBIC)
            images.append(np.asarray(im, dtype=np.uint8))
            labels.append(k)
    x = torch.from_numpy(np.stack(images)).float().div_(255).unsqueeze(1)  # [N, 1, 28, 28] in [0, 1]
    return names, x, torch.tensor(labels, dtype=torch.long)


class MLPG(nn.Module):
    def __init__(self, nz, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(nz + classes, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid())

    def forward(self, z, onehot=None):
        return self.net(z if onehot is None else torch.cat([z, onehot], 1))


class MLPD(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784 + classes, 128), nn.ReLU(), nn.Linear(128, 1))

    def forward(self, x, onehot=None):
        return self.net(x if onehot is None else torch.cat([x, onehot], 1)).view(-1)


class DCG(nn.Module):
    def __init__(self, nz, classes, w):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz + classes, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
            nn.ConvTranspose2d(w, 1, 4, 2, 1, bias=True), nn.Tanh())

    def forward(self, z, onehot=None):
        h = z if onehot is None else torch.cat([z, onehot], 1)
        return self.net(h.view(h.shape[0], -1, 1, 1))


class DCD(nn.Module):
    def __init__(self, classes, w):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1 + classes, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * w, 1, 4, 1, 0, bias=True))

    def forward(self, x, onehot=None):
        if onehot is not None:
            x = torch.cat([x, onehot.view(*onehot.shape, 1, 1).expand(-1, -1, x.shape[2], x.shape[3])], 1)
        return self.net(x).view(-1)


def radford_init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def d_loss(loss, real, fake):
    if loss == "lsgan":
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def g_loss(loss, g_kind, fake):
    if loss == "lsgan":
        return 0.5 * ((fake - 1) ** 2).mean()
    if g_kind == "minimax":  # minimise log(1 - D(G(z))) = -BCE(D(G(z)), 0)
        return -F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--arch", choices=["mlp", "dcgan"], required=True)
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--loss", choices=["bce", "lsgan"], default="bce")
    p.add_argument("--g-loss", choices=["nonsaturating", "non-saturating", "minimax"], default="nonsaturating",
                   help="as disco gan train --g-loss (non-saturating is accepted too)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=None, help="default 500 (mlp), 64 (dcgan)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples-out", default=None)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    a = p.parse_args()
    if a.epochs < 1 or a.count < 1 or (a.batch is not None and a.batch < 2):
        sys.exit("error: --epochs and --count must be positive, --batch at least 2")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    batch = a.batch or (500 if a.arch == "mlp" else 64)

    t0 = time.time()
    names, x, y = load_classes(a.data)
    load_seconds = time.time() - t0
    classes = len(names) if a.conditional else 0
    if a.arch == "mlp":
        nz = 64
        data = x.view(x.shape[0], 784)
        G, D = MLPG(nz, classes), MLPD(classes)
    else:
        nz = 100
        data = F.pad(x, (2, 2, 2, 2)) * 2 - 1  # [N, 1, 32, 32] in [-1, 1], padding = background
        G, D = DCG(nz, classes, a.width), DCD(classes, a.width)
        G.apply(radford_init)
        D.apply(radford_init)
    optG = torch.optim.Adam(G.parameters(), lr=a.lr, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=a.lr, betas=(0.5, 0.999))
    if data.shape[0] < batch:
        sys.exit(f"error: --data {a.data}: {data.shape[0]} images, fewer than one batch ({batch})")

    gen = torch.Generator().manual_seed(a.seed)
    iters = data.shape[0] // batch
    epoch_seconds, last = [], {}
    for epoch in range(1, a.epochs + 1):
        start = time.time()
        order = torch.randperm(data.shape[0], generator=gen)
        for it in range(iters):
            idx = order[it * batch:(it + 1) * batch]
            real = data[idx]
            onehot = F.one_hot(y[idx], len(names)).float() if a.conditional else None
            z = torch.randn(batch, nz, generator=gen)
            fake = G(z, onehot)
            optD.zero_grad(set_to_none=True)
            dr, df = D(real, onehot), D(fake.detach(), onehot)
            ld = d_loss(a.loss, dr, df)
            ld.backward()
            optD.step()
            optG.zero_grad(set_to_none=True)
            dg = D(fake, onehot)
            lg = g_loss(a.loss, a.g_loss, dg)
            lg.backward()
            optG.step()
        sec = time.time() - start
        epoch_seconds.append(sec)
        last = {"d_loss": ld.item(), "g_loss": lg.item(), "d_real": torch.sigmoid(dr).mean().item() if a.loss == "bce" else dr.mean().item(),
                "d_fake": torch.sigmoid(df).mean().item() if a.loss == "bce" else df.mean().item()}
        # with --json, stdout holds the one JSON object and the progress goes to stderr
        print(f"epoch {epoch}/{a.epochs}  {sec:.2f} s  ({iters} iterations, {sec / iters * 1000:.1f} ms each)  "
              f"D loss {last['d_loss']:.4f}  G loss {last['g_loss']:.4f}", flush=True, file=sys.stderr if a.json else sys.stdout)

    written = 0
    if a.samples_out:
        G.eval()
        os.makedirs(a.samples_out, exist_ok=True)
        sgen = torch.Generator().manual_seed(a.seed + 1)
        with torch.no_grad():
            labels = torch.arange(a.count) % len(names) if a.conditional else None
            for s in range(0, a.count, 500):
                n = min(500, a.count - s)
                z = torch.randn(n, nz, generator=sgen)
                oh = F.one_hot(labels[s:s + n], len(names)).float() if a.conditional else None
                out = G(z, oh)
                if a.arch == "mlp":
                    img = out.view(n, 28, 28)
                else:
                    img = (out[:, 0, 2:30, 2:30] + 1) / 2
                pix = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                for i in range(n):
                    k = s + i
                    folder = os.path.join(a.samples_out, names[labels[k]]) if a.conditional else a.samples_out
                    os.makedirs(folder, exist_ok=True)
                    Image.fromarray(pix[i]).save(os.path.join(folder, f"{k + 1:05d}.png"))
                    written += 1

    result = {"arch": a.arch, "conditional": a.conditional, "loss": a.loss, "g_loss": a.g_loss, "epochs": a.epochs,
              "batch": batch, "lr": a.lr, "seed": a.seed, "threads": a.threads, "iterations_per_epoch": iters,
              "images": int(data.shape[0]), "classes": names, "load_seconds": load_seconds,
              "seconds_per_epoch": epoch_seconds, "mean_seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
              "last": last, "torch": torch.__version__}
    if a.arch == "dcgan":
        result["width"] = a.width
    if a.samples_out:
        result["samples_out"] = a.samples_out
        result["samples_written"] = written
    if a.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        print(f"mean {result['mean_seconds_per_epoch']:.2f} s per epoch" + (f"; wrote {written} samples to {a.samples_out}" if written else ""))


if __name__ == "__main__":
    main()
