"""Public tests for week2/attention: oracles are torch's own attention and softmax.

Expected values are computed inline in the check or through `oracle(...)`: never in the
process that runs your code when grading (see graders/oracle.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student
from graders.testing import mistake_shown, randn

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


# --- which mistake a wrong output shows (called only through oracle(...)) -----------------
#
# A failing check names a mistake only when the student's output is what that mistake gives:
# each helper below computes, by hand in float64, the output of every must-catch mistake that
# could explain the failure, and returns the one the output reproduces (None: none of them,
# and the failure says what differs without guessing why).


def if_not_finite(out, hint):
    """`hint` when `out` holds an inf or a nan (the symptom of that mistake), else None."""
    values = torch.as_tensor(out) if isinstance(out, (torch.Tensor, np.ndarray)) else None
    return hint if values is not None and not bool(torch.isfinite(values).all()) else None


def both(a, b):
    """The AND of two boolean masks, either of which may be None (no restriction)."""
    return b if a is None else a if b is None else a & b


def attention_by_hand(q, k, v, allowed=None, scale=None, axis=-1):
    """softmax(q k^T * scale, masked to `allowed`, over `axis`) v in float64, in q's dtype."""
    scores = q.double() @ k.double().transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, dim=axis) @ v.double()).to(q.dtype)


def sdpa_variants(q, k, v, mask=None, causal=False):
    """What scaled_dot_product_attention(q, k, v, mask, is_causal=causal) returns with each
    must-catch mistake that changes its output here."""
    lq, lk = q.shape[-2], k.shape[-2]
    causal_part = bottom_right(lq, lk) if causal else None
    allowed = both(causal_part, mask)
    variants = {
        "missing_scale": [attention_by_hand(q, k, v, allowed, scale=1.0),
                          attention_by_hand(q, k, v, allowed, scale=v.shape[-1] ** -0.5)],
        "wrong_axis": [attention_by_hand(q, k, v, allowed, axis=-2)],
    }
    if mask is not None:
        variants["mask_polarity"] = [attention_by_hand(q, k, v, both(causal_part, ~mask)),
                                     attention_by_hand(q, k, v, ~allowed)]
    if mask is not None and causal:
        variants["masks_not_combined"] = [attention_by_hand(q, k, v, mask), attention_by_hand(q, k, v, causal_part)]
    if mask is not None and not causal:
        variants["mask_ignored"] = [attention_by_hand(q, k, v)]
    if causal:
        variants["causal_diagonal"] = [attention_by_hand(q, k, v, both(off_diagonal(lq, lk, first_row=first), mask))
                                       for first in (False, True)]
    if causal and lq != lk:
        variants["cache_offset"] = [attention_by_hand(q, k, v, both(torch.ones(lq, lk, dtype=torch.bool).tril(), mask))]
    return variants


def off_diagonal(q_len, k_len, first_row=False):
    """The causal mask without its diagonal (with it in the first row, where it is all a query has)."""
    strict = torch.ones(k_len, k_len, dtype=torch.bool).tril(-1)[k_len - q_len:]
    if first_row:
        strict[0, k_len - q_len] = True
    return strict


def sdpa_mistake(out, q, k, v, mask=None, causal=False):
    """The mistake scaled_dot_product_attention's wrong output `out` shows, or None."""
    return mistake_shown(out, sdpa_variants(q, k, v, mask, causal))


def numpy_mistake(out, q, k, v, mask=None):
    """The mistake attention_numpy's wrong output `out` shows: `numpy_dtype` for a wrong
    dtype, else one of scaled_dot_product_attention's, or None."""
    if isinstance(out, np.ndarray) and out.dtype != q.dtype:
        return "numpy_dtype"
    as_torch = [torch.from_numpy(t) for t in (q, k, v)]
    variants = sdpa_variants(*as_torch, None if mask is None else torch.from_numpy(mask))
    return mistake_shown(out, {m: [w.numpy() for w in wrongs] for m, wrongs in variants.items()})


def softmax_mistake(out, x, dim=-1):
    """The mistake softmax(x, dim)'s wrong output `out` shows (normalising over another axis,
    with or without the max subtracted along `dim`), or None."""
    shifted = (x.double() - x.double().amax(dim=dim, keepdim=True)).exp()
    others = [d for d in range(x.dim()) if d != dim % x.dim()]
    variants = {"wrong_axis": [torch.softmax(x.double(), d).to(x.dtype) for d in others]
                + [(shifted / shifted.sum(d, keepdim=True)).to(x.dtype) for d in others]}
    return mistake_shown(out, variants)


def causal_mask_mistake(out, q_len, k_len):
    """The mistake causal_mask's wrong output `out` shows, or None."""
    variants = {"causal_diagonal": [off_diagonal(q_len, k_len), off_diagonal(q_len, k_len, first_row=True)]}
    if q_len != k_len:
        variants["cache_offset"] = [torch.ones(q_len, k_len, dtype=torch.bool).tril()]
    return mistake_shown(out, variants)


# --- softmax -----------------------------------------------------------------------------


@pytest.mark.points(2)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_softmax_matches_torch_on_every_axis(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = randn(*shape, seed=data.draw(st.integers(0, 2**16), label="seed"), scale=3.0)
    out = attention.softmax(x, dim=dim)
    check.close(out, torch.softmax(x, dim=dim), hint=oracle(softmax_mistake, out, x, dim))


@pytest.mark.points(1)
def test_softmax_default_axis_is_last():
    x = randn(3, 4, 5, seed=1)
    out = attention.softmax(x)
    check.close(out, torch.softmax(x, dim=-1), hint=oracle(softmax_mistake, out, x))


@pytest.mark.points(2)
@pytest.mark.parametrize("magnitude", [1e2, 1e4])
def test_softmax_is_stable_for_large_inputs(magnitude):
    x = randn(4, 6, seed=2) * magnitude
    out = attention.softmax(x, dim=-1)
    check.that(bool(torch.isfinite(out).all()), f"softmax of values around ±{magnitude:g} contains inf or nan",
               hint="overflow", about=out)
    check.close(out, torch.softmax(x, dim=-1), hint=oracle(softmax_mistake, out, x))


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
    out = attention.causal_mask(n)
    check.equal(out, torch.ones(n, n, dtype=torch.bool).tril(), hint=oracle(causal_mask_mistake, out, n, n))


@pytest.mark.points(2)
@pytest.mark.parametrize("q_len,k_len", [(1, 6), (2, 4), (3, 7), (4, 4)])
def test_causal_mask_with_cache_offset(q_len, k_len):
    out = attention.causal_mask(q_len, k_len)
    check.equal(out, bottom_right(q_len, k_len), hint=oracle(causal_mask_mistake, out, q_len, k_len))


# --- scaled_dot_product_attention --------------------------------------------------------


@pytest.mark.points(3)
@given(shapes=attention_shapes())
def test_sdpa_matches_torch(shapes):
    q, k, v = qkv(*shapes)
    out = attention.scaled_dot_product_attention(q, k, v)
    check.close(out, F.scaled_dot_product_attention(q, k, v), hint=oracle(sdpa_mistake, out, q, k, v))


@pytest.mark.points(1)
def test_sdpa_scales_by_query_width_not_value_width():
    q, k, v = qkv((2,), 5, 6, 16, 3, seed=5, scale=2.0)
    out = attention.scaled_dot_product_attention(q, k, v)
    check.close(out, F.scaled_dot_product_attention(q, k, v), hint=oracle(sdpa_mistake, out, q, k, v))


@pytest.mark.points(1)
def test_sdpa_weights_each_query_over_keys():
    # One query, keys that differ: the output must be a convex combination of the values
    # under a softmax over the keys, not over the queries.
    q, k, v = qkv((1,), 4, 3, 8, 2, seed=6, scale=2.0)
    out = attention.scaled_dot_product_attention(q, k, v)
    check.close(out, F.scaled_dot_product_attention(q, k, v), hint=oracle(sdpa_mistake, out, q, k, v))


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
    out = attention.scaled_dot_product_attention(q, k, v, mask=mask)
    check.close(out, expected, hint=oracle(sdpa_mistake, out, q, k, v, mask))


@pytest.mark.points(2)
@pytest.mark.parametrize("n", [1, 4, 7])
def test_sdpa_causal_square(n):
    q, k, v = qkv((2, 3), n, n, 8, 4, seed=7)
    out = attention.scaled_dot_product_attention(q, k, v, is_causal=True)
    check.close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                hint=oracle(sdpa_mistake, out, q, k, v, None, True))


@pytest.mark.points(2)
@pytest.mark.parametrize("q_len,k_len", [(1, 5), (3, 8), (2, 3)])
def test_sdpa_causal_with_cache_offset(q_len, k_len):
    # torch's is_causal aligns top-left when Lq != Lk, so the oracle gets the mask explicitly.
    q, k, v = qkv((2,), q_len, k_len, 8, 4, seed=8)
    expected = oracle(F.scaled_dot_product_attention, q, k, v, attn_mask=bottom_right(q_len, k_len))
    out = attention.scaled_dot_product_attention(q, k, v, is_causal=True)
    check.close(out, expected, hint=oracle(sdpa_mistake, out, q, k, v, None, True))


@pytest.mark.points(1)
def test_sdpa_mask_and_causal_combine():
    q, k, v = qkv((2,), 5, 5, 8, 4, seed=9)
    padding = torch.tensor([True, True, True, False, True]).expand(5, 5)
    mask = padding.clone()
    mask[3, 0] = True  # row 3 only had position 3, which the padding removes
    expected = oracle(F.scaled_dot_product_attention, q, k, v, attn_mask=bottom_right(5, 5) & mask)
    out = attention.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True)
    check.close(out, expected, hint=oracle(sdpa_mistake, out, q, k, v, mask, True))


def torch_sdpa_in_float64(q, k, v):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double()).float()


@pytest.mark.points(1)
def test_sdpa_is_stable_for_large_logits():
    q, k, v = qkv((2,), 4, 6, 8, 4, seed=10, scale=60.0)  # logits of order 1e3-1e4
    expected = oracle(torch_sdpa_in_float64, q, k, v)
    out = attention.scaled_dot_product_attention(q, k, v)
    check.that(bool(torch.isfinite(out).all()), "attention with large logits returned inf or nan",
               hint="overflow", about=out)
    check.close(out, expected, hint=oracle(sdpa_mistake, out, q, k, v))


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
    out = attention.attention_numpy(q, k, v, mask)
    check.close(out, data["np_out_masked"].numpy(), hint=oracle(numpy_mistake, out, q, k, v, mask))


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
    out = attention.attention_numpy(q.numpy(), k.numpy(), v.numpy(), mask)
    check.close(out, expected, hint=oracle(numpy_mistake, out, q.numpy(), k.numpy(), v.numpy(), mask))


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


def torch_mha_parameters(weights):
    """nn.MultiheadAttention's weights, named as MultiHeadSelfAttention names them."""
    return {"w_qkv.weight": weights.in_proj_weight, "w_qkv.bias": weights.in_proj_bias,
            "w_o.weight": weights.out_proj.weight, "w_o.bias": weights.out_proj.bias}


def mha_by_hand(parameters, n_heads, x, allowed, heads_split_right=True, **attend):
    """Multi-head self-attention with `parameters`, by hand in float64, in x's dtype; heads
    split as view(B, n_heads, T, hd) when not `heads_split_right` (only through oracle(...))."""
    B, T, C = x.shape
    qkv = x.double() @ parameters["w_qkv.weight"].double().T
    if parameters.get("w_qkv.bias") is not None:
        qkv = qkv + parameters["w_qkv.bias"].double()
    q, k, v = qkv.split(C, dim=-1)
    if heads_split_right:
        q, k, v = (t.view(B, T, n_heads, C // n_heads).transpose(1, 2) for t in (q, k, v))
    else:
        q, k, v = (t.reshape(B, n_heads, T, C // n_heads) for t in (q, k, v))
    out = attention_by_hand(q, k, v, allowed, **attend).transpose(1, 2).reshape(B, T, C)
    out = out @ parameters["w_o.weight"].double().T
    if parameters.get("w_o.bias") is not None:
        out = out + parameters["w_o.bias"].double()
    return out.to(x.dtype)


def mha_mistake(out, parameters, n_heads, x, mask=None, causal=True):
    """The mistake MultiHeadSelfAttention's wrong output `out` shows, or None."""
    T, C = x.shape[1], x.shape[2]
    causal_part = bottom_right(T, T) if causal else None
    allowed = both(causal_part, mask)

    def run(allowed, **options):
        return mha_by_hand(parameters, n_heads, x, allowed, **options)

    variants = {
        "head_order": [run(allowed, heads_split_right=False)],
        "missing_scale": [run(allowed, scale=1.0), run(allowed, scale=C ** -0.5)],
        "wrong_axis": [run(allowed, axis=-2)],
    }
    if mask is not None:
        variants["mask_polarity"] = [run(both(causal_part, ~mask)), run(~allowed)]
    if mask is not None and causal:
        variants["masks_not_combined"] = [run(mask), run(causal_part)]
    if mask is not None and not causal:
        variants["mask_ignored"] = [run(None)]
    if causal:
        variants["causal_diagonal"] = [run(both(off_diagonal(T, T, first_row=first), mask)) for first in (False, True)]
    return mistake_shown(out, variants)


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
    check.close(out, expected, hint=oracle(mha_mistake, out, torch_mha_parameters(weights), n_heads, x, None, causal))


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
    check.close(out, expected, hint=oracle(mha_mistake, out, torch_mha_parameters(weights), n_heads, x, mask, True))


@pytest.mark.points(1)
def test_mha_matches_golden_fixture():
    data = fixtures.load("week2/attention")
    mha = attention.MultiHeadSelfAttention(data["mha_d_model"], data["mha_n_heads"])
    names = ("w_qkv.weight", "w_qkv.bias", "w_o.weight", "w_o.bias")
    with torch.no_grad():
        for name in names:
            module, param = name.split(".")
            getattr(getattr(mha, module), param).copy_(data[f"mha_{name}"])
        out = mha(data["mha_x"])
    check.close(out, data["mha_out"], hint=oracle(mha_mistake, out, {name: data[f"mha_{name}"] for name in names},
                                                   data["mha_n_heads"], data["mha_x"]))


@pytest.mark.points(1)
def test_mha_gradients_reach_every_parameter():
    torch.manual_seed(19)
    mha = attention.MultiHeadSelfAttention(8, 2)
    got = mha.with_grad(randn(2, 4, 8, seed=20))
    check.equal(sorted(got.parameters), ["w_o.bias", "w_o.weight", "w_qkv.bias", "w_qkv.weight"],
                what="trainable parameters")
    for name, grad in got.parameters.items():
        check.that(grad is not None, f"parameter {name} received no gradient: is it used in forward?", about=grad)
        # A nan or inf is a gradient, a broken one: checked before "is it zero", which nan would fail too.
        check.that(bool(torch.isfinite(grad).all()),
                   f"the gradient of parameter {name} contains {'nan' if bool(grad.isnan().any()) else 'inf'}",
                   about=grad)
        check.that(bool(grad.abs().sum() > 0), f"the gradient of parameter {name} is zero everywhere: "
                   "is it used in forward?", about=grad)


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
    check.close(out[0], expected[0], hint=oracle(if_not_finite, out[0], "overflow"), what="row around +1e4")
    check.close(out[1], expected[1], hint=oracle(if_not_finite, out[1], "underflow"), what="row around -1e4 everywhere")
    # the same rows along dim 0
    out = attention.softmax(x.T.contiguous(), dim=0)
    check.close(out[:, 1], expected[1], hint=oracle(if_not_finite, out[:, 1], "underflow"),
                what="column around -1e4 everywhere (dim=0)")


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
               hint=oracle(if_not_finite, zeros, "overflow") or "masked_not_zero", about=out)
    check.close(out, oracle(torch_softmax_in_float64, x), hint=oracle(if_not_finite, out, "overflow"))


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
    check.close(out[0::2], expected[0::2], hint=oracle(if_not_finite, out[0::2], "overflow"),
                what="rows with scores ~ +1e4")
    check.close(out[1::2], expected[1::2], hint=oracle(if_not_finite, out[1::2], "underflow"),
                what="rows with every score ~ -1e4")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sdpa_keeps_half_dtypes(dtype):
    q, k, v = qkv((2,), 3, 5, 8, 4, seed=25, dtype=dtype)
    expected = oracle(torch_sdpa_to, q, k, v, bottom_right(3, 5))
    out = attention.scaled_dot_product_attention(q, k, v, is_causal=True)
    check.equal(str(out.dtype), str(dtype), what="output dtype (the dtype of q)", hint="sdpa_dtype")
    check.close(out, expected, hint=oracle(sdpa_mistake, out, q, k, v, None, True))


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_attention_numpy_at_logits_of_1e4(dtype):
    q, k, v = extreme_qkv(["pos", "neg", "neg", "pos"], 5, 2, seed=26, dtype=dtype)
    expected = oracle(lambda: torch_sdpa_to(q, k, v).numpy())
    out = attention.attention_numpy(q.numpy(), k.numpy(), v.numpy())
    check.that(isinstance(out, np.ndarray) and out.dtype == q.numpy().dtype,
               f"{q.numpy().dtype} inputs must give a {q.numpy().dtype} array, got "
               f"{getattr(out, 'dtype', type(out).__name__)}", hint="numpy_dtype", about=out)
    check.close(out[0::3], expected[0::3], hint=oracle(if_not_finite, out[0::3], "overflow"),
                what="rows with scores ~ +1e4")
    check.close(out[1:3], expected[1:3], hint=oracle(if_not_finite, out[1:3], "underflow"),
                what="rows with every score ~ -1e4")


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
    check.close(out, expected, hint=oracle(numpy_mistake, out, q64, k64, v64, mask))


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
    check.close(out, expected, hint=oracle(mha_mistake, out, torch_mha_parameters(weights), n_heads, x, mask, False))
