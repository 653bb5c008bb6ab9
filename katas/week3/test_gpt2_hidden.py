"""Hidden tests for week3/gpt2: fresh seeded GPT-2 configurations, expected values from the
reference (loaded with the same transformers state dict) and, for naming mistakes, from
transformers itself."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import graders
from graders import check, oracle, student
from graders.testing import FLOAT32_REDUCTION

pytestmark = pytest.mark.hidden

gpt2 = student("week3.gpt2")
kv_cache = student("week3.kv_cache")
ref_gpt2 = graders.reference("week3.gpt2")

# (n_embd, n_head, n_layer, n_positions, vocab_size, layer_norm_epsilon): odd head counts,
# a deeper stack, a large epsilon that a hard-coded 1e-5 cannot match.
CONFIGS = {
    "6heads-3layers": (48, 6, 3, 40, 97, 1e-5),
    "2heads-eps0.1": (32, 2, 1, 16, 50, 1e-1),
    "3heads-4layers": (36, 3, 4, 24, 130, 1e-3),
}


def _hf(name: str, seed: int = 0) -> GPT2LMHeadModel:
    """A seeded random GPT-2 with non-trivial biases and layer-norm gains."""
    E, H, L, P, V, eps = CONFIGS[name]
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=P, n_embd=E, n_layer=L, n_head=H,
                                       layer_norm_epsilon=eps, initializer_range=0.2,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            if pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif ".ln_" in pname:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    return model


def _load(module, hf: GPT2LMHeadModel):
    c = hf.config
    model = module.GPT(module.GPTConfig(vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd,
                                        n_layer=c.n_layer, n_head=c.n_head, layer_norm_epsilon=c.layer_norm_epsilon))
    model.load_hf_state_dict({k: v.clone() for k, v in hf.state_dict().items()})
    return model


def _tokens(hf, *shape, seed):
    return torch.randint(0, hf.config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _variants(hf: GPT2LMHeadModel, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """transformers' logits with one must-catch mistake built in (to name it)."""
    out = {}
    m = copy.deepcopy(hf)
    for block in m.transformer.h:
        block.mlp.act = torch.nn.GELU()
    out["gelu_variant"] = m(idx).logits
    m = copy.deepcopy(hf)
    for block in m.transformer.h:
        block.attn.c_proj.weight.copy_(block.attn.c_proj.weight.t().clone())
    out["conv1d_transpose"] = m(idx).logits
    m = copy.deepcopy(hf)
    m.transformer.ln_f = torch.nn.Identity()
    out["missing_final_ln"] = m(idx).logits
    if idx.shape[1] < hf.config.n_positions:
        out["position_off_by_one"] = hf(idx, position_ids=torch.arange(1, idx.shape[1] + 1).expand_as(idx)).logits
    return out


def _diagnose(actual, variants, default=None):
    if isinstance(actual, torch.Tensor):
        for mistake, wrong in variants.items():
            if actual.shape == wrong.shape and torch.allclose(actual.detach().double(), wrong.double(),
                                                               rtol=FLOAT32_REDUCTION.rtol, atol=FLOAT32_REDUCTION.atol):
                return mistake
    return default


# Called only through oracle(...): never beside the student's code.


def reference_logits(hf: GPT2LMHeadModel, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _load(ref_gpt2, hf)(idx)


def reference_greedy(hf: GPT2LMHeadModel, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    return _load(ref_gpt2, hf).generate(idx, max_new_tokens, temperature=0)


def mistake_in_logits(out, hf: GPT2LMHeadModel, idx: torch.Tensor) -> str | None:
    return _diagnose(out, _variants(hf, idx))


def filtered_probs(hf: GPT2LMHeadModel, prompt: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """softmax(top_k(transformers' next-token logits / temperature))."""
    with torch.no_grad():
        logits = hf(prompt).logits[0, -1].double() / temperature
    logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
    return logits.softmax(-1)


@pytest.mark.points(3)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_reference_on_fresh_configs(name):
    hf = _hf(name, seed=len(name))
    P = hf.config.n_positions
    for batch, length, seed in ((2, 1, 1), (3, P // 2, 2), (2, P, 3)):
        idx = _tokens(hf, batch, length, seed=seed)
        expected = oracle(reference_logits, hf, idx)
        with torch.no_grad():
            out = _load(gpt2, hf)(idx)
        check.close(out, expected, hint=oracle(mistake_in_logits, out, hf, idx), what=f"logits [{batch}, {length}]",
                    **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_too_long_raises_on_a_fresh_config():
    hf = _hf("2heads-eps0.1", seed=5)
    model = _load(gpt2, hf)
    with check.raises(ValueError):
        model(_tokens(hf, 2, hf.config.n_positions + 1, seed=5))


@pytest.mark.points(2)
def test_greedy_generate_matches_reference():
    hf = _hf("6heads-3layers", seed=6)
    idx = _tokens(hf, 3, 4, seed=6)
    expected = oracle(reference_greedy, hf, idx, 30)
    out = _load(gpt2, hf).generate(idx, 30, temperature=0)
    check.equal(out, expected, hint="sampling", what="greedy ids")


def _chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square p-value; cells expected fewer than 5 times are pooled."""
    n = counts.sum().item()
    big = probs * n >= 5
    obs = torch.cat([counts[big].double(), counts[~big].sum().double().reshape(1)])
    exp = torch.cat([probs[big].double() * n, (probs[~big].sum().double() * n).reshape(1)])
    if exp[-1] < 5:
        obs, exp = obs[:-1].clone(), exp[:-1].clone()
        obs[exp.argmax()] += counts[~big].sum()
        exp[exp.argmax()] += probs[~big].sum().double() * n
    stat = ((obs - exp) ** 2 / exp).sum()
    return torch.special.gammaincc(torch.tensor((len(exp) - 1) / 2, dtype=torch.float64), stat / 2).item()


@pytest.mark.points(2)
@pytest.mark.parametrize("temperature, top_k", [(0.9, 3), (2.0, 20)])
def test_sampling_distribution_matches_reference_logits(temperature, top_k):
    """3000 draws follow softmax(top_k(transformers' logits / temperature)); chi-square at
    p < 1e-6, so a correct sampler fails with probability 1e-6 (seeded: never flaky)."""
    n = 3000
    hf = _hf("3heads-4layers", seed=7)
    prompt = _tokens(hf, 1, 5, seed=7)
    out = _load(gpt2, hf).generate(prompt.expand(n, -1).contiguous(), 1, temperature=temperature, top_k=top_k,
                                   generator=torch.Generator().manual_seed(7))
    check.that(isinstance(out, torch.Tensor) and list(out.shape) == [n, 6] and out.dtype == torch.long
               and bool(((out >= 0) & (out < hf.config.vocab_size)).all()),
               f"generate should return a LongTensor [{n}, 6] of ids in [0, vocab_size)", about=out)
    probs = oracle(filtered_probs, hf, prompt, temperature, top_k)
    drawn = out[:, -1]
    outside = oracle(lambda: int((probs[drawn] == 0).sum()))
    check.that(outside == 0, f"{outside} of {n} sampled tokens are outside the top {top_k}", hint="sampling", about=out)
    p = oracle(lambda: _chi_square_p_value(torch.bincount(drawn, minlength=probs.numel()), probs))
    check.that(p > 1e-6, f"sampled tokens do not follow softmax(top_k(logits / temperature)): chi-square p-value {p:.2g}",
               hint="sampling", about=out)


def positions_not_offset(out, hf, idx):
    """"positions_not_offset" when `out` is transformers' logits with each chunk's positions restarted."""
    with torch.no_grad():
        restarted = torch.tensor([0, 1, 2, 0, 0, 1, 0, 1, 2, 3]).expand_as(idx)
        not_offset = hf(idx, position_ids=restarted).logits
    return _diagnose(out, {"positions_not_offset": not_offset}, default="cache_causal_mask")


@pytest.mark.points(2)
def test_forward_with_cache_matches_reference():
    """Chunks of 3, 1, 2 and 4 tokens through your KVCache equal the reference's uncached
    forward over the 10 tokens."""
    hf = _hf("6heads-3layers", seed=8)
    idx = _tokens(hf, 2, 10, seed=8)
    model = _load(gpt2, hf)
    cache = kv_cache.KVCache(hf.config.n_layer)
    expected = oracle(reference_logits, hf, idx)
    with torch.no_grad():
        parts = [model(idx[:, a:b], cache=cache) for a, b in ((0, 3), (3, 4), (4, 6), (6, 10))]
    out = torch.cat(parts, dim=1) if all(isinstance(p, torch.Tensor) for p in parts) else parts[-1]
    hint = oracle(positions_not_offset, out, hf, idx)
    check.close(out, expected, hint=hint, what="logits of the cached forwards (3 + 1 + 2 + 4 tokens)", **FLOAT32_REDUCTION)


SHARP_ATTENTION = {"rtol": 1e-3, "atol": 1e-3, "reason": (
    "near-one-hot attention over scores ~150 amplifies float32 rounding: correct implementations (matmul, float64 "
    "einsum, per-head loops, transformers) measured up to 7.5e-5 apart; the overflow mistake gives nan")}


def _sharp_attention_hf(seed: int) -> GPT2LMHeadModel:
    """A fresh GPT-2 whose query and key projections are scaled 4x: the largest unmasked
    attention score of every layer is 134 to 167 (measured), past float32's exp range (~88)."""
    hf = _hf("6heads-3layers", seed=seed)
    C = hf.config.n_embd
    with torch.no_grad():
        for block in hf.transformer.h:
            block.attn.c_attn.weight[:, : 2 * C] *= 4.0  # Conv1D [C, 3C]: the q and k columns
    return hf


@pytest.mark.points(1)
def test_attention_with_large_scores():
    """The softmax over scores past 88 must stay finite (subtract the row max): exp overflows
    and inf / inf is nan."""
    hf = _sharp_attention_hf(seed=9)
    idx = _tokens(hf, 2, 40, seed=9)
    expected = oracle(reference_logits, hf, idx)
    with torch.no_grad():
        out = _load(gpt2, hf)(idx)
    check.that(isinstance(out, torch.Tensor) and bool(torch.isfinite(out).all()),
               "logits are not all finite with large attention scores (exp overflow in the softmax?)",
               hint="softmax_overflow", about=out)
    check.close(out, expected, hint="softmax_overflow", what="logits with large attention scores", **SHARP_ATTENTION)
