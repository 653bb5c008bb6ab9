"""Public tests for week3/flash_attention.

Oracles: torch's `F.scaled_dot_product_attention` (given an explicit bottom-right boolean mask
when causal, because its own `is_causal` aligns top-left when Lq != Lk) and
`torch.logsumexp` of the scaled scores, both in float64. Memory: a `TorchDispatchMode`
watches every tensor the call allocates and rejects any as large as the Lq x Lk matrix.
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from graders import check, fixtures, oracle, student, throughput
from graders.testing import randn

flash = student("week3.flash_attention")


def qkv(batch, lq, lk, d, dv, seed, dtype=torch.float32):
    q = randn(*batch, lq, d, seed=seed, dtype=dtype, scale=1.5)
    k = randn(*batch, lk, d, seed=seed + 1, dtype=dtype, scale=1.5)
    v = randn(*batch, lk, dv, seed=seed + 2, dtype=dtype)
    return q, k, v


def bottom_right(lq, lk):
    """Query i sees keys 0 .. lk - lq + i: the last lq rows of the lk x lk lower triangle."""
    return torch.ones(lk, lk, dtype=torch.bool).tril()[lk - lq:]


def torch_attention(q, k, v, is_causal=False):
    """(out, lse) in float64 from SDPA and torch.logsumexp, for inputs of any float dtype."""
    q, k, v = q.double(), k.double(), v.double()
    mask = bottom_right(q.shape[-2], k.shape[-2]) if is_causal else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return out, torch.logsumexp(scores, dim=-1)


def expect(q, k, v, is_causal=False):
    """The oracle in the dtypes the kata promises: out like q, lse float32 (float64 for float64).
    Called only through oracle(...)."""
    out, lse = torch_attention(q, k, v, is_causal)
    return out.to(q.dtype), lse.to(torch.float64 if q.dtype == torch.float64 else torch.float32)


def check_flash(q, k, v, is_causal=False, hint=None, lse_hint="lse_wrong", **blocks):
    expected = oracle(expect, q, k, v, is_causal)  # (out, lse)
    result = flash.flash_attention(q, k, v, is_causal=is_causal, **blocks)
    check.that(isinstance(result, tuple) and len(result) == 2,
               "flash_attention should return a tuple (out, lse)", about=result)
    out, lse = result
    check.close(out, expected[0], hint=hint, what="out")
    check.close(lse, expected[1], hint=lse_hint, what="lse")


@pytest.mark.points(1)
def test_single_tile_is_plain_attention():
    q, k, v = qkv((2, 3), 10, 12, 8, 8, seed=1)
    check_flash(q, k, v, block_q=16, block_k=16)


@pytest.mark.points(2)
def test_many_key_tiles_rescale_the_output():
    # later keys are larger, so the running max grows at every key tile: each tile must
    # shrink what was accumulated before it (l and the output alike)
    q, k, v = qkv((2, 2), 64, 192, 16, 8, seed=2)
    k = k * torch.linspace(0.5, 2.0, 192)[:, None]
    check_flash(q, k, v, block_q=32, block_k=32, hint="output_not_rescaled")


@pytest.mark.points(2)
@pytest.mark.parametrize("lq, lk, block_q, block_k", [(100, 150, 32, 64), (37, 37, 16, 16), (5, 200, 64, 48),
                                                      (130, 70, 64, 64)])
def test_ragged_sizes(lq, lk, block_q, block_k):
    q, k, v = qkv((2,), lq, lk, 16, 12, seed=3)
    whole_q, whole_k = lq - lq % block_q, lk - lk % block_k
    if whole_q and whole_k:  # first the whole tiles alone, so that a failure below is about the last ones
        check_flash(q[..., :whole_q, :], k[..., :whole_k, :], v[..., :whole_k, :], block_q=block_q,
                    block_k=block_k, hint="output_not_rescaled")
    check_flash(q, k, v, block_q=block_q, block_k=block_k, hint="ragged_last_block")


@pytest.mark.points(3)
@pytest.mark.parametrize("lq, lk, block_q, block_k", [(64, 64, 16, 16), (96, 160, 32, 32), (50, 130, 16, 24),
                                                      (1, 70, 64, 64), (70, 70, 32, 16)])
def test_causal_is_bottom_right(lq, lk, block_q, block_k):
    q, k, v = qkv((2, 2), lq, lk, 16, 8, seed=4)
    check_flash(q, k, v, block_q=block_q, block_k=block_k)  # without the mask first
    check_flash(q, k, v, is_causal=True, block_q=block_q, block_k=block_k, hint="causal_blocks")


@pytest.mark.points(1)
def test_default_blocks():
    q, k, v = qkv((1, 2), 150, 200, 32, 32, seed=5)
    check_flash(q, k, v, hint="ragged_last_block")
    check_flash(q, k, v, is_causal=True, hint="causal_blocks")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("is_causal", [False, True])
def test_half_precision(dtype, is_causal):
    q, k, v = qkv((2, 2), 45, 77, 16, 16, seed=6, dtype=dtype)
    expected = oracle(expect, q, k, v, is_causal)  # (out, lse)
    out, lse = flash.flash_attention(q, k, v, is_causal=is_causal, block_q=16, block_k=32)
    check.that(isinstance(lse, torch.Tensor) and lse.dtype == torch.float32,
               f"lse should be float32 for {dtype} inputs, got {getattr(lse, 'dtype', type(lse))}",
               hint="lse_wrong", about=lse)
    check.close(out, expected[0], what="out")
    check.close(lse, expected[1], what="lse", hint="lse_wrong")


@pytest.mark.points(1)
def test_golden_bfloat16_causal():
    data = fixtures.load("week3/flash_attention")
    out, lse = flash.flash_attention(data["q"], data["k"], data["v"], is_causal=True,
                                     block_q=data["block_q"], block_k=data["block_k"])
    check.close(out, data["out"], what="out", hint="causal_blocks")
    check.close(lse, data["lse"], what="lse", hint="lse_wrong")


@pytest.mark.points(1)
@pytest.mark.parametrize("batch", [(), (2, 1, 3)])
def test_any_leading_dims(batch):
    q, k, v = qkv(batch, 20, 33, 8, 4, seed=7)
    check_flash(q, k, v, is_causal=True, block_q=8, block_k=8)


@pytest.mark.points(2)
@given(lk=st.integers(1, 40), data=st.data())
def test_random_shapes_and_tiles(lk, data):
    is_causal = data.draw(st.booleans(), label="is_causal")
    lq = data.draw(st.integers(1, lk if is_causal else 40), label="lq")
    block_q, block_k = data.draw(st.integers(1, 17), label="block_q"), data.draw(st.integers(1, 17), label="block_k")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    q, k, v = qkv((2,), lq, lk, 8, 4, seed=seed)
    check_flash(q, k, v, is_causal=is_causal, block_q=block_q, block_k=block_k)


# --- memory ------------------------------------------------------------------------------


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (in elements) of any tensor an operator returns.

    Views share their base's storage, so slicing the inputs costs nothing here; an
    expanded view of a small tensor is small too. Only real allocations count."""

    def __init__(self):
        super().__init__()
        self.elements, self.description = 0, "nothing"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in tree_flatten(result)[0]:
            if isinstance(t, torch.Tensor):
                elements = t.untyped_storage().nbytes() // max(t.element_size(), 1)
                if elements > self.elements:
                    self.elements = elements
                    self.description = f"{func} -> {t.dtype} {list(t.shape)}"
        return result


def largest_allocation_during(call):
    """(result of call(), elements, description) of the largest tensor allocated during it.

    When grading, student code runs only in the sandbox (recording) and the trusted process
    replays its outputs, so the measurement is taken in the sandbox and recorded beside the
    call, as `graders.throughput` does with timings."""
    from graders import recording
    from graders.events import Crossing, Kind

    rec = recording.current()
    if recording.current_mode() == "replay" and rec is not None:
        result = call()
        try:
            event = rec.next(Kind.MEMORY, ["memory"])
        except recording.RecordingError as exc:
            pytest.fail(str(exc), pytrace=False)
        return (result, *event.returned)
    tracker = LargestAllocation()
    with tracker:
        result = call()
    if recording.current_mode() == "record" and rec is not None:
        rec.add(Crossing(Kind.MEMORY, ["memory"], returned=[tracker.elements, tracker.description]))
    return result, tracker.elements, tracker.description


@pytest.mark.points(3)
@pytest.mark.parametrize("is_causal", [False, True])
def test_never_builds_an_lq_by_lk_tensor(is_causal):
    lq, lk = 300, 500
    q, k, v = qkv((1, 1), lq, lk, 8, 8, seed=8)
    expected = oracle(expect, q, k, v, is_causal)  # (out, lse)
    (out, lse), elements, description = largest_allocation_during(
        lambda: flash.flash_attention(q, k, v, is_causal=is_causal, block_q=32, block_k=32))
    # a [32, 500] row of tiles is 16,000 elements; a [300, 500] score matrix or mask is 150,000
    limit = lq * lk // 2
    check.that(elements < limit,
               f"your flash_attention allocated a tensor of {elements:,} elements "
               f"({description}) for Lq={lq}, Lk={lk}, blocks 32 x 32; "
               f"anything of {limit:,} or more means an Lq x Lk matrix was built",
               hint="quadratic_memory")
    check.close(out, expected[0], what="out")


# --- optional: a Triton kernel on the GPU ------------------------------------------------


def naive_attention(q, k, v, is_causal):
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if is_causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(k.shape[-2] - q.shape[-2])
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def triton_device():
    """Where an optional Triton kernel can run: 'cuda' on a GPU, 'cpu' under Triton's own
    interpreter (`TRITON_INTERPRET=1`, which runs kernels on CPU tensors); otherwise skip."""
    pytest.importorskip("triton")
    if not hasattr(flash.module(), "flash_attention_triton"):
        pytest.skip("optional: no flash_attention_triton in your module")
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "cpu"
    pytest.skip("needs a CUDA GPU, or TRITON_INTERPRET=1 to run the kernel in Triton's interpreter")


@pytest.mark.points(1)
@pytest.mark.parametrize("batch, lq, lk, is_causal", [
    ((2, 3), 5, 70, True),     # more (batch, head) programs than query rows; ragged key tile
    ((3,), 200, 260, True),    # one leading dim; two query tiles of 128, the second ragged and
                               # needing every key tile (the last one ragged too)
    ((2, 2), 37, 53, False),   # not causal, every tile ragged
])
def test_optional_triton_kernel_matches_sdpa(batch, lq, lk, is_causal):
    """If you also write `flash_attention_triton`: (out, lse) equal SDPA and logsumexp for fp16
    inputs whose lengths are not multiples of the kernel's tiles, with and without causal
    masking, for one or two leading dims. Runs on a GPU, or on the CPU with TRITON_INTERPRET=1."""
    device = triton_device()
    q, k, v = (t.to(device) for t in qkv(batch, lq, lk, 16, 16, seed=lq + lk, dtype=torch.float16))
    expected = oracle(torch_attention, q, k, v, is_causal=is_causal)  # (out, lse) in float64
    out, lse = flash.flash_attention_triton(q, k, v, is_causal=is_causal)
    check.close(out, expected[0].to(torch.float16), what="out", hint="causal_blocks" if is_causal else "ragged_last_block")
    check.close(lse, expected[1].float(), what="lse", hint="lse_wrong")


@pytest.mark.gpu
@pytest.mark.throughput
@pytest.mark.points(2)
def test_optional_triton_kernel_is_fast():
    """If you also write `flash_attention_triton(q, k, v, is_causal=False)` (CUDA, fp16, Triton),
    it must match SDPA, run at least 2x faster than materialised attention at L = 4096 and
    stay within 5x of PyTorch's own fused SDPA kernel."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("triton")
    if not hasattr(flash.module(), "flash_attention_triton"):
        pytest.skip("optional: no flash_attention_triton in your module")
    g = torch.Generator(device="cuda").manual_seed(9)
    q, k, v = (torch.randn(2, 8, 4096, 64, device="cuda", dtype=torch.float16, generator=g) for _ in range(3))
    expected = oracle(torch_attention, q[:, :1], k[:, :1], v[:, :1], is_causal=True)  # (out, lse)
    out, lse = flash.flash_attention_triton(q, k, v, is_causal=True)
    check.close(out[:, :1], expected[0].to(torch.float16), what="out (head 0)", hint="causal_blocks")
    check.close(lse[:, :1], expected[1].float(), what="lse (head 0)", hint="lse_wrong")
    # one call is ~0.1 ms: time 10 calls per sample so launch and sync overhead stay small
    throughput.assert_speedup(lambda: flash.flash_attention_triton(q, k, v, is_causal=True),
                              lambda: naive_attention(q, k, v, True),
                              at_least=2.0, what="flash_attention_triton", number=10)
    # SDPA here is a hand-tuned FlashAttention-2/cuDNN kernel; 5x leaves room for a
    # straightforward Triton kernel (one program per query tile, no warp specialisation)
    # while failing one that spills the score tile to global memory
    throughput.assert_within(lambda: flash.flash_attention_triton(q, k, v, is_causal=True),
                             lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                             factor=5.0, what="flash_attention_triton vs SDPA", number=10)


# --- extreme magnitudes, dtypes and the block arguments ----------------------------------

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def extreme_qkv(kinds, lk, dv, seed, dtype):
    """q, k, v whose scaled scores are exact multiples of 1024 of size ~1e4 in every dtype.

    d = 4 (scale 1/2); q = 64 A and k = 32 B with small integers, so every product and partial
    sum is exact even in bfloat16 and score = 1024 * (A B^T). Rows by kind: "pos" every score
    ~ +1e4; "neg" every score ~ -1e4 (a running max that starts at 0 leaves exp(s - 0) = 0
    everywhere, then 0 / 0); "rise" ~ -1e4 for the first half of the keys and ~ +1e4 for the
    second (alpha = exp(-2e4) = 0 must wipe the early tiles). Columns 2, 3 are -1..1 noise,
    so rows have ties and several keys share the weight."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-1, 2, (len(kinds), 4), generator=g).double()
    b = torch.randint(-1, 2, (lk, 4), generator=g).double()
    a[:, 0] = torch.tensor([{"pos": 3.0, "neg": -3.0, "rise": 0.0}[kind] for kind in kinds])
    a[:, 1] = torch.tensor([3.0 if kind == "rise" else 0.0 for kind in kinds])
    b[:, 0] = 3.0
    b[:, 1] = torch.where(torch.arange(lk) < lk // 2, -3.0, 3.0)
    v = randn(lk, dv, seed=seed + 1, dtype=dtype)
    return (64 * a).to(dtype), (32 * b).to(dtype), v


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
def test_scores_of_plus_and_minus_1e4_in_every_dtype(dtype):
    kinds = ["pos", "neg", "rise", "neg", "pos", "rise"]
    q, k, v = extreme_qkv(kinds, 10, 3, seed=10, dtype=dtype)
    expected = oracle(expect, q, k, v)  # (out, lse)
    out, lse = flash.flash_attention(q, k, v, block_q=4, block_k=3)
    for kind, hint in (("pos", "overflow"), ("rise", "overflow"), ("neg", "running_max_init")):
        rows = [i for i, name in enumerate(kinds) if name == kind]
        check.close(out[rows], expected[0][rows], hint=hint, what=f"out, rows with {kind} scores ~1e4")
        check.close(lse[rows], expected[1][rows], hint=hint, what=f"lse, rows with {kind} scores ~1e4")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_of_out_and_lse(dtype):
    q, k, v = qkv((2,), 9, 13, 8, 4, seed=11, dtype=dtype)
    expected = oracle(expect, q, k, v, True)  # (out, lse)
    out, lse = flash.flash_attention(q, k, v, is_causal=True, block_q=4, block_k=4)
    want = "torch.float64" if dtype == torch.float64 else "torch.float32"
    check.equal(str(out.dtype), str(dtype), what="out dtype (q's dtype)", hint="accum_dtype")
    check.equal(str(lse.dtype), want, what="lse dtype", hint="accum_dtype")
    check.close(out, expected[0], what="out", hint="accum_dtype")
    check.close(lse, expected[1], what="lse", hint="accum_dtype")


@pytest.mark.points(2)
def test_uses_the_blocks_it_is_given():
    # with 8 x 8 tiles nothing needs more than a row of tiles, [8, 80]; a solution that
    # ignores block_q and block_k and tiles by 64 builds [64, 64] score tiles
    lq = lk = 80
    q, k, v = qkv((1,), lq, lk, 2, 2, seed=12)
    expected = oracle(expect, q, k, v, True)  # (out, lse)
    (out, lse), elements, description = largest_allocation_during(
        lambda: flash.flash_attention(q, k, v, is_causal=True, block_q=8, block_k=8))
    limit = 2 * 8 * lk
    check.that(elements < limit,
               f"with block_q = block_k = 8 and Lq = Lk = {lq} your flash_attention allocated a tensor of "
               f"{elements:,} elements ({description}); a row of 8 x 8 tiles is {8 * lk:,}",
               hint="blocks_ignored")
    check.close(out, expected[0], what="out", hint="causal_blocks")
