"""Round trips of weights between disco and PyTorch (make test-interop; make test runs it when
torch can be imported).

    DISCO=.build/release/disco /tmp/torchenv/bin/python scripts/test_interop.py

1. disco -> PyTorch: runs trained by disco (32 px gray, 64 px RGB) load with strict=True through
   scripts/disco_torch.py, and PyTorch's G_AB and G_BA translate as `disco translate` does
   (within 2/255, check_pytorch_load.py).
2. PyTorch -> disco: a model made in PyTorch (random weights and batch-norm statistics) and saved
   with save_disco is read by `disco translate --checkpoint FILE` and by `disco import`, giving
   PyTorch's translation; so is a bare Generator. Every size (32, 64, 128) and channel count
   (1, 3) imports.
3. TensorBoard: `disco train --tensorboard` and `disco export tensorboard` write RUN/tb/, which the
   tensorboard package's own reader (EventAccumulator) reads back: every logged loss at its
   iteration, equal to log.jsonl's value, and one image per sample grid. (Skipped, with a line
   saying so, when tensorboard is not installed.)
4. Refusals: a renamed tensor, a wrong shape, a missing tensor and a file without disco's metadata
   each make `disco import` exit 1 naming the tensor or file.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from disco_torch import DiscoGAN, Generator, load_disco, save_disco  # noqa: E402
from check_pytorch_load import translate  # noqa: E402

DISCO = os.environ.get("DISCO", os.path.join(HERE, "..", ".build", "release", "disco"))
failures = []


def disco(*args, expect=0):
    r = subprocess.run([DISCO, *args], capture_output=True, text=True)
    if r.returncode != expect:
        raise AssertionError(f"disco {' '.join(args)}: exit {r.returncode}, wanted {expect}\n{r.stdout}{r.stderr}")
    return r


def check(what, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {what} {detail}")
    if not ok:
        failures.append(what)


def write_images(folder, n, size, channels, seed):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        f1, f2 = rng.uniform(0.1, 0.5, 2)
        base = 0.5 + 0.4 * np.sin(f1 * xx + i) * np.cos(f2 * yy)
        img = np.stack([base * (0.6 + 0.2 * c) for c in range(channels)], -1)
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(img[..., 0] if channels == 1 else img).save(f"{folder}/{i:03d}.png")


def max_diff(model, image, translated, direction):
    y = translate(model, image, direction)
    d = np.asarray(Image.open(translated), dtype=np.float32).reshape(y.shape) / 255
    return float(np.abs(y - d).max())


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("running_mean", "bn.bias")):
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
            elif name.endswith("bn.weight"):
                t.copy_(1 + 0.2 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(0.05 * torch.randn(t.shape, generator=g))
    return model.eval()


def main():
    tmp = tempfile.mkdtemp(prefix="disco-interop-")
    # 1. disco -> PyTorch
    for size, channels in ((32, 1), (64, 3)):
        data = f"{tmp}/data{size}"
        write_images(f"{data}/a", 4, size, channels, 1)
        write_images(f"{data}/b", 4, size, channels, 2)
        run = f"{tmp}/run{size}"
        disco("train", f"{data}/a", f"{data}/b", "--size", str(size), "--channels", str(channels), "--batch", "2",
              "--iterations", "2", "--out", run)
        ckpt = sorted(os.listdir(f"{run}/checkpoints"))[-1]
        path = f"{run}/checkpoints/{ckpt}/model.safetensors"
        model = load_disco(path)  # strict
        check(f"{size}px {channels}ch disco checkpoint loads strictly", hasattr(model, "D_B"))
        for direction, src in (("a2b", "a"), ("b2a", "b")):
            out = f"{tmp}/t{size}{direction}.png"
            disco("translate", f"{data}/{src}/000.png", "--output", out, "--checkpoint", run, "--direction", direction)
            d = max_diff(model, f"{data}/{src}/000.png", out, direction)
            check(f"{size}px {direction}: PyTorch translates as disco", d <= 2 / 255, f"(max diff {d * 255:.2f}/255)")
        r = subprocess.run([sys.executable, f"{HERE}/check_pytorch_load.py", path, f"{data}/a/000.png", f"{tmp}/t{size}a2b.png"],
                           capture_output=True, text=True)
        check(f"{size}px check_pytorch_load.py exits 0", r.returncode == 0, r.stdout.strip() + r.stderr.strip())

    default = os.path.join(HERE, "..", "checkpoints", "default", "model.safetensors")
    check("the default model loads strictly (its old num_batches_tracked dropped)", load_disco(default).size == 32)

    # 2. PyTorch -> disco
    write_images(f"{tmp}/rgb", 1, 32, 3, 3)
    model = randomize(DiscoGAN(32, 3), 5)
    save_disco(model, f"{tmp}/torch.safetensors", iteration=7)
    disco("translate", f"{tmp}/rgb/000.png", "--output", f"{tmp}/from-file.png", "--checkpoint", f"{tmp}/torch.safetensors")
    d = max_diff(model, f"{tmp}/rgb/000.png", f"{tmp}/from-file.png", "a2b")
    check("save_disco file: disco translates as PyTorch", d <= 2 / 255, f"(max diff {d * 255:.2f}/255)")
    r = disco("import", f"{tmp}/torch.safetensors", "--out", f"{tmp}/imported")
    check("disco import reports the iteration", "iteration 7" in r.stdout, r.stdout.strip())
    disco("translate", f"{tmp}/rgb/000.png", "--output", f"{tmp}/from-run.png", "--checkpoint", f"{tmp}/imported",
          "--direction", "b2a")
    d = max_diff(model, f"{tmp}/rgb/000.png", f"{tmp}/from-run.png", "b2a")
    check("imported run: disco translates b2a as PyTorch", d <= 2 / 255, f"(max diff {d * 255:.2f}/255)")
    back = load_disco(f"{tmp}/imported/model.safetensors")
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    check("PyTorch -> disco import -> PyTorch is exact", same and list(model.state_dict()) == list(back.state_dict()))
    g = randomize(Generator(64, 1), 6)
    save_disco(g, f"{tmp}/g.safetensors")
    write_images(f"{tmp}/gray", 1, 64, 1, 4)
    disco("translate", f"{tmp}/gray/000.png", "--output", f"{tmp}/from-g.png", "--checkpoint", f"{tmp}/g.safetensors")
    wrapped = DiscoGAN(64, 1, generators_only=True)
    wrapped.G_AB = g
    d = max_diff(wrapped.eval(), f"{tmp}/gray/000.png", f"{tmp}/from-g.png", "a2b")
    check("a bare Generator saved with save_disco translates in disco", d <= 2 / 255, f"(max diff {d * 255:.2f}/255)")
    for size in (32, 64, 128):
        for channels in (1, 3):
            save_disco(DiscoGAN(size, channels), f"{tmp}/m{size}{channels}.safetensors")
            r = disco("import", f"{tmp}/m{size}{channels}.safetensors", "--out", f"{tmp}/m{size}{channels}")
            check(f"{size}px {channels}ch PyTorch model imports", "wrote" in r.stdout)

    # 3. TensorBoard
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        print("skip TensorBoard read-back (pip install tensorboard to run it)")
        EventAccumulator = None
    if EventAccumulator is not None:
        import json
        run = f"{tmp}/tbrun"
        data = f"{tmp}/data32"
        disco("train", f"{data}/a", f"{data}/b", "--size", "32", "--channels", "1", "--batch", "2", "--iterations", "5",
              "--log-every", "1", "--sample-every", "2", "--out", run, "--tensorboard")
        acc = EventAccumulator(f"{run}/tb", size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        tags = acc.Tags()
        log = [json.loads(line) for line in open(f"{run}/log.jsonl")]
        ok = True
        for entry in log:
            for k, v in entry.items():
                if k in ("iter", "kind", "time"):
                    continue
                tag = "D/" + k if k.startswith("D_") else {"rate": "schedule/reconstruction_rate", "lr": "schedule/learning_rate", "data_wait": "time/data_wait"}.get(k, "loss/" + k)
                got = [e.value for e in acc.Scalars(tag) if e.step == entry["iter"]] if tag in tags["scalars"] else []
                if len(got) != 1 or abs(got[0] - v) > 1e-6 * max(1, abs(v)):
                    ok = False
                    print(f"  {tag} at {entry['iter']}: tensorboard {got}, log {v}")
        check("TensorBoard scalars read back equal log.jsonl", ok, f"({len(tags['scalars'])} tags)")
        lr = [e.value for e in acc.Scalars("schedule/learning_rate")]
        check("TensorBoard learning rate", len(lr) == len(log) and all(abs(x - 2e-4) < 1e-9 for x in lr))
        samples = sorted(os.listdir(f"{run}/samples"))
        images = acc.Images("samples") if "samples" in tags["images"] else []
        check("TensorBoard holds one image per sample grid", [i.step for i in images] == [int(n[5:13]) for n in samples],
              f"({[i.step for i in images]} vs {samples})")
        check("TensorBoard image is the sample PNG", bool(images) and images[-1].encoded_image_string == open(f"{run}/samples/{samples[-1]}", "rb").read())
        os.remove(f"{run}/tb/events.out.tfevents.disco")
        disco("export", "tensorboard", run)
        acc = EventAccumulator(f"{run}/tb", size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        check("disco export tensorboard writes the same tags", acc.Tags()["scalars"] == tags["scalars"])

    # 4. Refusals name what is wrong
    state = load_file(f"{tmp}/torch.safetensors")
    meta = {"format": "disco-checkpoint-1", "size": "32", "channels": "3", "model": "discogan", "iteration": "0"}

    def refused(what, tensors, metadata, needle):
        save_file(tensors, f"{tmp}/bad.safetensors", metadata=metadata)
        r = disco("import", f"{tmp}/bad.safetensors", "--out", f"{tmp}/bad-{len(failures)}-{needle[:8]}", expect=1)
        check(f"refused: {what}", needle in r.stderr, r.stderr.strip())

    renamed = dict(state)
    renamed["G_AB.e2.batchnorm.weight"] = renamed.pop("G_AB.e2.bn.weight")
    refused("a renamed tensor", renamed, meta, "G_AB.e2.batchnorm.weight")
    reshaped = dict(state)
    reshaped["D_A.c2.weight"] = torch.zeros(128, 64, 3, 3)
    refused("a wrong shape", reshaped, meta, "D_A.c2.weight")
    missing = dict(state)
    del missing["G_BA.d3.bn.running_var"]
    refused("a missing tensor", missing, meta, "G_BA.d3.bn.running_var")
    refused("no disco metadata", state, {}, "bad.safetensors")

    if failures:
        print(f"test_interop: {len(failures)} failed: {failures}")
        sys.exit(1)
    print("test_interop: all passed")


if __name__ == "__main__":
    main()
