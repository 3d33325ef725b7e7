"""Checks that a disco model file loads in PyTorch and translates as disco does.

    /tmp/torchenv/bin/python scripts/check_pytorch_load.py MODEL.safetensors INPUT.png DISCO_OUTPUT.png

Builds the DiscoGAN generator in PyTorch with disco's parameter names, loads G_AB with
safetensors.torch.load_file, runs it in eval mode on INPUT (resized as disco does only when it is
already the model's size: pass an image of the model's size), and prints the largest pixel
difference from disco's own output (8-bit PNG rounding allows 1/255).
"""
import sys
import numpy as np
import torch, torch.nn as nn
from PIL import Image
from safetensors.torch import load_file

path, inp, out = sys.argv[1:4]
state = load_file(path)
g = {k[5:]: v for k, v in state.items() if k.startswith("G_AB.")}
C = g["e1.weight"].shape[1]
names = sorted({k.split(".")[0] for k in g})
enc = [n for n in ["e1", "e2", "e3", "e4", "e5"] if n in names]
dec = [n for n in ["d0", "d1", "d2", "d3", "d4"] if n in names]


class Block(nn.Module):
    def __init__(self, w, kind, bn, act):
        super().__init__()
        i, o = (w.shape[1], w.shape[0]) if kind == "conv" else (w.shape[0], w.shape[1])
        self.conv = (nn.Conv2d if kind == "conv" else nn.ConvTranspose2d)(i, o, 4, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(o) if bn else None
        self.act = act

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None: x = self.bn(x)
        return self.act(x)


blocks = nn.ModuleDict()
for n in enc: blocks[n] = Block(g[n + ".weight"], "conv", n != "e1", nn.LeakyReLU(0.2))
for n in dec: blocks[n] = Block(g[n + ".weight"], "deconv", n != "d4", nn.Sigmoid() if n == "d4" else nn.ReLU())
sd = {}
for k, v in g.items():
    n, rest = k.split(".", 1)
    sd[f"{n}.conv.weight" if rest == "weight" else f"{n}.{rest}"] = v
missing, unexpected = blocks.load_state_dict(sd, strict=False)
assert not unexpected and all(m.endswith("num_batches_tracked") for m in missing), (missing, unexpected)
blocks.eval()
x = np.asarray(Image.open(inp).convert("L" if C == 1 else "RGB"), dtype=np.float32) / 255
x = torch.from_numpy(x).reshape(1, *x.shape[:2], C).permute(0, 3, 1, 2)
with torch.no_grad():
    for n in enc + dec: x = blocks[n](x)
y = x[0].permute(1, 2, 0).numpy()
d = np.asarray(Image.open(out), dtype=np.float32).reshape(y.shape) / 255
print(f"loaded {len(g)} G_AB tensors; max |pytorch - disco| = {np.abs(y - d).max():.5f}")
