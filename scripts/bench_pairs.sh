#!/usr/bin/env bash
# Two disco binaries side by side on `disco bench kernels`: alternates them ROUNDS times (A, B,
# A, B, ...) so that a shared, noisy machine slows both alike, then prints, per layer and pass,
# each binary's median and best effective GFLOP/s over the rounds, and B's median over A's.
#
#   scripts/bench_pairs.sh OLD_DISCO NEW_DISCO [ROUNDS=6] [LAYERS=G.e1,D.c1,G.d4]
#
# Example: keep a build of main, change a kernel, rebuild, then
#   cp .build/release/disco /tmp/disco-main   (before the change)
#   scripts/bench_pairs.sh /tmp/disco-main .build/release/disco 6 G.e2,D.c2
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
A=$1; B=$2; ROUNDS=${3:-6}; LAYERS=${4:-G.e1,D.c1,G.d4}
for b in "$A" "$B"; do [ -x "$b" ] || { echo "bench_pairs.sh: $b is not an executable disco" >&2; exit 2; }; done
case $ROUNDS in ''|*[!0-9]*|0) echo "bench_pairs.sh: ROUNDS must be a positive whole number, got '$ROUNDS'" >&2; exit 2;; esac
out=$(mktemp); trap 'rm -f "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  for side in A B; do
    bin=$A; [ $side = B ] && bin=$B
    "$bin" bench kernels --json --repeats 5 --sgemm-size 0 --layers "$LAYERS" |
      python3 -c '
import json, sys
side = sys.argv[1]
for l in json.load(sys.stdin)["layers"]:
    for p in ("forward", "input_grad", "weight_grad"):
        print(side, l["net"] + "." + l["layer"], p, l[p])' "$side" >> "$out"
  done
  echo "round $r of $ROUNDS done" >&2
done
python3 - "$out" "$A" "$B" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, layer, p, v = line.split()
    runs[(layer, p, side)].append(float(v))
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
print(f"{'layer':8} {'pass':12} {'A median':>9} {'A best':>7} {'B median':>9} {'B best':>7} {'B/A':>6}   (GFLOP/s, {len(runs[next(iter(runs))])} rounds)")
for layer, p in sorted({(l, p) for l, p, _ in runs}):
    a, b = runs[(layer, p, "A")], runs[(layer, p, "B")]
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{layer:8} {p:12} {ma:9.0f} {max(a):7.0f} {mb:9.0f} {max(b):7.0f} {mb / ma:6.2f}")
PY
