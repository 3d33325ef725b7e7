"""The PyTorch peer (../shared/bench/torch_discogan.py) with each training step inside
torch.autocast("cpu", dtype=torch.bfloat16): PyTorch's own bfloat16 training, the peer of
`disco bench train --bf16`. The peer's source is read and run with that one change; its
arguments are the same (--mode tuned, ...)."""
import os, sys
peer = os.environ.get("PEER", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "torch_discogan.py"))
src = open(peer).read()
call = "t = time.perf_counter(); step(it); dt = time.perf_counter() - t"
if call not in src:
    sys.exit(f"torch_peer_autocast: {peer} has no line '{call}'; the peer changed")
src = src.replace(call, 't = time.perf_counter()\n        with torch.autocast("cpu", dtype=torch.bfloat16):\n            step(it)\n        dt = time.perf_counter() - t')
sys.argv[0] = peer
exec(compile(src, peer, "exec"), {"__name__": "__main__"})
