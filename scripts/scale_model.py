#!/usr/bin/env python3
"""Model of data-parallel DiscoGAN training time over N nodes (docs/scale-out.md).

step(N) = compute(N) + allreduce(N)   (the all-reduces follow the backward pass; no overlap)
compute(N) = T1 * B_node / B_ref      T1: measured seconds per iteration of one node at batch B_ref
allreduce(N) = ring: 2 (N-1)/N * S / bandwidth + 2 (N-1) * alpha per bucket (2 buckets a step),
               plus, with --sync-bn, C small all-reduces of log2(N) rounds of alpha each.
S: bytes of gradients all-reduced per iteration (float32, the reference schedule: D_A + D_B on one
iteration in three, G_AB + G_BA on the other two), measured by `disco bench allreduce`.
Usage: scripts/scale_model.py [--t1-2core 2.0] [--bytes 36.78e6] ...
"""
import argparse, math

p = argparse.ArgumentParser()
p.add_argument("--t1-2core", type=float, default=2.0, help="s/iter, batch 64, 64x64 RGB, one 2-core node (docs/performance.md)")
p.add_argument("--core-scaling", type=float, default=1.0, help="fraction of linear speed-up from 2 to 32 cores")
p.add_argument("--bytes", type=float, default=36.78e6, help="gradient bytes all-reduced per iteration (bench allreduce)")
p.add_argument("--alpha", type=float, default=30e-6, help="latency per message, s")
p.add_argument("--syncbn-calls", type=int, default=91, help="small all-reduces per iteration with --sync-bn (bench allreduce)")
p.add_argument("--batch", type=int, default=64, help="global batch (strong scaling)")
a = p.parse_args()

def allreduce(n, gbit, compress=1.0, syncbn=False):
    if n == 1: return 0.0
    bw = gbit * 1e9 / 8
    t = 2 * (n - 1) / n * a.bytes / compress / bw + 2 * 2 * (n - 1) * a.alpha
    if syncbn: t += a.syncbn_calls * math.ceil(math.log2(n)) * a.alpha
    return t

nodes = [1, 2, 4, 8, 16, 32, 64]
for cores in (2, 32):
    t1 = a.t1_2core * (2 / cores) ** a.core_scaling if cores > 2 else a.t1_2core
    print(f"\n### {cores}-core nodes: one node {t1:.3f} s/iter at batch {a.batch}\n")
    print("Strong scaling (global batch %d: each node trains on %d/N images). Seconds per iteration (speed-up, efficiency):\n" % (a.batch, a.batch))
    print("| nodes | batch/node | compute s | 10 Gbit/s | 25 Gbit/s | 100 Gbit/s | 10 Gbit/s, fp16 grads |")
    print("|---|---|---|---|---|---|---|")
    for n in nodes:
        per = a.batch / n
        comp = t1 / n
        cells = []
        for gbit, comp_f in ((10, 1), (25, 1), (100, 1), (10, 2)):
            s = comp + allreduce(n, gbit, comp_f, syncbn=per < 2)
            cells.append(f"{s:.3f} ({t1 / s:.1f}x, {t1 / s / n:.0%})")
        note = "" if per >= 2 else " (--sync-bn)"
        print(f"| {n} | {per:g}{note} | {comp:.3f} | " + " | ".join(cells) + " |")
    print("\nWeak scaling (batch %d per node, global batch %d N). Images/s (efficiency):\n" % (a.batch, a.batch))
    print("| nodes | global batch | 10 Gbit/s | 25 Gbit/s | 100 Gbit/s |")
    print("|---|---|---|---|---|")
    for n in nodes:
        cells = []
        for gbit in (10, 25, 100):
            s = t1 + allreduce(n, gbit)
            cells.append(f"{a.batch * n / s:.0f} ({t1 / s:.0%})")
        print(f"| {n} | {a.batch * n} | " + " | ".join(cells) + " |")
