"""Public tests for week2/attention: oracles are torch's own attention and softmax.

Expected values are computed inline in the check or through `oracle(...)`: never in the
process that runs your code when grading (see graders/oracle.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student
from graders.testing import randn

attention = student("week2.attention")


def bottom_right(q_len, k_len):
    """The causal mask, built independently: the last q_len rows of the k_len x k_len triangle."""
    return torch.ones(k_len, k_len, dtype=torch.bool).tril()[k_len - q_len:]


@st.composite
def attention_shapes(draw, causal_ok=False):
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    lk = draw(st.integers(1, 9))
    lq = draw(st.integers(1, lk)) if causal_ok else draw(st.integers(1, 9))
    d, dv = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    return tuple(batch), lq, lk, d, dv, seed


def qkv(batch, lq, lk, d, dv, seed, dtype=torch.float32, scale=1.0):
    return (randn(*batch, lq, d, seed=seed, dtype=dtype, scale=scale),
            randn(*batch, lk, d, seed=seed + 1, dtype=dtype, scale=scale),
            randn(*batch, lk, dv, seed=seed + 2, dtype=dtype))


# --- softmax -----------------------------------------------------------------------------


@pytest.mark.points(2)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_softmax_matches_torch_on_every_axis(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = randn(*shape, seed=data.draw(st.integers(0, 2**16), label="seed"), scale=3.0)
    check.close(attention.softmax(x, dim=dim), torch.softmax(x, dim=dim), hint="wrong_axis")


@pytest.mark.points(1)
def test_softmax_default_axis_is_last():
    x = randn(3, 4, 5, seed=1)
    check.close(attention.softmax(x), torch.softmax(x, dim=-1), hint="wrong_axis")


@pytest.mark.points(2)
@pytest.mark.parametrize("magnitude", [1e2, 1e4])
def test_softmax_is_stable_for_large_inputs(magnitude):
    x = randn(4, 6, seed=2) * magnitude
    out = attention.softmax(x, dim=-1)
    check.that(bool(torch.isfinite(out).all()), f"softmax of values around ±{magnitude:g} contains inf or nan",
               hint="overflow", about=out)
    check.close(out, torch.softmax(x, dim=-1), hint="overflow")


@pytest.mark.points(1)
def test_softmax_gives_zero_weight_to_minus_inf():
    x = randn(3, 5, seed=3)
    x[:, 1] = float("-inf")
    x[0, 3] = float("-inf")
    check.close(attention.softmax(x, dim=-1), torch.softmax(x, dim=-1))


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_softmax_keeps_dtype(dtype):
    x = randn(2, 7, seed=4, dtype=dtype)
    check.close(attention.softmax(x, dim=-1), torch.softmax(x, dim=-1))


# --- causal_mask -------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_causal_mask_square(n):
    check.equal(attention.causal_mask(n), torch.ones(n, n, dtype=torch.bool).tril(), hint="causal_diagonal")


@pytest.mark.points(2)
@pytest.mark.parametrize("q_len,k_len", [(1, 6), (2, 4), (3, 7), (4, 4)])
def test_causal_mask_with_cache_offset(q_len, k_len):
    check.equal(attention.causal_mask(q_len, k_len), bottom_right(q_len, k_len), hint="cache_offset")


# --- scaled_dot_product_attention --------------------------------------------------------


@pytest.mark.points(3)
@given(shapes=attention_shapes())
def test_sdpa_matches_torch(shapes):
    q, k, v = qkv(*shapes)
    check.close(attention.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                hint="missing_scale")


@pytest.mark.points(1)
def test_sdpa_scales_by_query_width_not_value_width():
    q, k, v = qkv((2,), 5, 6, 16, 3, seed=5, scale=2.0)
    check.close(attention.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                hint="missing_scale")


@pytest.mark.points(1)
def test_sdpa_weights_each_query_over_keys():
    # One query, keys that differ: the output must be a convex combination of the values
    # under a softmax over the keys, not over the queries.
    q, k, v = qkv((1,), 4, 3, 8, 2, seed=6, scale=2.0)
    check.close(attention.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                hint="wrong_axis")


@pytest.mark.points(2)
@given(shapes=attention_shapes(), data=st.data())
def test_sdpa_boolean_mask(shapes, data):
    batch, lq, lk, d, dv, seed = shapes
    q, k, v = qkv(*shapes)
    g = torch.Generator().manual_seed(seed + 3)
    mask = torch.rand(*batch, lq, lk, generator=g) < 0.6
    mask[..., 0] = True  # every query keeps at least one key
    if data.draw(st.booleans(), label="broadcast mask"):
        mask = mask[..., :1, :, :] if len(batch) else mask  # a mask broadcast over a batch dim
    expected = oracle(F.scaled_dot_product_attention, q, k, v, attn_mask=mask)
    check.close(attention.scaled_dot_product_attention(q, k, v, mask=mask), expected, hint="mask_polarity")


@pytest.mark.points(2)
@pytest.mark.parametrize("n", [1, 4, 7])
def test_sdpa_causal_square(n):
    q, k, v = qkv((2, 3), n, n, 8, 4, seed=7)
    check.close(attention.scaled_dot_product_attention(q, k, v, is_causal=True),
                F.scaled_dot_product_attention(q, k, v, is_causal=True), hint="causal_diagonal")


@pytest.mark.points(2)
@pytest.mark.parametrize("q_len,k_len", [(1, 5), (3, 8), (2, 3)])
def test_sdpa_causal_with_cache_offset(q_len, k_len):
    # torch's is_causal aligns top-left when Lq != Lk, so the oracle gets the mask explicitly.
    q, k, v = qkv((2,), q_len, k_len, 8, 4, seed=8)
    expected = oracle(F.scaled_dot_product_attention, q, k, v, attn_mask=bottom_right(q_len, k_len))
    check.close(attention.scaled_dot_product_attention(q, k, v, is_causal=True), expected, hint="cache_offset")


@pytest.mark.points(1)
def test_sdpa_mask_and_causal_combine():
    q, k, v = qkv((2,), 5, 5, 8, 4, seed=9)
    padding = torch.tensor([True, True, True, False, True]).expand(5, 5)
    mask = padding.clone()
    mask[3, 0] = True  # row 3 only had position 3, which the padding removes
    expected = oracle(F.scaled_dot_product_attention, q, k, v, attn_mask=bottom_right(5, 5) & mask)
    check.close(attention.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True), expected,
                hint="mask_polarity")


def torch_sdpa_in_float64(q, k, v):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double()).float()


@pytest.mark.points(1)
def test_sdpa_is_stable_for_large_logits():
    q, k, v = qkv((2,), 4, 6, 8, 4, seed=10, scale=60.0)  # logits of order 1e3-1e4
    expected = oracle(torch_sdpa_in_float64, q, k, v)
    out = attention.scaled_dot_product_attention(q, k, v)
    check.that(bool(torch.isfinite(out).all()), "attention with large logits returned inf or nan",
               hint="overflow", about=out)
    check.close(out, expected, hint="overflow")


@pytest.mark.points(1)
def test_sdpa_keeps_dtype():
    q, k, v = qkv((2,), 3, 4, 8, 4, seed=11, dtype=torch.float64)
    check.close(attention.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def torch_sdpa_gradients(q, k, v, mask):
    """d(loss)/d(q, k, v) for with_grad's loss: (output * fixed standard-normal weight).sum()."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.autograd.grad((out * weight).sum(), (q, k, v))


@pytest.mark.points(1)
def test_sdpa_gradients_match_torch():
    q, k, v = (t.requires_grad_() for t in qkv((2,), 3, 5, 4, 3, seed=12, dtype=torch.float64))
    expected = oracle(torch_sdpa_gradients, q, k, v, bottom_right(3, 5))
    got = attention.scaled_dot_product_attention.with_grad(q, k, v, is_causal=True)
    for i, name in enumerate("qkv"):
        check.close(got.inputs[name], expected[i], what=f"gradient of {name}")


# --- attention_numpy ---------------------------------------------------------------------


@pytest.mark.points(1)
def test_attention_numpy_matches_golden_fixture():
    data = fixtures.load("week2/attention")
    q, k, v, mask = (data[f"np_{n}"].numpy() for n in ("q", "k", "v", "mask"))
    check.close(attention.attention_numpy(q, k, v), data["np_out"].numpy())
    check.close(attention.attention_numpy(q, k, v, mask), data["np_out_masked"].numpy(), hint="mask_polarity")


@pytest.mark.points(1)
def test_attention_numpy_keeps_float32():
    q, k, v = (t.numpy() for t in qkv((2,), 3, 4, 8, 5, seed=13))
    out = attention.attention_numpy(q, k, v)
    check.that(isinstance(out, np.ndarray) and out.dtype == np.float32,
               f"float32 inputs must give a float32 array, got {getattr(out, 'dtype', type(out).__name__)}",
               hint="numpy_dtype", about=out)


@pytest.mark.points(1)
def test_attention_numpy_matches_torch():
    q, k, v = qkv((2, 2), 4, 6, 8, 3, seed=14, dtype=torch.float64)
    mask = bottom_right(4, 6).numpy()
    expected = oracle(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(mask)).numpy())
    check.close(attention.attention_numpy(q.numpy(), k.numpy(), v.numpy(), mask), expected, hint="cache_offset")


# --- MultiHeadSelfAttention --------------------------------------------------------------


def seeded_torch_mha(d_model, n_heads, bias, seed):
    """torch's own multi-head attention with seeded weights: the test's weights, for both sides."""
    torch.manual_seed(seed)
    return torch.nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True).eval()


def student_mha(weights, d_model, n_heads, causal, bias):
    mha = attention.MultiHeadSelfAttention(d_model, n_heads, causal=causal, bias=bias)
    check.equal(list(mha.w_qkv.weight.shape), [3 * d_model, d_model], what="w_qkv.weight shape")
    check.equal(list(mha.w_o.weight.shape), [d_model, d_model], what="w_o.weight shape")
    with torch.no_grad():
        mha.w_qkv.weight.copy_(weights.in_proj_weight)
        mha.w_o.weight.copy_(weights.out_proj.weight)
        if bias:
            mha.w_qkv.bias.copy_(weights.in_proj_bias)
            mha.w_o.bias.copy_(weights.out_proj.bias)
    return mha


def run_torch_mha(module, x, allowed):
    """nn.MultiheadAttention's boolean attn_mask means True = *blocked*: the opposite convention."""
    with torch.no_grad():
        return module(x, x, x, attn_mask=None if allowed is None else ~allowed, need_weights=False)[0]


@pytest.mark.points(3)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_multihead_attention(causal, bias):
    d_model, n_heads, T = 16, 4, 6
    weights = seeded_torch_mha(d_model, n_heads, bias, seed=15)
    mha = student_mha(weights, d_model, n_heads, causal, bias)
    x = randn(2, T, d_model, seed=16)
    expected = oracle(run_torch_mha, weights, x, torch.ones(T, T, dtype=torch.bool).tril() if causal else None)
    with torch.no_grad():
        out = mha(x)
    check.close(out, expected, hint="head_order")


@pytest.mark.points(2)
def test_mha_padding_mask_combines_with_causal():
    d_model, n_heads, T = 12, 3, 5
    weights = seeded_torch_mha(d_model, n_heads, True, seed=17)
    mha = student_mha(weights, d_model, n_heads, True, True)
    x = randn(2, T, d_model, seed=18)
    keep = torch.tensor([[True] * T, [True, True, True, False, False]])  # sequence 1 is padded
    mask = keep[:, None, None, :]  # (B, 1, 1, T), broadcast over heads and queries
    # torch wants one (T, T) mask per sequence and head: (B, 1, T, T) -> (B * heads, T, T)
    expected = oracle(run_torch_mha, weights, x,
                      (torch.ones(T, T, dtype=torch.bool).tril() & mask).expand(2, n_heads, T, T).reshape(-1, T, T))
    with torch.no_grad():
        out = mha(x, mask=mask)
    check.close(out, expected, hint="mask_polarity")


@pytest.mark.points(1)
def test_mha_matches_golden_fixture():
    data = fixtures.load("week2/attention")
    mha = attention.MultiHeadSelfAttention(data["mha_d_model"], data["mha_n_heads"])
    with torch.no_grad():
        for name in ("w_qkv.weight", "w_qkv.bias", "w_o.weight", "w_o.bias"):
            module, param = name.split(".")
            getattr(getattr(mha, module), param).copy_(data[f"mha_{name}"])
        out = mha(data["mha_x"])
    check.close(out, data["mha_out"], hint="head_order")


@pytest.mark.points(1)
def test_mha_gradients_reach_every_parameter():
    torch.manual_seed(19)
    mha = attention.MultiHeadSelfAttention(8, 2)
    got = mha.with_grad(randn(2, 4, 8, seed=20))
    check.equal(sorted(got.parameters), ["w_o.bias", "w_o.weight", "w_qkv.bias", "w_qkv.weight"],
                what="trainable parameters")
    for name, grad in got.parameters.items():
        check.that(grad is not None and bool(grad.abs().sum() > 0),
                   f"parameter {name} received no gradient: is it used in forward?", about=grad)


# --- extreme magnitudes, every dtype, every documented argument -----------------------------

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def torch_softmax_in_float64(x, dim=-1):
    return torch.softmax(x.double(), dim=dim).to(x.dtype)


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_at_plus_and_minus_1e4_in_every_dtype(dtype):
    # row 0 around +1e4, row 1 around -1e4 everywhere: subtracting 0, or the max of the whole
    # tensor, instead of each row's own max leaves row 1 as exp(-1e4) = 0 everywhere, and 0 / 0
    x = torch.stack([randn(6, seed=21, scale=3.0, shift=1e4), randn(6, seed=22, scale=3.0, shift=-1e4)]).to(dtype)
    expected = oracle(torch_softmax_in_float64, x)
    out = attention.softmax(x, dim=-1)
    check.close(out[0], expected[0], hint="overflow", what="row around +1e4")
    check.close(out[1], expected[1], hint="underflow", what="row around -1e4 everywhere")
    # the same rows along dim 0
    out = attention.softmax(x.T.contiguous(), dim=0)
    check.close(out[:, 1], expected[1], hint="underflow", what="column around -1e4 everywhere (dim=0)")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_softmax_masked_entries_are_exactly_zero(dtype):
    x = randn(3, 6, seed=23, scale=1e4, dtype=dtype)
    x[:, 2] = float("-inf")
    x[1, 4] = float("-inf")
    out = attention.softmax(x, dim=-1)
    masked = torch.isinf(x)  # withhold: input
    zeros = out[masked]
    check.that(bool((zeros == 0).all()), f"-inf entries must get weight exactly 0, got {zeros.tolist()}",
               hint="masked_not_zero", about=out)
    check.close(out, oracle(torch_softmax_in_float64, x), hint="overflow")


def extreme_qkv(kinds, lk, dv, seed, dtype):
    """q, k, v whose scaled scores are exact multiples of 1024 of size ~1e4 in every dtype.

    d = 4 (scale 1/2). q = 64 A, k = 32 B with small integers A, B, so every product and
    partial sum is exact even in bfloat16 and score = 1024 * (A B^T). Column 0 of A is +3
    ("pos": every score of the row ~ +1e4) or -3 ("neg": every score ~ -1e4); columns 2, 3
    are -1..1 noise, so rows have ties and several keys share the weight."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-1, 2, (len(kinds), 4), generator=g).double()
    b = torch.randint(-1, 2, (lk, 4), generator=g).double()
    a[:, 0] = torch.tensor([3.0 if kind == "pos" else -3.0 for kind in kinds])
    a[:, 1], b[:, 0], b[:, 1] = 0.0, 3.0, 0.0
    v = randn(lk, dv, seed=seed + 1, dtype=dtype)
    return (64 * a).to(dtype), (32 * b).to(dtype), v


def torch_sdpa_to(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask).to(q.dtype)


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_at_logits_of_1e4_in_every_dtype(dtype):
    q, k, v = extreme_qkv(["pos", "neg", "pos", "neg"], 6, 3, seed=24, dtype=dtype)
    expected = oracle(torch_sdpa_to, q, k, v)
    out = attention.scaled_dot_product_attention(q, k, v)
    check.equal(str(out.dtype), str(dtype), what="output dtype", hint="sdpa_dtype")
    check.close(out[0::2], expected[0::2], hint="overflow", what="rows with scores ~ +1e4")
    check.close(out[1::2], expected[1::2], hint="underflow", what="rows with every score ~ -1e4")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sdpa_keeps_half_dtypes(dtype):
    q, k, v = qkv((2,), 3, 5, 8, 4, seed=25, dtype=dtype)
    expected = oracle(torch_sdpa_to, q, k, v, bottom_right(3, 5))
    out = attention.scaled_dot_product_attention(q, k, v, is_causal=True)
    check.equal(str(out.dtype), str(dtype), what="output dtype (the dtype of q)", hint="sdpa_dtype")
    check.close(out, expected, hint="cache_offset")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_attention_numpy_at_logits_of_1e4(dtype):
    q, k, v = extreme_qkv(["pos", "neg", "neg", "pos"], 5, 2, seed=26, dtype=dtype)
    expected = oracle(lambda: torch_sdpa_to(q, k, v).numpy())
    out = attention.attention_numpy(q.numpy(), k.numpy(), v.numpy())
    check.that(isinstance(out, np.ndarray) and out.dtype == q.numpy().dtype,
               f"{q.numpy().dtype} inputs must give a {q.numpy().dtype} array, got "
               f"{getattr(out, 'dtype', type(out).__name__)}", hint="numpy_dtype", about=out)
    check.close(out[0::3], expected[0::3], hint="overflow", what="rows with scores ~ +1e4")
    check.close(out[1:3], expected[1:3], hint="underflow", what="rows with every score ~ -1e4")


@pytest.mark.points(1)
def test_attention_numpy_keeps_dtype_with_a_mask():
    q, k, v = (t.numpy() for t in qkv((2,), 4, 6, 8, 3, seed=27))
    mask = bottom_right(4, 6).numpy()
    out = attention.attention_numpy(q, k, v, mask)
    check.that(isinstance(out, np.ndarray) and out.dtype == np.float32,
               f"float32 inputs and a mask must give a float32 array, got {getattr(out, 'dtype', type(out).__name__)}"
               " (a float64 fill value for the masked scores promotes them)", hint="numpy_dtype", about=out)
    q64, k64, v64 = (t.astype(np.float64) for t in (q, k, v))
    expected = oracle(lambda: F.scaled_dot_product_attention(
        *(torch.from_numpy(t) for t in (q64, k64, v64)), attn_mask=torch.from_numpy(mask)).numpy())
    out = attention.attention_numpy(q64, k64, v64, mask)
    check.that(isinstance(out, np.ndarray) and out.dtype == np.float64,
               f"float64 inputs must give a float64 array, got {getattr(out, 'dtype', type(out).__name__)}",
               hint="numpy_dtype", about=out)
    check.close(out, expected, hint="cache_offset")


@pytest.mark.points(1)
def test_mha_applies_the_mask_when_not_causal():
    d_model, n_heads, T = 12, 3, 5
    weights = seeded_torch_mha(d_model, n_heads, True, seed=28)
    mha = student_mha(weights, d_model, n_heads, False, True)
    x = randn(2, T, d_model, seed=29)
    keep = torch.tensor([[True] * T, [True, False, True, True, False]])
    mask = keep[:, None, None, :]
    expected = oracle(run_torch_mha, weights, x, mask.expand(2, n_heads, T, T).reshape(-1, T, T))
    with torch.no_grad():
        out = mha(x, mask=mask)
    check.close(out, expected, hint="mask_ignored")
