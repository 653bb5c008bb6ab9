"""Public tests for week3/gpt2: your GPT against transformers' GPT2LMHeadModel.

The oracle is `transformers.GPT2LMHeadModel` loaded from `checkpoints/gpt2-tiny/` (vocab 512,
128 positions, n_embd 64, 2 layers, 4 heads). Your model gets the same weights through
`load_hf_state_dict` and must give the same logits and the same greedy tokens.

When logits differ, the test also runs transformers with each must-catch mistake built in
(the exact GELU, an untransposed attn.c_proj, no final layer norm, positions shifted by
one, ...). If your output matches one of those variants, the failure names that mistake.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from graders import check, fixtures, in_one_crossing, oracle, student, unwrap
from graders.testing import FLOAT32_REDUCTION, hinted

gpt2 = student("week3.gpt2")
kv_cache = student("week3.kv_cache")

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "gpt2-tiny"

# Whole-network logits (magnitude up to ~8) differ between correct float32 implementations
# by up to ~1.5e-5 (measured: matmul vs einsum vs float64 internals), over the float32 row
# of the table; the subtlest must-catch mistake (the exact GELU) moves them by ~1.5e-3.
# Hence FLOAT32_REDUCTION (rtol = atol = 1e-4) for the logits, and for telling mistakes apart.


# --- oracles --------------------------------------------------------------------------------


@functools.cache
def _hf() -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(CHECKPOINT).eval()


def _state_dict() -> dict[str, torch.Tensor]:
    """transformers' own state dict (with `lm_head.weight`), copied so no test can alter it."""
    return {k: v.clone() for k, v in _hf().state_dict().items()}


@torch.no_grad()
def _logits(model: GPT2LMHeadModel, idx: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    return model(idx, position_ids=position_ids).logits


def _variant(change) -> GPT2LMHeadModel:
    """A copy of the tiny checkpoint with one mistake built in (for naming the mistake)."""
    model = copy.deepcopy(_hf())
    change(model)
    return model.eval()


def _exact_gelu(model):
    for block in model.transformer.h:
        block.mlp.act = torch.nn.GELU()


def _square_c_proj_untransposed(model):
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_proj.weight.copy_(block.attn.c_proj.weight.t().clone())


def _no_final_ln(model):
    model.transformer.ln_f = torch.nn.Identity()


def _mistake_variants(idx: torch.Tensor) -> dict[str, torch.Tensor]:
    T = idx.shape[1]
    variants = {
        "gelu_variant": _logits(_variant(_exact_gelu), idx),
        "conv1d_transpose": _logits(_variant(_square_c_proj_untransposed), idx),
        "missing_final_ln": _logits(_variant(_no_final_ln), idx),
    }
    if T < _hf().config.n_positions:
        variants["position_off_by_one"] = _logits(_hf(), idx, torch.arange(1, T + 1).expand_as(idx))
    return variants


def _diagnose(actual, variants: dict[str, torch.Tensor], default: str | None = None) -> str | None:
    """The mistake whose variant output `actual` reproduces, else `default`."""
    if isinstance(actual, torch.Tensor):
        for mistake, wrong in variants.items():
            if actual.shape == wrong.shape and torch.allclose(actual.detach().double(), wrong.double(),
                                                               rtol=FLOAT32_REDUCTION.rtol, atol=FLOAT32_REDUCTION.atol):
                return mistake
    return default


# Called only through oracle(...): expected values (and the mistakes' outputs, which name the
# hint) are computed where the checks judge, never beside the student's code.


def transformers_logits(idx: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    return _logits(_hf(), idx, position_ids)


def mistake_in_logits(out, idx: torch.Tensor) -> str | None:
    """When `out` is not transformers' logits: the mistake whose variant it reproduces."""
    expected = _logits(_hf(), idx)
    if isinstance(out, torch.Tensor) and out.shape == expected.shape \
            and not torch.allclose(out.double(), expected.double(), rtol=FLOAT32_REDUCTION.rtol, atol=FLOAT32_REDUCTION.atol):
        return _diagnose(out, _mistake_variants(idx))
    return None


def transformers_greedy(idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    with torch.no_grad():
        return _hf().generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=max_new_tokens,
                              do_sample=False, eos_token_id=None, pad_token_id=0)


# --- the student's model ----------------------------------------------------------------------


def _config(hf_config: GPT2Config):
    return gpt2.GPTConfig(
        vocab_size=hf_config.vocab_size, n_positions=hf_config.n_positions, n_embd=hf_config.n_embd,
        n_layer=hf_config.n_layer, n_head=hf_config.n_head, layer_norm_epsilon=hf_config.layer_norm_epsilon,
    )


def _loaded(state_dict: dict[str, torch.Tensor]):
    model = gpt2.GPT(_config(_hf().config))
    model.load_hf_state_dict(state_dict)
    return model


def _tokens(*shape: int, seed: int) -> torch.Tensor:
    return torch.randint(0, _hf().config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


# --- structure --------------------------------------------------------------------------------


@pytest.mark.points(1)
def test_forward_shape_and_dtype():
    """A freshly built model (your own init) maps [B, T] token ids to [B, T, V] float32 logits."""
    torch.manual_seed(0)
    model = gpt2.GPT(_config(_hf().config))
    with torch.no_grad():
        logits = model(_tokens(2, 5, seed=0))
    check.that(isinstance(logits, torch.Tensor), f"forward should return a tensor, got {type(logits).__name__}", about=logits)
    check.equal(list(logits.shape), [2, 5, 512], what="logits shape [B, T, vocab_size]")
    check.equal(str(logits.dtype), "torch.float32", what="logits dtype")


# --- loading real weights ---------------------------------------------------------------------


@pytest.mark.points(4)
@pytest.mark.parametrize("batch, length", [(3, 1), (3, 9), (2, 128)])
def test_logits_match_transformers(batch, length):
    """Same weights, same tokens, same logits: lengths 1, 9 and the full 128 positions."""
    idx = _tokens(batch, length, seed=length)
    expected = oracle(transformers_logits, idx)
    model = _loaded(_state_dict())
    with torch.no_grad():
        out = model(idx)
    check.close(out, expected, hint=oracle(mistake_in_logits, out, idx), what="logits", **FLOAT32_REDUCTION)


def zeroed_branch_logits(state, idx, position_ids=None):
    """transformers with `state` loaded (called only through oracle(...))."""
    model = GPT2LMHeadModel(_hf().config).eval()
    model.load_state_dict(state)
    return _logits(model, idx, position_ids)


def zeroed_branch_mistake(state, idx, out):
    """The mistake whose closed-form zeroed-branch logits `out` reproduces (only through oracle(...))."""
    eps = _hf().config.layer_norm_epsilon
    ln = lambda x, name: F.layer_norm(x, x.shape[-1:], state[f"transformer.{name}.weight"], state[f"transformer.{name}.bias"], eps)
    emb = state["transformer.wte.weight"][idx] + state["transformer.wpe.weight"][: idx.shape[1]]
    post_ln = emb
    for i in range(_hf().config.n_layer):  # x = ln_1(x + 0); x = ln_2(x + 0)
        post_ln = ln(ln(post_ln, f"h.{i}.ln_1"), f"h.{i}.ln_2")
    variants = {
        "post_ln": ln(post_ln, "ln_f") @ state["transformer.wte.weight"].T,
        "missing_final_ln": emb @ state["transformer.wte.weight"].T,
        "position_off_by_one": zeroed_branch_logits(state, idx, torch.arange(1, idx.shape[1] + 1).expand_as(idx)),
    }
    return _diagnose(out, variants)


@pytest.mark.points(2)
def test_residual_stream_is_pre_ln_with_final_ln():
    """With every sub-layer's output projection zeroed, the blocks add nothing to the residual
    stream, so GPT-2 reduces to  logits = ln_f(wte[idx] + wpe[pos]) @ wte.T.  This isolates
    where the layer norms sit (pre-LN: inside the branches, never on the stream) and the
    position ids."""
    state = _state_dict()
    for key in state:
        if key.endswith(("attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")):
            state[key].zero_()
    idx = _tokens(2, 12, seed=3)
    expected = oracle(zeroed_branch_logits, state, idx)

    model = _loaded(state)
    with torch.no_grad():
        out = model(idx)
    check.close(out, expected, hint=oracle(zeroed_branch_mistake, state, idx, out),
                what="logits of the zeroed-branch model", **FLOAT32_REDUCTION)


@pytest.mark.points(2)
def test_head_is_tied_when_the_file_has_no_lm_head():
    """The checkpoint file stores no `lm_head.weight`: the head must BE the token embedding."""
    state = load_file(CHECKPOINT / "model.safetensors")
    assert "lm_head.weight" not in state  # the premise of this test, not a student check
    idx = _tokens(2, 10, seed=4)
    model = _loaded(state)
    with torch.no_grad():
        out = model(idx)
    check.close(out, _logits(_hf(), idx), hint="untied_head", what="logits after loading model.safetensors", **FLOAT32_REDUCTION)


def _parameter_elements(model) -> int:
    """Glue (one crossing): the elements of the model's parameters, each shared Parameter counted once."""
    return sum(p.numel() for p in unwrap(model).parameters())


def transformers_parameter_elements() -> int:
    """transformers' GPT-2, whose head is tied to wte (only through oracle(...))."""
    return sum(p.numel() for p in _hf().parameters())


@pytest.mark.points(1)
def test_head_is_the_same_parameter_as_the_token_embedding():
    """Tied means one shared Parameter, not a copy of wte's values in a head of its own: after
    loading, the model holds exactly as many parameter elements as transformers' GPT-2, which
    counts the tied head once (a separate [vocab_size, n_embd] head adds 32,768)."""
    model = _loaded(load_file(CHECKPOINT / "model.safetensors"))
    elements = in_one_crossing(gpt2, _parameter_elements, model)
    check.equal(elements, oracle(transformers_parameter_elements), hint="untied_head",
                what="parameter elements of the loaded model (wte and lm_head shared)")


def _kept_config(model):
    """Glue (one crossing): the fields of `model.config`, or None when the model keeps no config."""
    config = getattr(unwrap(model), "config", None)
    return None if config is None else {name: getattr(config, name, None) for name in
                                        ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                                         "layer_norm_epsilon")}


def transformers_config_fields():
    """The tiny checkpoint's configuration, field by field (only through oracle(...))."""
    c = _hf().config
    return {"vocab_size": c.vocab_size, "n_positions": c.n_positions, "n_embd": c.n_embd, "n_layer": c.n_layer,
            "n_head": c.n_head, "layer_norm_epsilon": c.layer_norm_epsilon}


@pytest.mark.points(1)
def test_model_keeps_its_config():
    """GPT keeps the config it was built with as `self.config` (week3/kv_cache reads
    `model.config.n_layer`)."""
    model = gpt2.GPT(_config(_hf().config))
    check.equal(in_one_crossing(gpt2, _kept_config, model), oracle(transformers_config_fields),
                what="model.config's fields", hint="config_kept")


@pytest.mark.points(1)
def test_forward_beyond_n_positions_raises():
    """129 tokens do not fit the 128-entry position table: raise ValueError before the lookup
    (an IndexError from the embedding is not the contract)."""
    model = _loaded(_state_dict())
    with check.raises(ValueError):
        model(_tokens(1, 129, seed=5))


@pytest.mark.points(1)
def test_loads_state_dicts_with_the_old_attention_buffers():
    """Older transformers versions put each layer's causal-mask buffers in the state dict,
    `transformer.h.{i}.attn.bias` [1, 1, P, P] and `attn.masked_bias`: skip them (they are
    not c_attn.bias, which must be loaded)."""
    state = _state_dict()
    P = _hf().config.n_positions
    for i in range(_hf().config.n_layer):
        state[f"transformer.h.{i}.attn.bias"] = torch.ones(P, P, dtype=torch.bool).tril().view(1, 1, P, P)
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    idx = _tokens(2, 8, seed=12)
    expected = oracle(transformers_logits, idx)
    model = gpt2.GPT(_config(_hf().config))
    hinted("state_dict_keys", model.load_hf_state_dict, state)
    with torch.no_grad():
        out = model(idx)
    check.close(out, expected, hint="state_dict_keys", what="logits after loading a state dict with attn.bias buffers",
                **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_forward_fills_the_position_table_exactly():
    """ValueError only PAST the table: 120 cached positions + 8 new tokens = 128 = n_positions
    fits, and gives the last 8 positions' logits. (Uses your week3/kv_cache KVCache.)"""
    idx = _tokens(1, 128, seed=13)
    expected = oracle(lambda: transformers_logits(idx)[:, 120:])
    model = _loaded(_state_dict())
    cache = kv_cache.KVCache(_hf().config.n_layer)
    with torch.no_grad():
        model(idx[:, :120], cache=cache)
        out = hinted("position_limit", model, idx[:, 120:], cache=cache)
    check.close(out, expected, hint="position_limit", what="logits of tokens 120..127 after a 120-token prefill",
                **FLOAT32_REDUCTION)


# --- generation -------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_greedy_generate_matches_transformers():
    """temperature=0 is greedy: the same 40 tokens as transformers' greedy `generate`."""
    idx = _tokens(2, 6, seed=6)
    expected = oracle(transformers_greedy, idx, 40)
    model = _loaded(_state_dict())
    out = model.generate(idx, 40, temperature=0)
    check.equal(out, expected, hint="sampling", what="generated ids")


@pytest.mark.points(1)
def test_top_k_1_sampling_is_greedy():
    """Sampling from the single best token is greedy decoding, whatever the temperature."""
    idx = _tokens(2, 5, seed=7)
    expected = oracle(transformers_greedy, idx, 20)
    model = _loaded(_state_dict())
    out = model.generate(idx, 20, temperature=0.7, top_k=1, generator=torch.Generator().manual_seed(7))
    check.equal(out, expected, hint="sampling", what="generated ids (top_k=1)")


def _chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square test of `counts` against `probs`; categories expected fewer than 5
    times are pooled into one. Returns the p-value (the chi-square survival function)."""
    n = counts.sum().item()
    big = probs * n >= 5
    obs = torch.cat([counts[big].double(), counts[~big].sum().double().reshape(1)])
    exp = torch.cat([probs[big].double() * n, (probs[~big].sum().double() * n).reshape(1)])
    if exp[-1] < 5:  # nothing (or too little) to pool: drop the pool cell, folding it into the largest
        obs, exp = obs[:-1].clone(), exp[:-1].clone()
        obs[exp.argmax()] += counts[~big].sum()
        exp[exp.argmax()] += probs[~big].sum().double() * n
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = len(exp) - 1
    return torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), stat / 2).item()


def filtered_probs(prompt, temperature, top_k):
    """softmax(top_k(logits / temperature)) of transformers' next-token logits (only through oracle(...))."""
    logits = _logits(_hf(), prompt)[0, -1].double() / temperature
    if top_k is not None:
        logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
    return logits.softmax(-1)


@pytest.mark.points(2)
@pytest.mark.parametrize("temperature, top_k", [(0.7, 8), (1.5, None), (None, None)])
def test_sampling_follows_the_filtered_distribution(temperature, top_k):
    """4000 draws of the next token (one prompt repeated 4000 times in the batch) follow
    softmax(top_k(logits / temperature)), with the probabilities from transformers' logits.
    temperature None: not passed, so the signature's default, 1.0.

    Chi-square goodness of fit at p < 1e-6: a correct sampler fails with probability 1e-6
    (and the generator is seeded, so a result never changes between runs). With these
    sample sizes the test rejects temperature multiplied instead of divided, or a top-k that
    keeps one token too many, with near certainty."""
    n = 4000
    prompt = _tokens(1, 4, seed=8)
    model = _loaded(_state_dict())
    options = {} if temperature is None else {"temperature": temperature}
    out = model.generate(prompt.expand(n, -1).contiguous(), 1, top_k=top_k,
                         generator=torch.Generator().manual_seed(8), **options)
    check.that(isinstance(out, torch.Tensor) and list(out.shape) == [n, 5] and out.dtype == torch.long
               and bool(((out >= 0) & (out < _hf().config.vocab_size)).all()),
               f"generate should return a LongTensor [{n}, 5] (prompt + 1 token) of ids in [0, vocab_size)", about=out)

    probs = oracle(filtered_probs, prompt, 1.0 if temperature is None else temperature, top_k)
    drawn = out[:, -1]
    if top_k is not None:
        outside = oracle(lambda: int((probs[drawn] == 0).sum()))
        check.that(outside == 0, f"{outside} of {n} sampled tokens are outside the top {top_k}", hint="sampling", about=out)
    p = oracle(lambda: _chi_square_p_value(torch.bincount(drawn, minlength=probs.numel()), probs))
    check.that(p > 1e-6, f"the sampled tokens do not follow softmax(top_k(logits / temperature)) "
                         f"(temperature={1.0 if temperature is None else temperature}"
                         f"{', not passed: the default' if temperature is None else ''}): "
                         f"chi-square p-value {p:.2g} over {n} draws",
               hint="default_temperature" if temperature is None else "sampling", about=out)


@pytest.mark.points(1)
def test_a_seeded_generator_makes_sampling_reproducible():
    """Two calls with generators seeded alike draw the same tokens; another seed draws others
    (32 rows x 3 tokens at temperature 1.5: equal by chance with negligible probability)."""
    prompt = _tokens(1, 4, seed=14).expand(32, -1).contiguous()
    model = _loaded(_state_dict())
    torch.manual_seed(0)  # the global generator, which a seeded call must not use
    first = model.generate(prompt, 3, temperature=1.5, generator=torch.Generator().manual_seed(21))
    again = model.generate(prompt, 3, temperature=1.5, generator=torch.Generator().manual_seed(21))
    other = model.generate(prompt, 3, temperature=1.5, generator=torch.Generator().manual_seed(22))
    check.equal(again, first, hint="generator_ignored", what="tokens drawn with a generator seeded like the first call's")
    check.that(isinstance(other, torch.Tensor) and isinstance(first, torch.Tensor) and other.shape == first.shape
               and not torch.equal(other, first),
               "generators with different seeds drew exactly the same 96 tokens", hint="generator_ignored")


@pytest.mark.points(1)
def test_tiny_temperature_is_greedy():
    """temperature=1e-5 divides logits (|logit| up to ~8) into the hundreds of thousands: the
    softmax must subtract the row maximum (exp overflows past ~88). Along this decode the best
    two logits stay more than 1e-2 apart, so the draw is the argmax (exp(-1000) = 0)."""
    idx = _tokens(2, 5, seed=14)
    expected = oracle(transformers_greedy, idx, 12)
    model = _loaded(_state_dict())
    out = hinted("softmax_overflow", model.generate, idx, 12, temperature=1e-5, generator=torch.Generator().manual_seed(15))
    check.equal(out, expected, hint="softmax_overflow", what="tokens sampled at temperature 1e-5")


@pytest.mark.points(1)
def test_generate_does_not_crop_the_context():
    """A 126-token prompt and 5 new tokens overrun the 128 positions on the third step:
    generate raises ValueError (forward does), it does not crop the context to the last 128."""
    model = _loaded(_state_dict())
    with check.raises(ValueError, hint="context_cropped"):
        model.generate(_tokens(1, 126, seed=16), 5, temperature=0)


# --- the cache path of forward (needs week3/kv_cache's KVCache) -------------------------------


@pytest.mark.points(2)
def test_forward_with_cache_matches_full_forward():
    """Prefill 5 tokens, then 1, then 3, through one KVCache: the concatenated logits equal
    your own uncached forward over all 9 tokens, and transformers' logits.
    (Uses your week3/kv_cache KVCache.)"""
    idx = _tokens(2, 9, seed=9)
    model = _loaded(_state_dict())
    cache = kv_cache.KVCache(_hf().config.n_layer)
    with torch.no_grad():
        parts = [model(idx[:, :5], cache=cache), model(idx[:, 5:6], cache=cache), model(idx[:, 6:], cache=cache)]
        full = model(idx)
    out = torch.cat(parts, dim=1) if all(isinstance(p, torch.Tensor) for p in parts) else parts[-1]
    hint = oracle(lambda: _diagnose(out, {"positions_not_offset": transformers_logits(  # positions not offset
        idx, torch.tensor([0, 1, 2, 3, 4, 0, 0, 1, 2]).expand_as(idx))}, default="cache_causal_mask"))
    check.close(out, full, hint=hint, what="cached logits (5 + 1 + 3 tokens) vs your uncached forward", **FLOAT32_REDUCTION)
    check.close(out, _logits(_hf(), idx), what="cached logits vs transformers", **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_forward_with_cache_beyond_n_positions_raises():
    """120 cached positions + 9 new tokens > 128: ValueError. (Uses your week3/kv_cache KVCache.)"""
    model = _loaded(_state_dict())
    cache = kv_cache.KVCache(_hf().config.n_layer)
    with torch.no_grad():
        model(_tokens(1, 120, seed=10), cache=cache)
        with check.raises(ValueError):
            model(_tokens(1, 9, seed=11), cache=cache)


# --- golden data ------------------------------------------------------------------------------


@pytest.mark.points(1)
def test_golden_fixture():
    """Pinned reference logits on the tiny checkpoint (guards against oracle drift across
    transformers versions)."""
    data = fixtures.load("week3/gpt2")
    model = _loaded(_state_dict())
    with torch.no_grad():
        out = model(data["idx"])
    check.close(out, data["logits"], what="logits", **FLOAT32_REDUCTION)
