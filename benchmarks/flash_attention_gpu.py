"""The week-3 reference Triton kernel against PyTorch's SDPA and materialised attention (CUDA).

    python benchmarks/flash_attention_gpu.py              # B=2, H=8, d=64, L = 1024..8192, fp16

For each length and causal setting: the max error of `flash_attention_triton` against SDPA
(out) and torch.logsumexp (lse), and the median time of each implementation, measured
interleaved in the same run with the harness's own timer (graders/throughput.py).
"""

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from graders import throughput  # noqa: E402


def load_reference():
    path = ROOT / "reference" / "week3" / "flash_attention.py"
    spec = importlib.util.spec_from_file_location("reference_flash_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def materialised(q, k, v, is_causal):
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if is_causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(k.shape[-2] - q.shape[-2])
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--number", type=int, default=20, help="calls per timed sample (kernels take ~0.1 ms)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    flash = load_reference()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, fp16, "
          f"B={args.batch} H={args.heads} d={args.dim}")
    print(f"{'L':>6} {'causal':>6} {'err out':>9} {'err lse':>9} {'triton ms':>10} {'sdpa ms':>9} "
          f"{'naive ms':>9} {'vs sdpa':>8} {'vs naive':>9}")
    g = torch.Generator(device="cuda").manual_seed(0)
    for length in args.lengths:
        shape = (args.batch, args.heads, length, args.dim)
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.float16, generator=g) for _ in range(3))
        for causal in (False, True):
            out, lse = flash.flash_attention_triton(q, k, v, is_causal=causal)
            expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # Lq == Lk: same alignment
            scores = (q[:, :1].float() @ k[:, :1].float().transpose(-2, -1)) / math.sqrt(args.dim)
            if causal:
                scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool, device="cuda").triu(1), float("-inf"))
            err_out = (out.float() - expected.float()).abs().max().item()
            err_lse = (lse[:, :1] - torch.logsumexp(scores, dim=-1)).abs().max().item()
            vs_sdpa = throughput.measure(lambda: flash.flash_attention_triton(q, k, v, is_causal=causal),
                                         lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                         number=args.number)
            vs_naive = throughput.measure(lambda: flash.flash_attention_triton(q, k, v, is_causal=causal),
                                          lambda: materialised(q, k, v, causal), number=args.number)
            print(f"{length:>6} {str(causal):>6} {err_out:>9.2e} {err_lse:>9.2e} {vs_sdpa.candidate * 1e3:>10.3f} "
                  f"{vs_sdpa.baseline * 1e3:>9.3f} {vs_naive.baseline * 1e3:>9.3f} "
                  f"{vs_sdpa.baseline / vs_sdpa.candidate:>7.2f}x {vs_naive.speedup:>8.2f}x")


if __name__ == "__main__":
    main()
