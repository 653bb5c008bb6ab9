"""Hidden tests for week3/kv_cache: random update sequences against the reference cache,
and cached decoding of fresh seeded GPT-2s against the reference's decoding."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import graders
from graders import check, in_one_crossing, oracle, student, unwrap
from graders.testing import hinted

pytestmark = pytest.mark.hidden

kv_cache = student("week3.kv_cache")
gpt2 = student("week3.gpt2")
ref_kv_cache = graders.reference("week3.kv_cache")
ref_gpt2 = graders.reference("week3.gpt2")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_update_sequences(seed):
    """Three layers, chunks of 1-4 positions, batch 2, 3 heads, head_dim 4: every returned
    (keys, values) pair is the concatenation on dim -2 of everything given to that layer,
    and seq_len is layer 0's length."""
    g = torch.Generator().manual_seed(seed)
    cache = kv_cache.KVCache(3)
    given_k, given_v = [[] for _ in range(3)], [[] for _ in range(3)]  # withhold: input (what the cache was given)
    for step in range(4):
        T = int(torch.randint(1, 5, (), generator=g))
        for layer in range(3):
            k, v = torch.randn(2, 3, T, 4, generator=g), torch.randn(2, 3, T, 4, generator=g)
            given_k[layer].append(k)
            given_v[layer].append(v)
            got_k, got_v = cache.update(layer, k.clone(), v.clone())
            check.close(got_k, torch.cat(given_k[layer], dim=-2), what=f"keys of layer {layer} after update {step}", hint="cache_wrong_axis")
            check.close(got_v, torch.cat(given_v[layer], dim=-2), what=f"values of layer {layer} after update {step}", hint="cache_wrong_axis")
        check.equal(cache.seq_len, sum(k.shape[-2] for k in given_k[0]), what=f"seq_len after update {step}", hint="positions_not_offset")


def _hf(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=211, n_positions=96, n_embd=48, n_layer=3, n_head=6, initializer_range=0.2,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def _load(module, hf: GPT2LMHeadModel):
    c = hf.config
    model = module.GPT(module.GPTConfig(vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd,
                                        n_layer=c.n_layer, n_head=c.n_head, layer_norm_epsilon=c.layer_norm_epsilon))
    model.load_hf_state_dict({k: v.clone() for k, v in hf.state_dict().items()})
    return model


def reference_greedy(hf: GPT2LMHeadModel, idx: torch.Tensor, n: int, use_cache: bool) -> torch.Tensor:
    """The reference's decoding with the reference's GPT (called only through oracle(...))."""
    return ref_kv_cache.generate_greedy(_load(ref_gpt2, hf), idx, n, use_cache=use_cache)


@pytest.mark.points(3)
def test_cached_greedy_matches_reference_on_a_fresh_model():
    """Batch 4, 3 layers, 6 heads: cached and uncached decoding both equal the reference's
    uncached decoding (this seed's best two logits stay over 1e-3 apart: no float ties)."""
    hf = _hf(seed=11)
    idx = torch.randint(0, 211, (4, 9), generator=torch.Generator().manual_seed(11))
    model = _load(gpt2, hf)
    expected = oracle(reference_greedy, hf, idx, 60, False)
    check.equal(kv_cache.generate_greedy(model, idx, 60, use_cache=True), expected,
                what="greedy ids with the cache", hint="cached_mismatch")
    check.equal(kv_cache.generate_greedy(model, idx, 60, use_cache=False), expected,
                what="greedy ids without the cache", hint="greedy")


@pytest.mark.points(1)
@pytest.mark.parametrize("use_cache", [True, False])
def test_zero_and_one_new_tokens(use_cache):
    """max_new_tokens=0 returns the prompt; 1 returns the prompt plus the argmax token."""
    hf = _hf(seed=12)
    idx = torch.randint(0, 211, (2, 5), generator=torch.Generator().manual_seed(12))
    model = _load(gpt2, hf)
    for n in (0, 1):
        check.equal(kv_cache.generate_greedy(model, idx, n, use_cache=use_cache),
                    oracle(reference_greedy, hf, idx, n, use_cache),
                    what=f"generate_greedy(..., max_new_tokens={n}, use_cache={use_cache})", hint="greedy")


def _meta_cache():
    """A KVCache fed float16 tensors on the meta device: where what it returns lives (one crossing,
    plain data: no meta tensor is recorded)."""
    cache = unwrap(kv_cache.KVCache)(2)
    k = torch.empty(2, 3, 4, 5, dtype=torch.float16, device="meta")
    try:
        cache.update(0, k, k)
        keys, values = cache.update(0, k[:, :, :1], k[:, :, :1])
    except NotImplementedError as exc:
        if "meta" not in str(exc):
            raise  # a stub: NOT STARTED
        # torch's "Cannot copy out of meta tensor": the cache copied keys to another device
        return f"NotImplementedError: {exc} (the cache copied the keys to another device)"
    return [(str(t.dtype), t.device.type, list(t.shape)) for t in (keys, values)]


def meta_places():
    """(only through oracle(...))"""
    return [("torch.float16", "meta", [2, 3, 5, 5])] * 2


@pytest.mark.points(1)
def test_cache_keeps_the_device_it_is_given():
    """Keys and values on the meta device (no GPU needed: nothing is allocated; the first meta
    operations load torch's decompositions, seconds, hence hidden) stay there, in float16."""
    got = hinted("cache_dtype_device", in_one_crossing, kv_cache, _meta_cache)
    check.that(not isinstance(got, str), f"{got}", hint="cache_dtype_device")
    check.equal(got, oracle(meta_places), hint="cache_dtype_device", what="(dtype, device, shape) of keys and values")
