"""Checks that a disco model file loads strictly in PyTorch and translates as disco does.

    /tmp/torchenv/bin/python scripts/check_pytorch_load.py MODEL.safetensors INPUT.png DISCO_OUTPUT.png [--direction a2b|b2a]

Loads the file with scripts/disco_torch.py (load_state_dict strict=True: every name and shape must
match), runs G_AB (or G_BA) in eval mode on INPUT, which must already be the model's size (disco
resizes other sizes with its own bicubic filter), and prints the largest pixel difference from
disco's output. Exits 1 above 2/255 (8-bit PNG rounding of both sides allows 1/255).
"""
import os
import sys
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from disco_torch import load_disco  # noqa: E402


def translate(model, path, direction="a2b"):
    C, size = model.channels, model.size
    img = Image.open(path).convert("L" if C == 1 else "RGB")
    if img.size != (size, size):
        raise SystemExit(f"{path}: {img.size[0]}x{img.size[1]}; pass an image of the model's size, {size}x{size}")
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).reshape(1, size, size, C).permute(0, 3, 1, 2)
    g = model.G_AB if direction == "a2b" else model.G_BA
    with torch.no_grad():
        return g(x)[0].permute(1, 2, 0).numpy()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--direction")]
    direction = "b2a" if "--direction=b2a" in sys.argv or ("--direction" in sys.argv and "b2a" in sys.argv) else "a2b"
    args = [a for a in args if a not in ("a2b", "b2a")]
    if len(args) != 3:
        raise SystemExit(__doc__)
    path, inp, out = args
    model = load_disco(path)
    y = translate(model, inp, direction)
    d = np.asarray(Image.open(out), dtype=np.float32).reshape(y.shape) / 255
    worst = float(np.abs(y - d).max())
    print(f"{path}: loaded strictly; max |pytorch - disco| = {worst:.5f} ({worst * 255:.2f}/255)")
    sys.exit(0 if worst <= 2 / 255 else 1)


if __name__ == "__main__":
    main()
