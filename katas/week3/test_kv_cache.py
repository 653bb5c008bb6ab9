"""Public tests for week3/kv_cache: the cache itself, cached decoding, and its speed.

These tests drive YOUR week3/gpt2 `GPT` (loaded from `checkpoints/gpt2-tiny/`) with your
`KVCache`: make test_gpt2.py pass first. Oracles: transformers' `GPT2LMHeadModel` on the
same checkpoint, `torch.cat` for the cache contents, and your own uncached decoding, timed
in the same run for the speed test.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from graders import check, fixtures, in_one_crossing, oracle, student, throughput, unwrap
from graders.testing import FLOAT32_REDUCTION, randn

kv_cache = student("week3.kv_cache")
gpt2 = student("week3.gpt2")

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "gpt2-tiny"


@functools.cache
def _hf() -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(CHECKPOINT).eval()


def _model(hf: GPT2LMHeadModel | None = None):
    """Your GPT with the weights of a transformers GPT-2 (the tiny checkpoint by default)."""
    hf = hf or _hf()
    c = hf.config
    model = gpt2.GPT(gpt2.GPTConfig(vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, layer_norm_epsilon=c.layer_norm_epsilon))
    model.load_hf_state_dict({k: v.clone() for k, v in hf.state_dict().items()})
    return model


def _tokens(*shape: int, seed: int, vocab: int = 512) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _hf_greedy(idx: torch.Tensor, n: int) -> torch.Tensor:
    return _hf().generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, do_sample=False,
                          eos_token_id=None, pad_token_id=0)


@torch.no_grad()
def _hf_logits(idx: torch.Tensor) -> torch.Tensor:
    """transformers' logits (called only through oracle(...))."""
    return _hf()(idx).logits


@torch.no_grad()
def _positions_not_offset(out, idx: torch.Tensor) -> str:
    """"positions_not_offset" when `out` is what transformers gives if every chunk of 6 + 1 + 1 + 4
    tokens restarts at position 0 (called only through oracle(...))."""
    restarted = torch.tensor([0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 2, 3]).expand_as(idx)
    not_offset = _hf()(idx, position_ids=restarted).logits
    same = isinstance(out, torch.Tensor) and out.shape == not_offset.shape \
        and torch.allclose(out.double(), not_offset.double(), rtol=FLOAT32_REDUCTION.rtol, atol=FLOAT32_REDUCTION.atol)
    return "positions_not_offset" if same else "cached_mismatch"


# --- the cache ----------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_update_appends_on_the_time_axis():
    """k, v are [B, H, T, hd]; update returns everything so far for that layer, layers apart."""
    g = torch.Generator().manual_seed(0)
    k1, v1, k2, v2, k3, v3 = (torch.randn(2, 3, 1, 5, generator=g) for _ in range(6))
    cache = kv_cache.KVCache(2)
    keys, values = cache.update(0, k1, v1)
    check.close(keys, k1, what="keys after the first update of layer 0", hint="cache_wrong_axis")
    check.close(values, v1, what="values after the first update of layer 0", hint="cache_wrong_axis")
    keys, values = cache.update(0, k2, v2)
    check.close(keys, torch.cat([k1, k2], dim=-2), what="layer 0 keys after two updates", hint="cache_wrong_axis")
    check.close(values, torch.cat([v1, v2], dim=-2), what="layer 0 values after two updates", hint="cache_wrong_axis")
    keys, values = cache.update(1, k3, v3)
    check.close(keys, k3, what="layer 1 keys (layers are cached separately)", hint="cache_wrong_axis")
    prefill_k, prefill_v = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    cache = kv_cache.KVCache(1)
    cache.update(0, prefill_k, prefill_v)
    keys, values = cache.update(0, k1, v1)
    check.close(keys, torch.cat([prefill_k, k1], dim=-2), what="keys after a 4-token prefill and 1 token", hint="cache_wrong_axis")
    check.close(values, torch.cat([prefill_v, v1], dim=-2), what="values after a 4-token prefill and 1 token", hint="cache_wrong_axis")


@pytest.mark.points(1)
def test_seq_len_counts_cached_positions():
    """seq_len is the number of positions in layer 0: 0, then 4 after a 4-token prefill of
    both layers, then 5 after one more token. It is the position of the next token."""
    g = torch.Generator().manual_seed(1)
    cache = kv_cache.KVCache(2)
    check.equal(cache.seq_len, 0, what="seq_len of an empty cache", hint="positions_not_offset")
    for layer in range(2):
        cache.update(layer, torch.randn(1, 2, 4, 8, generator=g), torch.randn(1, 2, 4, 8, generator=g))
    check.equal(cache.seq_len, 4, what="seq_len after a 4-token prefill", hint="positions_not_offset")
    for layer in range(2):
        cache.update(layer, torch.randn(1, 2, 1, 8, generator=g), torch.randn(1, 2, 1, 8, generator=g))
    check.equal(cache.seq_len, 5, what="seq_len after one decoded token", hint="positions_not_offset")


@pytest.mark.points(1)
def test_seq_len_is_layer_0s_length_even_mid_forward():
    """seq_len counts the positions in layer 0 alone: after layer 0 takes a prefill or a new
    token, and before the other layers do (the middle of a forward pass), it already includes
    them."""
    g = torch.Generator().manual_seed(2)
    cache = kv_cache.KVCache(3)
    cache.update(0, torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 2, 3, 4, generator=g))
    check.equal(cache.seq_len, 3, what="seq_len once layer 0 (only) holds a 3-token prefill",
                hint="positions_not_offset")
    for layer in (1, 2):
        cache.update(layer, torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 2, 3, 4, generator=g))
    cache.update(0, torch.randn(1, 2, 1, 4, generator=g), torch.randn(1, 2, 1, 4, generator=g))
    check.equal(cache.seq_len, 4, what="seq_len once layer 0 (only) holds the next token as well",
                hint="positions_not_offset")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cache_keeps_the_dtype_it_is_given(dtype):
    """A half-precision (or float64) model's keys come back in that dtype, unchanged: the
    cache stores what it is given, it does not convert to float32. (The hidden tests check
    the device the same way, with tensors on the meta device.)"""
    k1, v1 = randn(2, 3, 4, 5, seed=40, dtype=dtype), randn(2, 3, 4, 5, seed=41, dtype=dtype)
    k2, v2 = randn(2, 3, 1, 5, seed=42, dtype=dtype), randn(2, 3, 1, 5, seed=43, dtype=dtype)
    cache = kv_cache.KVCache(2)
    keys, values = cache.update(1, k1, v1)
    check.equal(keys, k1, what=f"{dtype} keys after the first update", hint="cache_dtype_device")
    keys, values = cache.update(1, k2, v2)
    check.equal(keys, torch.cat([k1, k2], dim=-2), what=f"{dtype} keys after two updates", hint="cache_dtype_device")
    check.equal(values, torch.cat([v1, v2], dim=-2), what=f"{dtype} values after two updates", hint="cache_dtype_device")


# --- cached forward and decoding ----------------------------------------------------------------


@pytest.mark.points(2)
def test_cached_forward_matches_uncached():
    """Prefill 6 tokens, then 1, then 1, then 4: the logits equal your own uncached forward
    over the whole 12-token sequence, and transformers' logits."""
    idx = _tokens(2, 12, seed=2)
    model = _model()
    cache = kv_cache.KVCache(_hf().config.n_layer)
    expected = oracle(_hf_logits, idx)
    with torch.no_grad():
        parts = [model(idx[:, a:b], cache=cache) for a, b in ((0, 6), (6, 7), (7, 8), (8, 12))]
        full = model(idx)
    out = torch.cat(parts, dim=1) if all(isinstance(p, torch.Tensor) for p in parts) else parts[-1]
    hint = oracle(_positions_not_offset, out, idx)
    check.close(out, full, what="cached logits (6 + 1 + 1 + 4 tokens) vs your uncached forward", hint=hint, **FLOAT32_REDUCTION)
    check.equal(cache.seq_len, 12, what="cache.seq_len after 12 tokens", hint="positions_not_offset")
    check.close(out, expected, what="cached logits vs transformers", **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_uncached_greedy_matches_transformers():
    idx = _tokens(2, 7, seed=3)
    out = kv_cache.generate_greedy(_model(), idx, 30, use_cache=False)
    check.equal(out, _hf_greedy(idx, 30), what="greedy ids (use_cache=False)", hint="greedy")


@pytest.mark.points(3)
def test_cached_greedy_equals_uncached():
    """100 tokens with the cache: exactly transformers' greedy tokens, and exactly your
    uncached ones. (For this prompt the best two logits stay more than 5e-3 apart along
    the whole decode, so correct implementations cannot differ by float rounding.)"""
    idx = _tokens(2, 7, seed=13)
    model = _model()
    cached = kv_cache.generate_greedy(model, idx, 100, use_cache=True)
    check.equal(cached, _hf_greedy(idx, 100), what="greedy ids with the cache", hint="cached_mismatch")
    uncached = kv_cache.generate_greedy(model, idx, 100, use_cache=False)
    check.equal(cached, uncached, what="cached vs uncached greedy ids", hint="cached_mismatch")


@pytest.mark.points(1)
def test_cached_greedy_from_a_one_token_prompt():
    idx = _tokens(3, 1, seed=5)
    out = kv_cache.generate_greedy(_model(), idx, 25)
    check.equal(out, _hf_greedy(idx, 25), what="greedy ids from a 1-token prompt", hint="cached_mismatch")


@pytest.mark.points(1)
def test_golden_fixture():
    """Pinned reference tokens (guards against oracle drift across transformers versions)."""
    data = fixtures.load("week3/kv_cache")
    out = kv_cache.generate_greedy(_model(), data["prompt"], data["greedy"].shape[1] - data["prompt"].shape[1])
    check.equal(out, data["greedy"], what="greedy ids with the cache", hint="cached_mismatch")


# --- how generate_greedy drives the model -------------------------------------------------------
#
# A stand-in for GPT that records every call. Its "model" is causal and depends on the whole
# history through the cache: the token after position t is (3 * (sum of tokens 0..t) + 5t + 1)
# mod 13, where the sum is read from the keys the cache returns (each token is its own key).
# So a broken cache changes the tokens, and the call log shows how the model was driven.

COUNTING_VOCAB = 13


class CountingModel:
    def __init__(self, n_layer=2):
        self.config = SimpleNamespace(n_layer=n_layer)
        self.calls = []

    def __call__(self, idx, cache=None):
        return self.forward(idx, cache=cache)

    def forward(self, idx, cache=None):
        B, T = idx.shape
        past = 0 if cache is None else cache.seq_len
        self.calls.append({"T": T, "cache": cache, "grad": torch.is_grad_enabled()})
        history = idx.to(torch.float64)[:, None, :, None]  # [B, 1, T, 1]: token ids as keys
        if cache is not None:
            for layer in range(self.config.n_layer):
                history, _ = cache.update(layer, idx.to(torch.float64)[:, None, :, None], history.new_zeros(B, 1, T, 1))
        sums = history[:, 0, :, 0].cumsum(-1)[:, -T:]  # [B, T]
        target = (3 * sums.long() + 5 * torch.arange(past, past + T) + 1) % COUNTING_VOCAB
        return -(torch.arange(COUNTING_VOCAB) - target[..., None]).abs().float()  # argmax = target


def _drive(idx, max_new_tokens, use_cache):
    """generate_greedy on a CountingModel; the tokens and the call log as plain data (one crossing)."""
    model = CountingModel()
    options = {} if use_cache is None else {"use_cache": use_cache}  # None: the default
    out = unwrap(kv_cache.generate_greedy)(model, idx, max_new_tokens, **options)
    caches = [call["cache"] for call in model.calls]
    return {
        "out": out,
        "lengths": [call["T"] for call in model.calls],
        "with_cache": [cache is not None for cache in caches],
        "caches": len({id(cache) for cache in caches if cache is not None}),
        "grad": any(call["grad"] for call in model.calls),
    }


def counting_greedy(idx, max_new_tokens):
    """The CountingModel's greedy continuation, worked out directly (only through oracle(...))."""
    rows = idx.tolist()
    for row in rows:
        for _ in range(max_new_tokens):
            row.append((3 * sum(row) + 5 * (len(row) - 1) + 1) % COUNTING_VOCAB)
    return torch.tensor(rows, dtype=torch.long)


@pytest.mark.points(2)
@pytest.mark.parametrize("max_new_tokens", [5, 4, 1, 0])  # odd and even: a loop bound can be wrong for one parity
def test_cached_decoding_runs_the_prompt_once_then_one_token_per_step(max_new_tokens):
    """use_cache=True: one prefill call on the whole prompt, then one call per new token on
    that token alone ([B, 1]), all with the same cache, under torch.no_grad(), and no call
    after the last token (n new tokens take exactly n calls)."""
    idx = torch.randint(0, COUNTING_VOCAB, (3, 4), generator=torch.Generator().manual_seed(50))
    got = in_one_crossing(kv_cache, _drive, idx, max_new_tokens, True)
    check.equal(got["out"], oracle(counting_greedy, idx, max_new_tokens), hint="cached_mismatch",
                what=f"tokens of cached greedy decoding ({max_new_tokens} new)")
    check.that(len(got["lengths"]) <= max_new_tokens,
               f"{max_new_tokens} new tokens took {len(got['lengths'])} model calls: the last token's logits are "
               f"never used, so there is no call after it", hint="extra_forward")
    check.equal(got["lengths"], [4] + [1] * (max_new_tokens - 1) if max_new_tokens else [], hint="cache_not_used",
                what="tokens per model call (the prompt once, then one token per call)")
    check.that(all(got["with_cache"]) and got["caches"] <= 1,
               f"every call should get the same KVCache: {got['caches']} different caches, "
               f"{got['with_cache'].count(False)} calls without one", hint="cached_mismatch")
    check.that(not got["grad"], "the model ran with autograd on: decode under torch.no_grad()", hint="cache_not_used")


@pytest.mark.points(1)
def test_the_cache_is_used_by_default():
    """generate_greedy(model, idx, n) with no use_cache uses the cache (the signature's default
    is True): the prompt once, then one token per call."""
    idx = torch.randint(0, COUNTING_VOCAB, (2, 3), generator=torch.Generator().manual_seed(52))
    got = in_one_crossing(kv_cache, _drive, idx, 3, None)
    check.equal(got["out"], oracle(counting_greedy, idx, 3), hint="greedy", what="tokens of greedy decoding")
    check.equal(got["lengths"], [3, 1, 1], hint="use_cache_default",
                what="tokens per model call with use_cache left at its default (True)")


@pytest.mark.points(1)
def test_uncached_decoding_reruns_the_whole_sequence():
    """use_cache=False: every step runs the model on the whole sequence so far, with no cache."""
    idx = torch.randint(0, COUNTING_VOCAB, (2, 3), generator=torch.Generator().manual_seed(51))
    got = in_one_crossing(kv_cache, _drive, idx, 4, False)
    check.equal(got["out"], oracle(counting_greedy, idx, 4), hint="greedy", what="tokens of uncached greedy decoding")
    check.equal(got["lengths"], [3, 4, 5, 6], hint="use_cache_ignored",
                what="tokens per model call with use_cache=False (the whole sequence each time)")
    check.that(not any(got["with_cache"]), f"use_cache=False, but {got['with_cache'].count(True)} calls got a cache",
               hint="use_cache_ignored")


# --- speed --------------------------------------------------------------------------------------


def _speed_model():
    """A seeded one-layer GPT-2 with room for 8 + 256 positions, wide enough that recomputing
    the prefix dominates the uncached run. Measured on one thread of a busy 2-core machine:
    cached decoding 6-7x faster than uncached (reference solution)."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=512, n_positions=272, n_embd=160, n_layer=1, n_head=4, initializer_range=0.2,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return _model(GPT2LMHeadModel(config).eval())


@pytest.mark.points(2)
@pytest.mark.throughput
@pytest.mark.timeout(300)
def test_cached_decoding_is_at_least_3x_faster():
    """Decoding 256 tokens with the cache vs without, timed interleaved in this run on ONE
    thread (more threads speed up the big uncached matmuls but not the cached path's many
    tiny ones, so the ratio would depend on the machine's core count)."""
    model = _speed_model()
    idx = _tokens(1, 8, seed=6)
    cached = kv_cache.generate_greedy(model, idx, 256, use_cache=True)
    check.that(isinstance(cached, torch.Tensor) and list(cached.shape) == [1, 264],
               "generate_greedy(idx[1, 8], 256) should return a LongTensor [1, 264]", about=cached)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        throughput.assert_speedup(
            lambda: kv_cache.generate_greedy(model, idx, 256, use_cache=True),
            lambda: kv_cache.generate_greedy(model, idx, 256, use_cache=False),
            at_least=3.0, what="cached greedy decoding of 256 tokens", hint="cache_not_used",
            warmup=1, rounds=3,
        )
    finally:
        torch.set_num_threads(threads)
