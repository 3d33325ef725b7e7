#!/usr/bin/env bash
# Side by side with the PyTorch peer (../shared/bench/torch_discogan.py --mode tuned):
# alternates PyTorch and `disco bench train` ROUNDS times on the same machine, then prints
# each run and the ratio of the medians. The machine is shared and noisy: quote the ratio.
#
#   scripts/bench_peer.sh [ROUNDS=3]
#   BF16=1 scripts/bench_peer.sh [ROUNDS]   # also disco --bf16 and PyTorch under bf16 autocast
#
# Needs the PyTorch venv of ../shared/bench/README.md (python3 -m venv /tmp/torchenv &&
# /tmp/torchenv/bin/pip install torch) and a release build (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PEER=${PEER:-../shared/bench/torch_discogan.py}
PY=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
DISCO=${DISCO:-.build/release/disco}
[ -x "$PY" ] || { echo "no PyTorch at $PY: python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch" >&2; exit 1; }
[ -x "$DISCO" ] || { echo "no $DISCO: run make build" >&2; exit 1; }
[ -f "$PEER" ] || { echo "no peer benchmark at $PEER (set PEER=...)" >&2; exit 1; }

echo "sgemm: $($DISCO info | grep sgemm)"
torch=(); ours=(); rss_t=(); rss_o=(); torch_bf=(); ours_bf=()
for r in $(seq "$ROUNDS"); do
  t=$("$PY" "$PEER" --mode tuned)
  echo "round $r pytorch: $t"
  torch+=("$(sed -n 's/.*sec_per_iter=\([0-9.]*\).*/\1/p' <<<"$t")"); rss_t+=("$(sed -n 's/.*peak_rss_mb=\([0-9]*\).*/\1/p' <<<"$t")")
  o=$("$DISCO" bench train)
  echo "round $r disco:   $o"
  ours+=("$(sed -n 's/.*sec_per_iter=\([0-9.]*\).*/\1/p' <<<"$o")"); rss_o+=("$(sed -n 's/.*peak_rss_mb=\([0-9]*\).*/\1/p' <<<"$o")")
  if [ "${BF16:-0}" = 1 ]; then
    o=$("$DISCO" bench train --bf16)
    echo "round $r disco --bf16: $o"
    ours_bf+=("$(sed -n 's/.*sec_per_iter=\([0-9.]*\).*/\1/p' <<<"$o")")
    t=$(PEER="$PEER" "$PY" scripts/torch_peer_autocast.py --mode tuned)
    echo "round $r pytorch bf16 autocast: $t"
    torch_bf+=("$(sed -n 's/.*sec_per_iter=\([0-9.]*\).*/\1/p' <<<"$t")")
  fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mt=$(median "${torch[@]}"); mo=$(median "${ours[@]}")
echo "median sec/iter: pytorch $mt, disco $mo, disco/pytorch = $(awk -v a="$mo" -v b="$mt" 'BEGIN{printf "%.3f", a/b}')"
echo "median peak RSS MB: pytorch $(median "${rss_t[@]}"), disco $(median "${rss_o[@]}")"
if [ "${BF16:-0}" = 1 ]; then
  mob=$(median "${ours_bf[@]}"); mtb=$(median "${torch_bf[@]}")
  echo "median sec/iter bf16: disco --bf16 $mob ($(awk -v a="$mob" -v b="$mt" 'BEGIN{printf "%.3f", a/b}') of pytorch float32), pytorch autocast $mtb, disco/pytorch = $(awk -v a="$mob" -v b="$mtb" 'BEGIN{printf "%.3f", a/b}')"
fi
