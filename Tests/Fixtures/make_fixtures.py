"""Reference fixtures for disco's Swift tests, computed with PyTorch (CPU).

Run (from the repository root):

    /tmp/torchenv/bin/python Tests/Fixtures/make_fixtures.py

Writes, next to this script (Tests/Fixtures/):

    conv.safetensors            Conv2d forward/backward, 11 configurations
    convtranspose.safetensors   ConvTranspose2d forward/backward, 11 configurations
    batchnorm.safetensors       BatchNorm2d train/eval, running statistics (1 and 2 forwards)
    ops.safetensors             LeakyReLU/ReLU/Sigmoid/Tanh, BCE-with-logits, MSE, L1, LSGAN, feature matching
    adam.safetensors            torch.optim.Adam (L2 weight decay), 3 steps, 2 hyperparameter sets
    generator64.safetensors     64x64 generator (C=3, hash seed 1), train mode, forward + backward
    discriminator64.safetensors 64x64 discriminator (C=3, hash seed 2), train mode, forward + backward
    twice32.safetensors         32x32 generator (C=1, hash seed 3) applied twice in one loss
    steps32.safetensors         one D step then one G step of the reference "tuned" schedule at 32x32

Key lists, layouts and the hash init are documented in Tests/Fixtures/README.md.

Conventions: every tensor in PyTorch's own layout (NCHW activations, Conv2d weight
[out,in,kh,kw], ConvTranspose2d weight [in,out,kh,kw]), float32; integer configuration in
int64; hyperparameters in float64. Computation is float32 on one thread except where a
float64 reference is noted (BCE). Each file starts from torch.manual_seed(0), so every file
is reproducible on its own and the script is deterministic (the script checks this itself by
comparing against a second in-memory run of the cheap files; see --check-determinism).

Hash init (so that the networks' big weights need not be stored): parameter number j (in the
network's parameter list, see PARAM ORDER below) with per-network integer `seed` is filled,
in flat row-major order i = 0..n-1, by

    u = ((i * 2654435761 + (j + 1) * 40503 + seed * 12345) mod 2**32) / 2**32

(exact integer arithmetic, then float64 division), then
    conv / transposed-conv weight:  w = (2u - 1) / sqrt(fan_in),  fan_in = shape[1] * kh * kw
                                    (PyTorch's rule; for ConvTranspose2d shape[1] = out channels)
    BatchNorm weight:               1 + 0.1 (2u - 1)
    BatchNorm bias:                 0.1 (2u - 1)
and converted to float32 at the end. Running statistics start at PyTorch's defaults (0, 1).

Sampled storage of a big tensor of n elements: idx = [k*n // 256 for k in range(256)] if
n > 256 else range(n); keys NAME.idx (int64), NAME.sample (float32), and for gradients
NAME.norm (float32 [1], L2 norm of the whole tensor, computed in float64). Tensors with
n <= 4096 are stored whole as well (under NAME).
"""
import hashlib
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

OUT = os.path.dirname(os.path.abspath(__file__))
SMALL = 4096
NSAMPLE = 256

# --------------------------------------------------------------------------- helpers


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def i64(values):
    return torch.tensor(list(values), dtype=torch.int64)


def scalar(v):
    return torch.tensor([float(v)], dtype=torch.float32)


def sample_idx(n):
    if n <= NSAMPLE:
        return list(range(n))
    return [k * n // NSAMPLE for k in range(NSAMPLE)]


def put_sampled(d, name, t, norm=False, whole_if_small=True):
    """NAME.idx / NAME.sample (and NAME.norm), plus NAME whole when n <= 4096."""
    t = t.detach()
    flat = t.reshape(-1)
    idx = sample_idx(flat.numel())
    d[name + ".idx"] = i64(idx)
    d[name + ".sample"] = f32(flat[torch.tensor(idx, dtype=torch.int64)])
    if norm:
        d[name + ".norm"] = scalar(flat.double().norm().item())
    if whole_if_small and flat.numel() <= SMALL:
        d[name] = f32(t)


def hash_uniform(n, j, seed):
    """u_i for i = 0..n-1 (float64), exact integer arithmetic in uint64."""
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64((j + 1) * 40503) + np.uint64(seed * 12345)) % np.uint64(2**32)
    return h.astype(np.float64) / 2.0**32


def hash_uniform_reference(i, j, seed):
    """The same with Python's unbounded ints (independent route for the self-check)."""
    return ((i * 2654435761 + (j + 1) * 40503 + seed * 12345) % 2**32) / 2**32


def hash_init(net, seed):
    """Fills net's parameters by the hash init (see module docstring); running stats stay (0, 1)."""
    with torch.no_grad():
        for j, (name, p) in enumerate(net.named_parameters()):
            u = hash_uniform(p.numel(), j, seed)
            if name.endswith("bn.weight"):
                v = 1 + 0.1 * (2 * u - 1)
            elif name.endswith("bn.bias"):
                v = 0.1 * (2 * u - 1)
            else:
                assert p.dim() == 4, name
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                v = (2 * u - 1) / math.sqrt(fan_in)
            p.copy_(torch.from_numpy(v.reshape(tuple(p.shape))).to(torch.float32))


def save(name, d):
    for k, v in d.items():
        assert isinstance(k, str) and k.isascii(), k
        assert v.dtype in (torch.float32, torch.int64, torch.float64), (k, v.dtype)
        assert v.is_contiguous(), k
    path = os.path.join(OUT, name)
    save_file(dict(sorted(d.items())), path)
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:16]
    print(f"wrote {name}: {len(d)} tensors, {os.path.getsize(path)} bytes, sha256 {digest}")
    return d


# --------------------------------------------------------------------------- reference networks


class Block(nn.Module):
    """A 4x4 (by default) bias-free conv or transposed conv with an optional BatchNorm2d `bn`.

    Parameter names: `weight`, then `bn.weight`, `bn.bias` (PyTorch registration order)."""

    def __init__(self, cin, cout, bn, transposed=False, k=4, stride=2, pad=1):
        super().__init__()
        self.transposed, self.stride, self.pad = transposed, stride, pad
        shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        self.weight = nn.Parameter(torch.zeros(shape))
        if bn:
            self.bn = nn.BatchNorm2d(cout)
        else:
            self.bn = None

    def forward(self, x):
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, stride=self.stride, padding=self.pad)
        else:
            y = F.conv2d(x, self.weight, stride=self.stride, padding=self.pad)
        return self.bn(y) if self.bn is not None else y


class Generator(nn.Module):
    """64x64: e1..e4, d1..d4.  32x32: e1, e2, e3, d2, d3, d4 (e4 and d1 absent)."""

    def __init__(self, size, C):
        super().__init__()
        self.size = size
        self.e1 = Block(C, 64, bn=False)
        self.e2 = Block(64, 128, bn=True)
        self.e3 = Block(128, 256, bn=True)
        if size == 64:
            self.e4 = Block(256, 512, bn=True)
            self.d1 = Block(512, 256, bn=True, transposed=True)
        self.d2 = Block(256, 128, bn=True, transposed=True)
        self.d3 = Block(128, 64, bn=True, transposed=True)
        self.d4 = Block(64, C, bn=False, transposed=True)

    def forward(self, x):
        lr = lambda t: F.leaky_relu(t, 0.2)
        h = lr(self.e1(x))
        h = lr(self.e2(h))
        h = lr(self.e3(h))
        if self.size == 64:
            h = lr(self.e4(h))
            h = F.relu(self.d1(h))
        h = F.relu(self.d2(h))
        h = F.relu(self.d3(h))
        return torch.sigmoid(self.d4(h))


class Discriminator(nn.Module):
    """64x64: c1..c4 then c5 (512->1, 4x4 valid) -> logits, features [f2, f3, f4].
    32x32: c1..c3 then c5 (256->1) -> logits, features [f2, f3]."""

    def __init__(self, size, C):
        super().__init__()
        self.size = size
        self.c1 = Block(C, 64, bn=False)
        self.c2 = Block(64, 128, bn=True)
        self.c3 = Block(128, 256, bn=True)
        if size == 64:
            self.c4 = Block(256, 512, bn=True)
        self.c5 = Block(512 if size == 64 else 256, 1, bn=False, k=4, stride=1, pad=0)

    def forward(self, x):
        lr = lambda t: F.leaky_relu(t, 0.2)
        h = lr(self.c1(x))
        f2 = lr(self.c2(h))
        f3 = lr(self.c3(f2))
        feats = [f2, f3]
        h = f3
        if self.size == 64:
            f4 = lr(self.c4(f3))
            feats.append(f4)
            h = f4
        return self.c5(h).view(-1), feats


G64_ORDER = ["e1.weight", "e2.weight", "e2.bn.weight", "e2.bn.bias", "e3.weight", "e3.bn.weight", "e3.bn.bias",
             "e4.weight", "e4.bn.weight", "e4.bn.bias", "d1.weight", "d1.bn.weight", "d1.bn.bias", "d2.weight",
             "d2.bn.weight", "d2.bn.bias", "d3.weight", "d3.bn.weight", "d3.bn.bias", "d4.weight"]
D64_ORDER = ["c1.weight", "c2.weight", "c2.bn.weight", "c2.bn.bias", "c3.weight", "c3.bn.weight", "c3.bn.bias",
             "c4.weight", "c4.bn.weight", "c4.bn.bias", "c5.weight"]


def check_param_order():
    g64 = [n for n, _ in Generator(64, 3).named_parameters()]
    assert g64 == G64_ORDER, g64
    g32 = [n for n, _ in Generator(32, 1).named_parameters()]
    assert g32 == [n for n in G64_ORDER if not n.startswith(("e4.", "d1."))], g32
    d64 = [n for n, _ in Discriminator(64, 3).named_parameters()]
    assert d64 == D64_ORDER, d64
    d32 = [n for n, _ in Discriminator(32, 1).named_parameters()]
    assert d32 == [n for n in D64_ORDER if not n.startswith("c4.")], d32


def running_stats(net):
    return {n: t for n, t in net.state_dict().items() if n.endswith(("running_mean", "running_var"))}


def fm_loss(real, fake):
    return sum(F.mse_loss(f.mean(0), r.mean(0)) for r, f in zip(real, fake))


bce = F.binary_cross_entropy_with_logits

# --------------------------------------------------------------------------- 1, 2: conv / transposed conv

# [N, Cin, H, W, Cout, k, stride, pad]; for the transposed conv H, W are its *input* size.
CONV_CFGS = [
    [2, 3, 8, 6, 4, 4, 2, 1],
    [2, 2, 7, 9, 3, 4, 1, 0],
    [2, 5, 5, 7, 6, 1, 1, 0],
    [2, 4, 6, 5, 2, 3, 1, 1],
    [2, 1, 9, 11, 8, 3, 2, 1],
    [2, 3, 10, 7, 5, 5, 1, 2],
    [2, 6, 11, 8, 4, 5, 3, 2],
    [2, 8, 9, 10, 1, 3, 3, 0],
    [2, 2, 5, 8, 7, 4, 3, 1],
    [2, 3, 6, 9, 2, 4, 2, 2],
    [2, 4, 7, 5, 3, 1, 2, 0],
]
DECONV_CFGS = [
    [2, 3, 5, 7, 4, 4, 2, 1],
    [2, 2, 6, 5, 3, 4, 1, 0],
    [2, 5, 5, 7, 6, 1, 1, 0],
    [2, 4, 6, 5, 2, 3, 1, 1],
    [2, 1, 5, 6, 8, 3, 2, 1],
    [2, 3, 10, 7, 5, 5, 1, 2],
    [2, 6, 5, 6, 4, 5, 3, 2],
    [2, 8, 5, 7, 1, 3, 3, 0],
    [2, 2, 6, 5, 7, 4, 3, 1],
    [2, 3, 7, 5, 2, 5, 2, 2],
    [2, 4, 5, 6, 3, 1, 2, 0],
]


def conv_case(cfg, transposed, dtype=torch.float32):
    N, Cin, H, W, Cout, k, s, p = cfg
    x = torch.randn(N, Cin, H, W, dtype=dtype, requires_grad=True)
    wshape = (Cin, Cout, k, k) if transposed else (Cout, Cin, k, k)
    w = torch.randn(*wshape, dtype=dtype, requires_grad=True)
    op = F.conv_transpose2d if transposed else F.conv2d
    y = op(x, w, stride=s, padding=p)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    return x, w, y, dy, x.grad, w.grad


def make_conv(transposed):
    torch.manual_seed(0)
    d = {}
    prefix = "deconv" if transposed else "conv"
    op = F.conv_transpose2d if transposed else F.conv2d
    for i, cfg in enumerate(DECONV_CFGS if transposed else CONV_CFGS):
        x, w, y, dy, dx, dw = conv_case(cfg, transposed)
        N, Cin, H, W, Cout, k, s, p = cfg
        # independent float64 check of the float32 reference (forward and both gradients)
        x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        y64 = op(x64, w64, stride=s, padding=p)
        (y64 * dy.double()).sum().backward()
        for a, b in ((y, y64), (dx, x64.grad), (dw, w64.grad)):
            err = (a.double() - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
            assert err < 1e-5, (prefix, i, err)
        if transposed:
            assert y.shape[2] == (H - 1) * s - 2 * p + k and y.shape[3] == (W - 1) * s - 2 * p + k
        d[f"{prefix}{i}.cfg"] = i64(cfg)
        d[f"{prefix}{i}.x"] = f32(x)
        d[f"{prefix}{i}.w"] = f32(w)
        d[f"{prefix}{i}.y"] = f32(y)
        d[f"{prefix}{i}.dy"] = f32(dy)
        d[f"{prefix}{i}.dx"] = f32(dx)
        d[f"{prefix}{i}.dw"] = f32(dw)
    return d


def gradcheck_convs():
    """torch.autograd.gradcheck in float64 on small conv and transposed-conv configs."""
    torch.manual_seed(123)
    for cfg, transposed in ((CONV_CFGS[0], False), (CONV_CFGS[6], False), (DECONV_CFGS[0], True), (DECONV_CFGS[6], True)):
        N, Cin, H, W, Cout, k, s, p = cfg
        x = torch.randn(1, Cin, H, W, dtype=torch.float64, requires_grad=True)
        wshape = (Cin, Cout, k, k) if transposed else (Cout, Cin, k, k)
        w = torch.randn(*wshape, dtype=torch.float64, requires_grad=True)
        op = F.conv_transpose2d if transposed else F.conv2d
        assert torch.autograd.gradcheck(lambda a, b: op(a, b, stride=s, padding=p), (x, w))
    print("gradcheck (float64) conv/convT: ok")


# --------------------------------------------------------------------------- 3: batch norm


def make_batchnorm():
    torch.manual_seed(0)
    d = {}
    C = 5
    bn = nn.BatchNorm2d(C)
    with torch.no_grad():
        bn.weight.copy_(1 + 0.5 * torch.randn(C))
        bn.bias.copy_(0.5 * torch.randn(C))
    x = (torch.randn(4, C, 3, 6) * 2 + 0.7).requires_grad_()
    bn.train()
    y = bn(x)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    x2 = torch.randn(3, C, 4, 5) * 1.5 - 0.3
    bn.eval()
    with torch.no_grad():
        y2 = bn(x2)
    d.update({"bn.hparams": torch.tensor([bn.eps, bn.momentum], dtype=torch.float64),
              "bn.x": f32(x), "bn.gamma": f32(bn.weight), "bn.beta": f32(bn.bias), "bn.y": f32(y),
              "bn.dy": f32(dy), "bn.dx": f32(x.grad), "bn.dgamma": f32(bn.weight.grad), "bn.dbeta": f32(bn.bias.grad),
              "bn.running_mean": f32(bn.running_mean), "bn.running_var": f32(bn.running_var),
              "bn.x2": f32(x2), "bn.y2": f32(y2)})
    # independent float64 check (biased variance for normalising, unbiased for running_var)
    xd = x.detach().double()
    m = xd.mean((0, 2, 3))
    v = xd.var((0, 2, 3), unbiased=False)
    n = xd.numel() // C
    xh = (xd - m[None, :, None, None]) / torch.sqrt(v[None, :, None, None] + bn.eps)
    yd = xh * bn.weight.double()[None, :, None, None] + bn.bias.double()[None, :, None, None]
    assert (yd - y.double()).abs().max() < 1e-5
    g = dy.double() * bn.weight.double()[None, :, None, None]
    dxd = (g - g.mean((0, 2, 3), keepdim=True) - xh * (g * xh).mean((0, 2, 3), keepdim=True)) / torch.sqrt(v + bn.eps)[None, :, None, None]
    assert (dxd - x.grad.double()).abs().max() < 1e-4 * dxd.abs().max()
    assert (0.9 * 0 + 0.1 * m - bn.running_mean.double()).abs().max() < 1e-6
    assert (0.9 * 1 + 0.1 * v * n / (n - 1) - bn.running_var.double()).abs().max() < 1e-6
    # two train-mode forwards (different shapes) from (0, 1): momentum accumulation
    bn2 = nn.BatchNorm2d(C)
    xa = torch.randn(4, C, 3, 6) * 2 + 0.7
    xb = torch.randn(3, C, 2, 7) * 0.5 - 1.2
    with torch.no_grad():
        bn2(xa)
        bn2(xb)
    rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for t in (xa, xb):
        t = t.double()
        nn_ = t.numel() // C
        rm = 0.9 * rm + 0.1 * t.mean((0, 2, 3))
        rv = 0.9 * rv + 0.1 * t.var((0, 2, 3), unbiased=False) * nn_ / (nn_ - 1)
    assert (rm - bn2.running_mean.double()).abs().max() < 1e-6 and (rv - bn2.running_var.double()).abs().max() < 1e-6
    d.update({"bn2.xa": f32(xa), "bn2.xb": f32(xb),
              "bn2.running_mean": f32(bn2.running_mean), "bn2.running_var": f32(bn2.running_var)})
    return d


# --------------------------------------------------------------------------- 4: ops and losses


def make_ops():
    torch.manual_seed(0)
    d = {}
    acts = {"lrelu": lambda t: F.leaky_relu(t, 0.2), "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    for name, fn in acts.items():
        x = (torch.randn(4, 6) * 3)
        assert (x != 0).all()
        x.requires_grad_()
        y = fn(x)
        dy = torch.randn_like(y)
        (y * dy).sum().backward()
        d.update({f"{name}.x": f32(x), f"{name}.y": f32(y), f"{name}.dy": f32(dy), f"{name}.dx": f32(x.grad)})
    # BCE with logits, mean reduction; reference in float64
    logits = torch.tensor([-100.0, -30.0, -2.5, 0.0, 1.3, 30.0, 100.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    loss = bce(logits, target)
    loss.backward()
    # independent route: softplus form, gradient (sigmoid(x) - t) / n
    xs = logits.detach()
    ref = torch.mean(torch.clamp(xs, min=0) - xs * target + torch.log1p(torch.exp(-xs.abs())))
    assert abs(ref.item() - loss.item()) < 1e-12
    assert (logits.grad - (torch.sigmoid(xs) - target) / 7).abs().max() < 1e-15
    d.update({"bce.logits": f32(logits), "bce.target": f32(target), "bce.loss": scalar(loss.item()),
              "bce.grad": f32(logits.grad)})
    # MSE and L1 (mean) on [3, 4]
    x = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4)
    loss = F.mse_loss(x, t)
    loss.backward()
    assert (x.grad - 2 * (x.detach() - t) / 12).abs().max() < 1e-7
    d.update({"mse.x": f32(x), "mse.t": f32(t), "mse.loss": scalar(loss.item()), "mse.grad": f32(x.grad)})
    x = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4)
    assert ((x - t).abs() > 1e-3).all()
    loss = F.l1_loss(x, t)
    loss.backward()
    assert (x.grad - torch.sign(x.detach() - t) / 12).abs().max() < 1e-9
    d.update({"l1.x": f32(x), "l1.t": f32(t), "l1.loss": scalar(loss.item()), "l1.grad": f32(x.grad)})
    # LSGAN: mean((x - t)^2), t = 1 (lsgan1) and t = 0 (lsgan0), logits [6]
    for tv in (1, 0):
        x = (torch.randn(6) * 2).requires_grad_()
        loss = torch.mean((x - tv) ** 2)
        loss.backward()
        d.update({f"lsgan{tv}.x": f32(x), f"lsgan{tv}.loss": scalar(loss.item()), f"lsgan{tv}.grad": f32(x.grad)})
    # feature matching: sum_i mse(fake_i.mean(0), real_i.mean(0))
    r2 = torch.randn(4, 3, 5, 5, requires_grad=True)
    r3 = torch.randn(4, 2, 3, 3, requires_grad=True)
    f2_ = torch.randn(4, 3, 5, 5, requires_grad=True)
    f3_ = torch.randn(4, 2, 3, 3, requires_grad=True)
    loss = fm_loss([r2, r3], [f2_, f3_])
    loss.backward()
    # independent route: d/dfake_i = 2 (mean_f - mean_r) / (numel per sample) / N, broadcast over the batch
    for r, f in ((r2, f2_), (r3, f3_)):
        diff = f.detach().mean(0) - r.detach().mean(0)
        g = (2 * diff / diff.numel() / f.shape[0]).expand_as(f)
        assert (f.grad - g).abs().max() < 1e-7 and (r.grad + g).abs().max() < 1e-7
    d.update({"fm.real2": f32(r2), "fm.real3": f32(r3), "fm.fake2": f32(f2_), "fm.fake3": f32(f3_),
              "fm.loss": scalar(loss.item()), "fm.dfake2": f32(f2_.grad), "fm.dfake3": f32(f3_.grad),
              "fm.dreal2": f32(r2.grad), "fm.dreal3": f32(r3.grad)})
    return d


# --------------------------------------------------------------------------- 5: Adam


def make_adam():
    torch.manual_seed(0)
    d = {}
    cases = [(2e-4, 0.5, 0.999, 1e-8, 1e-5), (1e-2, 0.9, 0.99, 1e-8, 0.1)]
    for ci, (lr, b1, b2, eps, wd) in enumerate(cases):
        p0 = torch.randn(37)
        grads = torch.randn(3, 37)
        p = nn.Parameter(p0.clone())
        opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
        after = []
        for s in range(3):
            p.grad = grads[s].clone()
            opt.step()
            after.append(p.detach().clone())
        after = torch.stack(after)
        # independent float64 Adam (L2 weight decay added to the gradient, bias-corrected)
        q = p0.double()
        m = torch.zeros(37, dtype=torch.float64)
        v = torch.zeros(37, dtype=torch.float64)
        for s in range(3):
            g = grads[s].double() + wd * q
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mh = m / (1 - b1 ** (s + 1))
            vh = v / (1 - b2 ** (s + 1))
            q = q - lr * mh / (vh.sqrt() + eps)
            assert (q - after[s].double()).abs().max() < 1e-6 * max(1.0, lr * 100), (ci, s)
        d.update({f"adam{ci}.hparams": torch.tensor([lr, b1, b2, eps, wd], dtype=torch.float64),
                  f"adam{ci}.param": f32(p0), f"adam{ci}.grads": f32(grads), f"adam{ci}.after": f32(after)})
    return d


# --------------------------------------------------------------------------- 6-8: networks


KINK_MARGIN = 1e-6


def kink_margin(net, run):
    """min over every (leaky-)ReLU input of |v| / max|v| (per layer and call), in a float64 copy of net."""
    n64 = type(net)(net.size, net.e1.weight.shape[1] if hasattr(net, "e1") else net.c1.weight.shape[1])
    n64.load_state_dict(net.state_dict())
    n64 = n64.double().train()
    margins = []
    last = "d4" if isinstance(net, Generator) else "c5"
    for name, m in n64.named_children():
        if name != last:
            m.register_forward_hook(lambda mod, i, o: margins.append((o.abs().min() / o.abs().max()).item()))
    with torch.no_grad():
        run(n64)
    return min(margins)


def draw_input(net, shape, run):
    """torch.rand(shape) draws from the current stream until no (leaky-)ReLU input of the float64
    forward lies within KINK_MARGIN * max|v| of the kink (a float32 implementation could land on the
    other side of such a kink and see a ~1e-2 relative change in the gradients). Deterministic."""
    for attempt in range(200):
        x = torch.rand(*shape)
        m = kink_margin(net, lambda n64: run(n64, x.double()))
        if m >= KINK_MARGIN:
            print(f"  input draw {attempt} accepted (min kink margin {m:.2e})")
            return x, attempt, m
    raise RuntimeError("no well-conditioned input")


def make_generator64():
    torch.manual_seed(0)
    g = Generator(64, 3)
    hash_init(g, 1)
    g.train()
    x, attempt, margin = draw_input(g, (2, 3, 64, 64), lambda n, t: n(t))
    x.requires_grad_()
    y = g(x)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    d = {"x": f32(x), "y": f32(y), "dy": f32(dy), "dx": f32(x.grad)}
    d["input_draw"] = i64([attempt])
    d["kink_margin"] = scalar(margin)
    for n, p in g.named_parameters():
        put_sampled(d, "grad." + n, p.grad, norm=True)
    for n, t in running_stats(g).items():
        d[n] = f32(t)
    precision_report("generator64", g, x, dy, lambda net, inp: net(inp), lambda out, up: (out * up).sum())
    return d


def make_discriminator64():
    torch.manual_seed(0)
    D = Discriminator(64, 3)
    hash_init(D, 2)
    D.train()
    x, attempt, margin = draw_input(D, (2, 3, 64, 64), lambda n, t: n(t))
    x.requires_grad_()
    logits, (f2, f3, f4) = D(x)
    dl = torch.randn_like(logits)
    df2, df3, df4 = torch.randn_like(f2), torch.randn_like(f3), torch.randn_like(f4)
    loss = (logits * dl).sum() + (f2 * df2).sum() + (f3 * df3).sum() + (f4 * df4).sum()
    loss.backward()
    d = {"x": f32(x), "logits": f32(logits), "f2": f32(f2), "f3": f32(f3), "f4": f32(f4),
         "dlogits": f32(dl), "df2": f32(df2), "df3": f32(df3), "df4": f32(df4), "dx": f32(x.grad)}
    d["input_draw"] = i64([attempt])
    d["kink_margin"] = scalar(margin)
    for n, p in D.named_parameters():
        put_sampled(d, "grad." + n, p.grad, norm=True)
    for n, t in running_stats(D).items():
        d[n] = f32(t)
    ups = (dl, df2, df3, df4)
    precision_report("discriminator64", D, x, ups, lambda net, inp: net(inp),
                     lambda out, up: (out[0] * up[0]).sum() + sum((f * u).sum() for f, u in zip(out[1], up[1:])))
    return d


def twice_forward(g, x):
    y1 = g(x)
    y2 = g(y1)
    loss = F.mse_loss(y2, x) + 0.3 * y1.mean()
    return y1, y2, loss


def make_twice32():
    torch.manual_seed(0)
    g = Generator(32, 1)
    hash_init(g, 3)
    g.train()
    x, attempt, margin = draw_input(g, (3, 1, 32, 32), lambda n, t: twice_forward(n, t))
    x.requires_grad_()
    y1, y2, loss = twice_forward(g, x)
    loss.backward()
    d = {"x": f32(x), "y1": f32(y1), "y2": f32(y2), "loss": scalar(loss.item()), "dx": f32(x.grad)}
    d["input_draw"] = i64([attempt])
    d["kink_margin"] = scalar(margin)
    for n, p in g.named_parameters():
        put_sampled(d, "grad." + n, p.grad, norm=True)
    for n, t in running_stats(g).items():
        d[n] = f32(t)
    precision_report("twice32", g, x, None, lambda net, inp: twice_forward(net, inp)[2], lambda out, up: out)
    return d


def precision_report(name, net, x, up, fwd, lossfn):
    """Reruns a case in float64 (same weights, same inputs) and prints the float32 reference's
    relative error: a guide for the Swift tolerances (not stored)."""
    n64 = type(net)(net.size, x.shape[1])
    n64.load_state_dict({k: v for k, v in net.state_dict().items()}, strict=True)
    # the state dict after the float32 run has updated running stats; they do not affect train-mode output
    n64 = n64.double().train()
    x64 = x.detach().double().requires_grad_()
    if up is None:
        up64 = None
    elif isinstance(up, tuple):
        up64 = tuple(u.double() for u in up)
    else:
        up64 = up.double()
    out = fwd(n64, x64)
    lossfn(out, up64).backward()
    worst_g = 0.0
    p32 = dict(net.named_parameters())
    for n, p in n64.named_parameters():
        ref = p.grad
        worst_g = max(worst_g, ((p32[n].grad.double() - ref).abs().max() / ref.abs().max()).item())
    dx_err = ((x.grad.double() - x64.grad).abs().max() / x64.grad.abs().max()).item()
    print(f"  {name}: float32 vs float64 rel. error: dx {dx_err:.2e}, worst parameter grad {worst_g:.2e}")


# --------------------------------------------------------------------------- 9: one D step + one G step


def make_steps32():
    SENSITIVE.clear()
    torch.manual_seed(0)
    C, N, rate, lr, betas, wd = 1, 4, 0.01, 2e-4, (0.5, 0.999), 1e-5
    gAB, gBA, dA, dB = Generator(32, C), Generator(32, C), Discriminator(32, C), Discriminator(32, C)
    nets = {"G_AB": gAB, "G_BA": gBA, "D_A": dA, "D_B": dB}
    for net, seed in ((gAB, 11), (gBA, 12), (dA, 13), (dB, 14)):
        hash_init(net, seed)
        net.train()
    optG = torch.optim.Adam(list(gAB.parameters()) + list(gBA.parameters()), lr, betas=betas, weight_decay=wd, foreach=False)
    optD = torch.optim.Adam(list(dA.parameters()) + list(dB.parameters()), lr, betas=betas, weight_decay=wd, foreach=False)
    A = torch.rand(N, C, 32, 32)
    B = torch.rand(N, C, 32, 32)
    d = {"A": f32(A), "B": f32(B),
         "hparams": torch.tensor([lr, betas[0], betas[1], 1e-8, wd, rate], dtype=torch.float64)}
    before = {k: {n: p.detach().clone() for n, p in net.named_parameters()} for k, net in nets.items()}

    # ---- iteration 0: D step (fakes under no_grad; G in train mode, its running stats update)
    optD.zero_grad(set_to_none=True)
    with torch.no_grad():
        AB = gAB(A)
        BA = gBA(B)
    ra, _ = dA(A)
    fa, _ = dA(BA)
    rb, _ = dB(B)
    fb, _ = dB(AB)
    ones, zeros = torch.ones_like(ra), torch.zeros_like(ra)
    d_loss = 0.5 * (bce(ra, ones) + bce(fa, zeros)) + 0.5 * (bce(rb, ones) + bce(fb, zeros))
    d_loss.backward()
    dgrads = {k: {n: p.grad.detach().clone() for n, p in nets[k].named_parameters()} for k in ("D_A", "D_B")}
    optD.step()
    d["d0.loss"] = scalar(d_loss.item())
    d["d0.loss_A"] = scalar((0.5 * (bce(ra, ones) + bce(fa, zeros))).item())
    d["d0.loss_B"] = scalar((0.5 * (bce(rb, ones) + bce(fb, zeros))).item())
    for k in ("D_A", "D_B"):
        net = nets[k]
        for n, p in net.named_parameters():
            put_sampled(d, f"d0.{k}.{n}", p)
            d[f"d0.{k}.{n}.before"] = f32(before[k][n].reshape(-1)[torch.tensor(sample_idx(p.numel()))])
            put_sampled(d, f"d0.grad.{k}.{n}", dgrads[k][n], norm=True, whole_if_small=False)
            check_adam_first_step(before[k][n], dgrads[k][n], p.detach(), lr, betas, wd, f"d0.{k}.{n}")
        for n, t in running_stats(net).items():
            d[f"d0.{k}.{n}"] = f32(t)
    for k in ("G_AB", "G_BA"):
        for n, t in running_stats(nets[k]).items():
            d[f"d0.{k}.{n}"] = f32(t)
        for n, p in nets[k].named_parameters():
            assert torch.equal(p.detach(), before[k][n]) and p.grad is None

    # ---- iteration 1: G step (D frozen; real features under no_grad)
    optG.zero_grad(set_to_none=True)
    for m in (dA, dB):
        m.requires_grad_(False)
    AB = gAB(A)
    BA = gBA(B)
    ABA = gBA(AB)
    BAB = gAB(BA)
    with torch.no_grad():
        _, fa_r = dA(A)
        _, fb_r = dB(B)
    fa, fa_f = dA(BA)
    fb, fb_f = dB(AB)
    ones = torch.ones_like(fa)
    gan_B = bce(fb, ones)
    fm_B = fm_loss(fb_r, fb_f)
    recon_A = F.mse_loss(ABA, A)
    gan_A = bce(fa, ones)
    fm_A = fm_loss(fa_r, fa_f)
    recon_B = F.mse_loss(BAB, B)
    g_loss = ((gan_B * 0.1 + fm_B * 0.9) * (1 - rate) + recon_A * rate +
              (gan_A * 0.1 + fm_A * 0.9) * (1 - rate) + recon_B * rate)
    g_loss.backward()
    ggrads = {k: {n: p.grad.detach().clone() for n, p in nets[k].named_parameters()} for k in ("G_AB", "G_BA")}
    optG.step()
    for m in (dA, dB):
        m.requires_grad_(True)
    d["g1.loss"] = scalar(g_loss.item())
    for name, v in (("gan_A", gan_A), ("gan_B", gan_B), ("fm_A", fm_A), ("fm_B", fm_B),
                    ("recon_A", recon_A), ("recon_B", recon_B)):
        d["g1." + name] = scalar(v.item())
    for k in ("G_AB", "G_BA"):
        net = nets[k]
        for n, p in net.named_parameters():
            put_sampled(d, f"g1.{k}.{n}", p)
            d[f"g1.{k}.{n}.before"] = f32(before[k][n].reshape(-1)[torch.tensor(sample_idx(p.numel()))])
            put_sampled(d, f"g1.grad.{k}.{n}", ggrads[k][n], norm=True, whole_if_small=False)
            check_adam_first_step(before[k][n], ggrads[k][n], p.detach(), lr, betas, wd, f"g1.{k}.{n}")
        for n, t in running_stats(net).items():
            d[f"g1.{k}.{n}"] = f32(t)
    for k in ("D_A", "D_B"):
        for n, t in running_stats(nets[k]).items():
            d[f"g1.{k}.{n}"] = f32(t)
    return d


SENSITIVE = []


def check_adam_first_step(p0, g, p1, lr, betas, wd, what):
    """Adam's first step in float64: p1 = p0 - lr * ge / (|ge| + eps), ge = g + wd p0 (bias corrections cancel)."""
    ge = g.double() + wd * p0.double()
    ref = p0.double() - lr * ge / (ge.abs() + 1e-8)
    err = (ref - p1.double()).abs().max().item()
    assert err < 1e-7, (what, err)
    # elements whose step is not ~lr (|ge| within 100x of eps) are sensitive to the gradient's rounding
    SENSITIVE.append((what, int((ge.abs() < 1e-6).sum().item()), ge.numel()))


# --------------------------------------------------------------------------- self-checks and main


def check_hash():
    # by hand: i=0, j=0, seed=1: 40503 + 12345 = 52848 -> u = 52848 / 2^32
    assert hash_uniform(1, 0, 1)[0] == 52848 / 4294967296
    # i=1, j=0, seed=0: 2654435761 + 40503 = 2654476264 -> u = 0.6180462...
    assert hash_uniform(2, 0, 0)[1] == 2654476264 / 4294967296
    # i=2, j=3, seed=2: 5308871522 + 162012 + 24690 = 5309058224 - 4294967296 = 1014090928
    assert hash_uniform(3, 3, 2)[2] == 1014090928 / 4294967296
    # large indices (no uint64 overflow): compare with Python ints
    for (i, j, seed) in ((2097151, 7, 1), (524287, 19, 12), (131071, 10, 14), (12345, 0, 3)):
        assert hash_uniform(i + 1, j, seed)[i] == hash_uniform_reference(i, j, seed)
    print("hash init check: u(0,0,1)=%.10f u(1,0,0)=%.10f u(2,3,2)=%.10f" %
          (hash_uniform(1, 0, 1)[0], hash_uniform(2, 0, 0)[1], hash_uniform(3, 3, 2)[2]))
    # whole-network check: e2.weight of the 64x64 generator, seed 1 (j = 1, fan_in = 64*16)
    g = Generator(64, 3)
    hash_init(g, 1)
    w = g.e2.weight.detach().reshape(-1)
    for i in (0, 1, 1000, w.numel() - 1):
        u = hash_uniform_reference(i, 1, 1)
        assert w[i].item() == np.float32((2 * u - 1) / 32.0), i
    bnw = g.d1.bn.weight.detach()
    j = G64_ORDER.index("d1.bn.weight")
    assert bnw[5].item() == np.float32(1 + 0.1 * (2 * hash_uniform_reference(5, j, 1) - 1))
    wt = g.d1.weight  # ConvTranspose2d [512, 256, 4, 4]: fan_in = 256*16
    j = G64_ORDER.index("d1.weight")
    assert wt.reshape(-1)[777].item() == np.float32((2 * hash_uniform_reference(777, j, 1) - 1) / 64.0)


def main():
    if len(sys.argv) > 1 and sys.argv[1] not in ("--check-determinism",):
        print(__doc__)
        return
    check_param_order()
    check_hash()
    gradcheck_convs()
    files = [("conv.safetensors", lambda: make_conv(False)),
             ("convtranspose.safetensors", lambda: make_conv(True)),
             ("batchnorm.safetensors", make_batchnorm),
             ("ops.safetensors", make_ops),
             ("adam.safetensors", make_adam),
             ("generator64.safetensors", make_generator64),
             ("discriminator64.safetensors", make_discriminator64),
             ("twice32.safetensors", make_twice32),
             ("steps32.safetensors", make_steps32)]
    for name, fn in files:
        d = save(name, fn())
        if len(sys.argv) > 1 and sys.argv[1] == "--check-determinism":
            again = fn()
            assert d.keys() == again.keys() and all(torch.equal(d[k], again[k]) for k in d), name
    n_sens = sum(s for _, s, _ in SENSITIVE)
    n_all = sum(n for _, _, n in SENSITIVE)
    print(f"steps32: {n_sens} of {n_all} parameter elements have |grad + wd*p| < 1e-6 (Adam step not ~lr)")


if __name__ == "__main__":
    main()
