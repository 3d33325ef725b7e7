"""disco's DiscoGAN networks as PyTorch modules, with the parameter and buffer names of disco's
model files, so that weights move both ways without renaming.

    from disco_torch import load_disco, save_disco
    model = load_disco("checkpoints/run/checkpoints/iter-00020000/model.safetensors")  # strict
    fake_b = model.G_AB(x_a)                       # x_a: [N, C, H, W] in [0, 1]
    save_disco(model, "from-torch.safetensors")    # `disco translate --checkpoint` reads it

The networks are those of Sources/DiscoGAN/Models.swift: 4x4 bias-free convolutions, stride 2,
padding 1; generator e1 conv C->64 LeakyReLU(0.2); e2 64->128, e3 128->256 (conv, BN, LeakyReLU);
at 64 px also e4 256->512, at 128 px also e5 512->512; then the mirror image of transposed
convolutions (d0, d1 where present, d2, d3 with BN and ReLU; d4 64->C with a sigmoid).
Discriminator c1 conv C->64 LeakyReLU; c2, c3 (and c4 at 64 px, c4b at 128 px) conv, BN,
LeakyReLU, whose outputs are the features; c5 a 4x4 valid convolution to one logit.
Conv2d weights are [out, in, kh, kw] and ConvTranspose2d weights [in, out, kh, kw], as PyTorch's.

Batch norm is PyTorch's (eps 1e-5, momentum 0.1) without the `num_batches_tracked` counter, which
disco neither uses (its momentum is fixed) nor writes, so `load_state_dict(..., strict=True)` holds
on disco's files exactly. (Files from disco before 2026-12, the default model among them, carry
the counter; `load_disco` drops it.)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

FORMAT = "disco-checkpoint-1"
SIZES = (32, 64, 128)


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d (eps 1e-5, momentum 0.1) without the num_batches_tracked buffer."""

    def __init__(self, channels):
        super().__init__(channels)
        self.register_buffer("num_batches_tracked", None)

    def _load_from_state_dict(self, *args, **kwargs):
        # _NormBase's version inserts a num_batches_tracked entry when the dict lacks one.
        nn.Module._load_from_state_dict(self, *args, **kwargs)


class Block(nn.Module):
    """A bias-free 4x4 convolution (or transposed convolution) with an optional batch norm `bn`.
    Names: `weight`, `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var`."""

    def __init__(self, cin, cout, bn, transposed=False, stride=2, padding=1):
        super().__init__()
        self.transposed, self.stride, self.padding = transposed, stride, padding
        self.weight = nn.Parameter(torch.empty((cin, cout, 4, 4) if transposed else (cout, cin, 4, 4)))
        nn.init.normal_(self.weight, 0.0, 0.02)
        self.bn = BatchNorm(cout) if bn else None

    def forward(self, x):
        conv = F.conv_transpose2d if self.transposed else F.conv2d
        y = conv(x, self.weight, stride=self.stride, padding=self.padding)
        return self.bn(y) if self.bn is not None else y


def _check(size, channels):
    if size not in SIZES:
        raise ValueError(f"size {size} is not one of {SIZES}")
    if channels not in (1, 3):
        raise ValueError(f"channels {channels} is not 1 or 3")


class Generator(nn.Module):
    def __init__(self, size=64, channels=3):
        super().__init__()
        _check(size, channels)
        enc = [("e1", channels, 64, False), ("e2", 64, 128, True), ("e3", 128, 256, True)]
        dec = [("d2", 256, 128), ("d3", 128, 64)]
        if size >= 64:
            enc.append(("e4", 256, 512, True))
            dec.insert(0, ("d1", 512, 256))
        if size >= 128:
            enc.append(("e5", 512, 512, True))
            dec.insert(0, ("d0", 512, 512))
        self.encoder = [name for name, *_ in enc]
        self.decoder = [name for name, *_ in dec] + ["d4"]
        for name, cin, cout, bn in enc:
            self.add_module(name, Block(cin, cout, bn))
        for name, cin, cout in dec:
            self.add_module(name, Block(cin, cout, True, transposed=True))
        self.add_module("d4", Block(64, channels, False, transposed=True))

    def forward(self, x):
        for name in self.encoder:
            x = F.leaky_relu(getattr(self, name)(x), 0.2)
        for name in self.decoder[:-1]:
            x = F.relu(getattr(self, name)(x))
        return torch.sigmoid(self.d4(x))


class Discriminator(nn.Module):
    """forward(x) -> (logits [N], features [f2, f3, ...]) as disco's feature-matching loss uses."""

    def __init__(self, size=64, channels=3):
        super().__init__()
        _check(size, channels)
        blocks = [("c1", channels, 64, False), ("c2", 64, 128, True), ("c3", 128, 256, True)]
        if size >= 64:
            blocks.append(("c4", 256, 512, True))
        if size >= 128:
            blocks.append(("c4b", 512, 512, True))
        self.names = [name for name, *_ in blocks]
        for name, cin, cout, bn in blocks:
            self.add_module(name, Block(cin, cout, bn))
        self.c5 = Block(blocks[-1][2], 1, False, stride=1, padding=0)

    def forward(self, x):
        features = []
        for k, name in enumerate(self.names):
            x = F.leaky_relu(getattr(self, name)(x), 0.2)
            if k > 0:
                features.append(x)
        return self.c5(x).view(-1), features


class DiscoGAN(nn.Module):
    """G_AB, G_BA, D_A, D_B; state_dict keys `G_AB.e1.weight`, ..., `D_B.c5.weight`.
    generators_only: G_AB and G_BA alone, as `disco export` writes them."""

    def __init__(self, size=64, channels=3, generators_only=False):
        super().__init__()
        self.size, self.channels = size, channels
        self.G_AB, self.G_BA = Generator(size, channels), Generator(size, channels)
        if not generators_only:
            self.D_A, self.D_B = Discriminator(size, channels), Discriminator(size, channels)


def load_disco(path, strict=True):
    """A DiscoGAN (eval mode) from a disco model file: size and channels from its metadata,
    generators only when the file holds no discriminators. Strict by default: every name and shape
    must match, or load_state_dict raises naming them."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r} (not a disco model file?)")
    state = {k: v for k, v in load_file(path).items() if not k.endswith(".num_batches_tracked")}
    model = DiscoGAN(int(meta["size"]), int(meta["channels"]),
                     generators_only=not any(k.startswith("D_") for k in state))
    model.load_state_dict(state, strict=strict)
    return model.eval()


def save_disco(model, path, iteration=0):
    """Writes `model` (a DiscoGAN of this module, or a bare Generator saved as G_AB) in disco's
    model-file format: float32 tensors, PyTorch layout, metadata format/size/channels/model/iteration."""
    if isinstance(model, Generator):
        size = 2 ** (len(model.encoder) + 2)
        channels = model.e1.weight.shape[1]
        state = {"G_AB." + k: v for k, v in model.state_dict().items()}
    else:
        size, channels = model.size, model.channels
        state = model.state_dict()
    tensors = {k: v.detach().to(torch.float32).contiguous().cpu() for k, v in state.items()}
    meta = {"format": FORMAT, "size": str(size), "channels": str(channels), "model": "discogan",
            "iteration": str(iteration)}
    save_file(tensors, path, metadata=meta)
