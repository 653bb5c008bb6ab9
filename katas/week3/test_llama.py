"""Public tests for week3/llama.

Oracles: transformers' own LLaMA code (`LlamaRMSNorm`, `LlamaRotaryEmbedding`,
`apply_rotary_pos_emb`, `LlamaMLP`, `repeat_kv`, `LlamaAttention` with eager attention)
with the same weights copied in; complex multiplication for interleaved RoPE; closed-form
float64 angles; and RoPE's two defining properties (rotations keep norms; q.k depends only
on the distance between positions).
"""

from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st
from transformers import LlamaConfig
from transformers.models.llama import modeling_llama as hf

from graders import check, fixtures, oracle, student
from graders.testing import FLOAT32_REDUCTION, randn

llama = student("week3.llama")

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "llama-tiny" / "model.safetensors"


def hf_config(d_model, n_heads, n_kv_heads, theta=10000.0, max_positions=4096, hidden=None):
    return LlamaConfig(hidden_size=d_model, num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
                       intermediate_size=hidden or 2 * d_model, rope_theta=theta, hidden_act="silu",
                       max_position_embeddings=max_positions, attention_bias=False, mlp_bias=False,
                       attn_implementation="eager")


def hf_tables(head_dim, max_seq_len, theta):
    """cos, sin [max_seq_len, head_dim] from transformers' LlamaRotaryEmbedding (float32 angles)."""
    rotary = hf.LlamaRotaryEmbedding(hf_config(head_dim, 1, 1, theta, max_seq_len))
    cos, sin = rotary(torch.zeros(1), torch.arange(max_seq_len)[None])
    return cos[0], sin[0]


def exact_angles(head_dim, positions, theta):
    """angle[p, i] = p * theta ** (-2i / head_dim), in float64: the closed form."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    return positions.to(torch.float64)[:, None] * theta ** (-2.0 * i / head_dim)


def exact_tables(head_dim, max_seq_len, theta):
    """Rotate-half tables from the closed form, as float32 (independent of the student's)."""
    angles = exact_angles(head_dim, torch.arange(max_seq_len), theta).repeat(1, 2)
    return angles.cos().float(), angles.sin().float()


def rope_atol(max_position):
    """float32 angles (transformers' way) are off by up to ~3 roundings of position * rate."""
    return 1e-6 + 3 * max_position * 2.0**-24


# --- RMSNorm -----------------------------------------------------------------------------


def student_norm(weight, eps):
    """The student's RMSNorm with the test's weight (shared with transformers' LlamaRMSNorm)."""
    ours = llama.RMSNorm(weight.shape[0], eps=eps)
    # weights go in through load_state_dict (a call), never by writing student attributes
    ours.load_state_dict({"weight": weight}, strict=False)
    return ours


def hf_rmsnorm(x, weight, eps):
    """transformers' LlamaRMSNorm with the same weight (called only through oracle(...))."""
    theirs = hf.LlamaRMSNorm(weight.shape[0], eps=eps)
    with torch.no_grad():
        theirs.weight.copy_(weight)
        return theirs(x)


@pytest.mark.points(2)
def test_rmsnorm_matches_llama_rmsnorm():
    # inputs with a large mean: centring them (LayerNorm) changes the answer a lot
    x = randn(2, 5, 32, seed=1, scale=2.0, shift=1.5)
    weight = randn(32, seed=2, shift=1.0)
    ours = student_norm(weight, 1e-6)
    with torch.no_grad():
        check.close(ours(x), oracle(hf_rmsnorm, x, weight, 1e-6), hint="rms_mean_subtracted")


@pytest.mark.points(1)
def test_rmsnorm_has_a_weight_of_ones():
    norm = llama.RMSNorm(12)
    check.close(norm.weight.detach(), torch.ones(12), what="RMSNorm.weight at init")


@pytest.mark.points(1)
def test_rmsnorm_has_one_parameter_and_keeps_eps():
    """RMSNorm's attributes: `weight` is its one trainable parameter (RMSNorm has no bias), and
    `eps` is the eps it was given."""
    norm = llama.RMSNorm(6, eps=1e-3)
    got = norm.with_grad(randn(2, 6, seed=9))
    check.equal(sorted(got.parameters), ["weight"], what="RMSNorm's trainable parameters", hint="rms_parameters")
    eps = norm.eps
    check.equal(eps, 1e-3, what="RMSNorm(6, eps=1e-3).eps", hint="rms_parameters")


@pytest.mark.points(1)
def test_rmsnorm_default_eps_is_1e_6():
    """RMSNorm(dim) with no eps given uses the signature's eps = 1e-6, seen on activations so
    small (mean(x**2) ~ 1e-6) that eps moves the output."""
    x = randn(3, 16, seed=13, scale=1e-3)
    norm = llama.RMSNorm(16)
    with torch.no_grad():
        check.close(norm(x), oracle(hf_rmsnorm, x, torch.ones(16), 1e-6), hint="rms_default_eps")


@pytest.mark.points(1)
def test_rmsnorm_eps_inside_the_square_root():
    # tiny activations: mean(x**2) ~ 1e-6 is comparable with eps, so where eps goes matters
    x = randn(3, 16, seed=3, scale=1e-3)
    weight = randn(16, seed=4, shift=1.0)
    ours = student_norm(weight, 1e-5)
    with torch.no_grad():
        check.close(ours(x), oracle(hf_rmsnorm, x, weight, 1e-5), hint="rms_eps_outside_sqrt")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype, scale", [(torch.bfloat16, 3.0), (torch.float16, 400.0)])
def test_rmsnorm_half_inputs_computed_in_float32(dtype, scale):
    # float16 at |x| ~ 400: x**2 overflows float16 (max 65504) unless computed in float32
    x = randn(4, 64, seed=5, scale=scale, dtype=dtype)
    weight = randn(64, seed=6, shift=1.0)
    ours = student_norm(weight, 1e-6)
    expected = oracle(hf_rmsnorm, x, weight, 1e-6)
    with torch.no_grad():
        out = ours(x)
    check.that(isinstance(out, torch.Tensor) and out.dtype == dtype,
               f"RMSNorm should return the input's dtype {dtype}, got {getattr(out, 'dtype', type(out))}",
               hint="rms_dtype", about=out)
    # LlamaRMSNorm returns float32 here (float32 weight times the cast-back input): compare values
    check.close(out, expected.to(dtype), check_dtype=False, hint="rms_dtype")


@pytest.mark.points(1)
def test_rmsnorm_golden_bfloat16():
    data = fixtures.load("week3/llama")
    norm = llama.RMSNorm(16, eps=1e-5)
    norm.load_state_dict({"weight": data["rms_bf16_weight"]}, strict=False)
    with torch.no_grad():
        check.close(norm(data["rms_bf16_x"]), data["rms_bf16_out"], hint="rms_dtype")


# --- RoPE tables -------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("head_dim, theta", [(16, 10000.0), (64, 500000.0), (8, 10.0)])
def test_rope_frequencies_match_llama_rotary_embedding(head_dim, theta):
    cos, sin = llama.rope_frequencies(head_dim, 64, theta=theta)
    check.equal(tuple(cos.shape), (64, head_dim), what="cos.shape", hint="rope_table_layout")
    check.equal(tuple(sin.shape), (64, head_dim), what="sin.shape", hint="rope_table_layout")
    expected = oracle(lambda: hf_tables(head_dim, 64, theta))  # (cos, sin)
    reason = "float32 vs float64 angles differ by ~position * 2^-24"
    check.close(cos, expected[0], check_dtype=False, atol=rope_atol(63), rtol=0.0, reason=reason,
                what="cos", hint="rope_theta_exponent")
    check.close(sin, expected[1], check_dtype=False, atol=rope_atol(63), rtol=0.0, reason=reason,
                what="sin", hint="rope_theta_exponent")


@pytest.mark.points(1)
def test_rope_frequencies_halves_share_angles():
    cos, sin = llama.rope_frequencies(8, 5)
    check.equal(tuple(cos.shape), (5, 8), what="cos.shape", hint="rope_table_layout")
    check.close(cos[:, 4:], cos[:, :4], what="cos[:, d/2:] vs cos[:, :d/2]", hint="rope_table_layout")
    check.close(sin[:, 4:], sin[:, :4], what="sin[:, d/2:] vs sin[:, :d/2]", hint="rope_table_layout")
    check.close(cos[0], torch.ones(8), check_dtype=False, what="cos at position 0", hint="rope_table_layout")


@pytest.mark.points(1)
def test_rope_frequencies_worked_example():
    """The docstring's example at the default theta (10000): head_dim=4 turns at rates [1, 0.01],
    so cos[2] = [cos 2, cos 0.02, cos 2, cos 0.02]; both tables are float32."""
    cos, sin = llama.rope_frequencies(4, 3)
    dtypes = [str(cos.dtype), str(sin.dtype)]
    check.equal(dtypes, ["torch.float32"] * 2, what="dtypes of cos and sin", hint="rope_table_dtype")
    expected = oracle(lambda: exact_tables(4, 3, 10000.0))  # (cos, sin)
    check.close(cos, expected[0], what="cos of rope_frequencies(4, 3)", hint="rope_theta_exponent")
    check.close(sin, expected[1], what="sin of rope_frequencies(4, 3)", hint="rope_theta_exponent")


@pytest.mark.points(1)
def test_rope_frequencies_at_long_positions():
    """Against float64 closed-form angles; the tolerance grows with position (see rope_atol)."""
    cos, sin = llama.rope_frequencies(32, 4097, theta=10000.0)
    angles = oracle(lambda: exact_angles(32, torch.arange(4097), 10000.0).repeat(1, 2))
    for start, stop in [(0, 64), (64, 512), (512, 4097)]:
        reason = f"positions {start}..{stop - 1}: float32 angles lose ~position * 2^-24"
        check.close(cos[start:stop], angles[start:stop].cos(), check_dtype=False, atol=rope_atol(stop - 1),
                    rtol=0.0, reason=reason, what=f"cos[{start}:{stop}]", hint="rope_theta_exponent")
        check.close(sin[start:stop], angles[start:stop].sin(), check_dtype=False, atol=rope_atol(stop - 1),
                    rtol=0.0, reason=reason, what=f"sin[{start}:{stop}]", hint="rope_theta_exponent")


# --- apply_rope --------------------------------------------------------------------------


def hf_rope(x, cos, sin, positions):
    """transformers' rotate-half RoPE on x[B, H, T, hd] at `positions`."""
    out, _ = hf.apply_rotary_pos_emb(x, x, cos[positions][None], sin[positions][None], unsqueeze_dim=1)
    return out


def complex_rope(x, positions, theta):
    """Interleaved RoPE as complex multiplication: (x[2i] + i x[2i+1]) * e^{i angle}."""
    d = x.shape[-1]
    z = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    angles = exact_angles(d, positions, theta)
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


@pytest.mark.points(2)
def test_apply_rope_matches_transformers_rotate_half():
    cos, sin = hf_tables(16, 64, 10000.0)
    x = randn(2, 4, 7, 16, seed=10)
    check.close(llama.apply_rope(x, cos, sin), hf_rope(x, cos, sin, torch.arange(7)), hint="rope_pairing")


@pytest.mark.points(2)
def test_apply_rope_uses_positions():
    cos, sin = hf_tables(16, 300, 10000.0)
    x = randn(2, 3, 6, 16, seed=11)
    for positions in (torch.arange(6) + 37, torch.tensor([5, 0, 299, 17, 17, 128])):
        check.close(llama.apply_rope(x, cos, sin, positions), hf_rope(x, cos, sin, positions),
                    hint="rope_positions_ignored")


@pytest.mark.points(2)
def test_apply_rope_interleaved_is_complex_multiplication():
    theta = 500.0
    cos, sin = exact_tables(16, 100, theta)
    x = randn(2, 3, 5, 16, seed=12)
    out = llama.apply_rope(x, cos, sin, interleaved=True)
    check.close(out, complex_rope(x, torch.arange(5), theta).float(), hint="rope_pairing")
    positions = torch.tensor([3, 0, 99, 42, 43])
    out = llama.apply_rope(x, cos, sin, positions, interleaved=True)
    check.close(out, complex_rope(x, positions, theta).float(), hint="rope_positions_ignored")


@pytest.mark.points(1)
def test_apply_rope_interleaved_golden():
    data = fixtures.load("week3/llama")
    out = llama.apply_rope(data["rope_x"], data["rope_cos"], data["rope_sin"], data["rope_positions"],
                           interleaved=True)
    check.close(out, data["rope_interleaved_out"])


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_apply_rope_keeps_dtype(dtype):
    cos, sin = hf_tables(8, 16, 10000.0)
    x = randn(1, 2, 4, 8, seed=13, dtype=dtype)
    expected = oracle(lambda: hf_rope(x.float(), cos, sin, torch.arange(4)).to(dtype))
    out = llama.apply_rope(x, cos, sin)
    check.close(out, expected, rtol=max(check.tolerance_for(dtype).rtol, 1e-5),
                atol=max(check.tolerance_for(dtype).atol, 1e-5),
                reason="the table is float32, so float64 inputs are only float32-accurate", hint="rope_pairing")


@pytest.mark.points(2)
@given(head_dim=st.sampled_from([4, 8, 16, 32]), interleaved=st.booleans(),
       position=st.integers(0, 255), seed=st.integers(0, 2**16))
def test_rope_preserves_norms(head_dim, interleaved, position, seed):
    cos, sin = llama.rope_frequencies(head_dim, 256)
    x = randn(3, 1, head_dim, seed=seed)
    out = llama.apply_rope(x, cos, sin, torch.tensor([position]), interleaved=interleaved)
    check.close(out.norm(dim=-1), x.norm(dim=-1), what="norm of each rotated vector", hint="rope_pairing")


@pytest.mark.points(2)
@given(head_dim=st.sampled_from([4, 8, 16, 32]), interleaved=st.booleans(), m=st.integers(0, 64),
       n=st.integers(0, 64), shift=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_rope_scores_depend_only_on_relative_position(head_dim, interleaved, m, n, shift, seed):
    """<rope(q, m), rope(k, n)> == <rope(q, m + s), rope(k, n + s)>: RoPE encodes m - n."""
    cos, sin = llama.rope_frequencies(head_dim, 129)
    q, k = randn(1, head_dim, seed=seed), randn(1, head_dim, seed=seed + 1)

    def score(pq, pk):
        rq = llama.apply_rope(q, cos, sin, torch.tensor([pq]), interleaved=interleaved)
        rk = llama.apply_rope(k, cos, sin, torch.tensor([pk]), interleaved=interleaved)
        return (rq * rk).sum()

    shifted, unshifted = score(m + shift, n + shift), score(m, n)  # both student results: call them outside the check
    check.close(shifted, unshifted, atol=2e-5 * head_dim, rtol=1e-5,
                reason="float32 tables: each angle carries ~position * 2^-24 of error",
                what=f"q.k at positions ({m + shift}, {n + shift}) vs ({m}, {n})", hint="rope_pairing")


# --- SwiGLU and repeat_kv ----------------------------------------------------------------


@pytest.mark.points(2)
def test_swiglu_matches_llama_mlp():
    torch.manual_seed(20)  # the oracle's random init must be the same wherever the test runs
    mlp = hf.LlamaMLP(hf_config(24, 4, 4, hidden=40))
    ours = llama.SwiGLU(24, 40)
    names = (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj"))
    for mine, theirs in names:
        check.equal(tuple(getattr(ours, mine).weight.shape), tuple(getattr(mlp, theirs).weight.shape),
                    what=f"SwiGLU.{mine}.weight.shape")
    ours.load_state_dict({f"{mine}.weight": getattr(mlp, theirs).weight.detach() for mine, theirs in names},
                         strict=False)
    with torch.no_grad():
        x = randn(2, 5, 24, seed=20, scale=2.0)
        check.close(ours(x), mlp(x), hint="silu_not_gelu")


@pytest.mark.points(2)
@pytest.mark.parametrize("n_kv, n_rep", [(3, 2), (2, 4), (4, 1)])
def test_repeat_kv_matches_transformers(n_kv, n_rep):
    x = randn(2, n_kv, 5, 4, seed=21)
    check.equal(llama.repeat_kv(x, n_rep), hf.repeat_kv(x, n_rep), hint="gqa_interleaved")


# --- GroupedQueryAttention ---------------------------------------------------------------


def seeded_llama_attention(d_model, n_heads, n_kv_heads, theta, seed=0, weights=None):
    """transformers' LlamaAttention with seeded weights (or `weights`): the test's weights, for both sides."""
    torch.manual_seed(seed)
    theirs = hf.LlamaAttention(hf_config(d_model, n_heads, n_kv_heads, theta), layer_idx=0).eval()
    if weights is not None:
        theirs.load_state_dict(weights)
    return theirs


def student_attention(theirs, d_model, n_heads, n_kv_heads, theta):
    """The student's attention with the weights of `theirs` (theta None: rope_theta not passed)."""
    options = {} if theta is None else {"rope_theta": theta}
    ours = llama.GroupedQueryAttention(d_model, n_heads, n_kv_heads, **options)
    names = ("q_proj", "k_proj", "v_proj", "o_proj")
    for name in names:
        check.equal(tuple(getattr(ours, name).weight.shape), tuple(getattr(theirs, name).weight.shape),
                    what=f"{name}.weight.shape", hint="gqa_attention")
    ours.load_state_dict({f"{n}.weight": getattr(theirs, n).weight.detach() for n in names}, strict=False)
    return ours



def hf_attention(attn, x, positions, theta):
    """LlamaAttention with its own rotary embedding and an explicit additive causal mask."""
    T = x.shape[1]
    rotary = hf.LlamaRotaryEmbedding(attn.config)
    cos_sin = rotary(x, positions[None])
    mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
    with torch.no_grad():
        out, _ = attn(x, position_embeddings=cos_sin, attention_mask=mask)
    return out


@pytest.mark.points(2)
def test_multi_head_case_matches_llama_attention():
    """n_kv_heads == n_heads: plain causal multi-head attention with RoPE."""
    theirs = seeded_llama_attention(32, 4, 4, 10000.0)
    ours = student_attention(theirs, 32, 4, 4, 10000.0)
    x = randn(2, 6, 32, seed=30)
    with torch.no_grad():
        check.close(ours(x), hf_attention(theirs, x, torch.arange(6), 10000.0), hint="gqa_attention")


@pytest.mark.points(3)
def test_grouped_query_attention_matches_llama_attention():
    theirs = seeded_llama_attention(64, 8, 2, 500.0, seed=1)
    ours = student_attention(theirs, 64, 8, 2, 500.0)
    x = randn(2, 9, 64, seed=31)
    with torch.no_grad():
        check.close(ours(x), hf_attention(theirs, x, torch.arange(9), 500.0), hint="gqa_interleaved")


@pytest.mark.points(2)
def test_grouped_query_attention_at_scattered_positions():
    # a uniform shift of all positions cannot be seen (RoPE is relative), so the gaps vary
    theirs = seeded_llama_attention(48, 6, 3, 10000.0, seed=2)
    ours = student_attention(theirs, 48, 6, 3, 10000.0)
    x = randn(1, 7, 48, seed=32)
    positions = torch.tensor([0, 1, 5, 6, 20, 21, 90])
    with torch.no_grad():
        # first at 0..T-1, so that a failure below is about positions alone
        check.close(ours(x), hf_attention(theirs, x, torch.arange(7), 10000.0), hint="gqa_interleaved")
        check.close(ours(x, positions), hf_attention(theirs, x, positions, 10000.0),
                    hint="rope_positions_ignored")


@pytest.mark.points(1)
def test_multi_query_golden():
    data = fixtures.load("week3/llama")
    attn = llama.GroupedQueryAttention(**data["mqa_config"])
    attn.load_state_dict({f"{n}.weight": data[f"mqa_{n}.weight"] for n in ("q_proj", "k_proj", "v_proj", "o_proj")},
                         strict=False)
    with torch.no_grad():
        check.close(attn(data["mqa_x"], data["mqa_positions"]), data["mqa_out"], hint="gqa_attention")


@pytest.mark.points(1)
@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="checkpoints/llama-tiny is missing")
def test_attention_with_llama_tiny_weights():
    from safetensors.torch import load_file

    state = load_file(CHECKPOINT)
    prefix = "model.layers.0.self_attn."
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    # the tiny checkpoint: hidden 64, 4 heads of 16, 2 kv heads
    theirs = seeded_llama_attention(64, 4, 2, 10000.0, weights=weights)
    ours = student_attention(theirs, 64, 4, 2, 10000.0)
    x = randn(1, 12, 64, seed=33)
    with torch.no_grad():
        check.close(ours(x), hf_attention(theirs, x, torch.arange(12), 10000.0), hint="gqa_attention")


# --- extreme magnitudes, dtypes and arguments that must take effect ----------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_rmsnorm_at_magnitudes_of_1e4(dtype):
    # |x| up to ~4e4: x ** 2 is ~1e9, far past float16's 65504, fine in float32
    x = randn(3, 32, seed=7, scale=1e4, dtype=dtype)
    weight = randn(32, seed=8, shift=1.0)
    ours = student_norm(weight, 1e-6)
    expected = oracle(hf_rmsnorm, x.float(), weight, 1e-6)
    with torch.no_grad():
        out = ours(x)
    check.equal(str(out.dtype), str(dtype), what="RMSNorm output dtype", hint="rms_dtype")
    check.close(out, expected.to(dtype), hint="rms_dtype")


@pytest.mark.points(1)
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_apply_rope_keeps_dtype_on_both_layouts(dtype, interleaved):
    theta = 10000.0
    cos, sin = exact_tables(8, 16, theta)
    x = randn(1, 2, 4, 8, seed=14, dtype=dtype)
    positions = torch.tensor([3, 0, 15, 7])
    expected = oracle(lambda: (complex_rope(x, positions, theta) if interleaved
                               else hf_rope(x.double(), cos.double(), sin.double(), positions)).to(dtype))
    out = llama.apply_rope(x, cos, sin, positions, interleaved=interleaved)
    check.equal(str(out.dtype), str(dtype), what="apply_rope output dtype (x's dtype)", hint="rope_dtype")
    check.close(out, expected, rtol=max(check.tolerance_for(dtype).rtol, 1e-5),
                atol=max(check.tolerance_for(dtype).atol, 1e-5),
                reason="the table is float32, so float64 inputs are only float32-accurate", hint="rope_pairing")


def float64_tables(head_dim, max_seq_len, theta):
    """Rotate-half tables from the closed form, kept in float64 (inputs: the tables may be float64)."""
    angles = exact_angles(head_dim, torch.arange(max_seq_len), theta).repeat(1, 2)
    return angles.cos(), angles.sin()


@pytest.mark.points(1)
@pytest.mark.parametrize("interleaved", [False, True])
def test_apply_rope_with_float64_tables(interleaved):
    """The tables may be float64: a float32 x still comes back float32 (typed like x), rotated by
    the tables' angles."""
    theta = 10000.0
    cos, sin = float64_tables(8, 16, theta)
    x = randn(1, 2, 4, 8, seed=15)
    positions = torch.tensor([3, 0, 15, 7])
    expected = oracle(lambda: (complex_rope(x, positions, theta) if interleaved
                               else hf_rope(x.double(), cos, sin, positions)).float())
    out = llama.apply_rope(x, cos, sin, positions, interleaved=interleaved)
    check.equal(str(out.dtype), "torch.float32", what="apply_rope output dtype for float32 x and float64 tables",
                hint="rope_dtype")
    check.close(out, expected, hint="rope_pairing")


@pytest.mark.points(1)
def test_swiglu_at_large_activations():
    # gate pre-activations of ±1e4: silu as z * exp(z) / (1 + exp(z)) gives inf / inf
    torch.manual_seed(21)
    mlp = hf.LlamaMLP(hf_config(16, 2, 2, hidden=24))
    ours = llama.SwiGLU(16, 24)
    names = (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj"))
    ours.load_state_dict({f"{mine}.weight": getattr(mlp, theirs).weight.detach() for mine, theirs in names},
                         strict=False)
    x = randn(3, 16, seed=22, scale=2e4)
    expected = oracle(lambda: mlp(x).detach())
    with torch.no_grad():
        out = ours(x)
    check.close(out, expected, hint="silu_overflow", **FLOAT32_REDUCTION)


def scaled_llama_attention(d_model, n_heads, n_kv_heads, theta, seed, qk_scale):
    """seeded_llama_attention with q_proj and k_proj multiplied by qk_scale (large logits)."""
    torch.manual_seed(seed)
    base = hf.LlamaAttention(hf_config(d_model, n_heads, n_kv_heads, theta), layer_idx=0)
    weights = {name: w.detach() * (qk_scale if name.startswith(("q_proj", "k_proj")) else 1.0)
               for name, w in base.state_dict().items()}
    return seeded_llama_attention(d_model, n_heads, n_kv_heads, theta, weights=weights)


@pytest.mark.points(2)
def test_attention_with_logits_of_1e4():
    # scores up to ~1.3e4, rows whose every score is below -100 and rows far above +100;
    # for these weights and inputs the top two scores of every row are >= 280 apart, so the
    # softmax is one-hot to float precision and summation order cannot matter
    theirs = scaled_llama_attention(32, 4, 2, 10000.0, seed=14, qk_scale=100.0)
    ours = student_attention(theirs, 32, 4, 2, 10000.0)
    x = randn(2, 6, 32, seed=40)
    expected = oracle(hf_attention, theirs, x, torch.arange(6), 10000.0)
    with torch.no_grad():
        out = ours(x)
    check.close(out, expected, hint="softmax_overflow", **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_attention_uses_its_rope_theta():
    theirs = seeded_llama_attention(32, 4, 4, 10000.0, seed=5)
    weights = {name: w.detach() for name, w in theirs.state_dict().items()}
    x = randn(1, 8, 32, seed=41)
    positions = torch.tensor([0, 3, 9, 10, 30, 31, 60, 100])
    ours = student_attention(theirs, 32, 4, 4, None)
    with torch.no_grad():  # first at the default theta (10000), so that a failure below is about theta alone
        check.close(ours(x, positions), hf_attention(theirs, x, positions, 10000.0), hint="rope_theta_default",
                    what="output of GroupedQueryAttention(32, 4, 4) with rope_theta left at its default")
    theirs = seeded_llama_attention(32, 4, 4, 50.0, weights=weights)
    ours = student_attention(theirs, 32, 4, 4, 50.0)
    with torch.no_grad():
        check.close(ours(x, positions), hf_attention(theirs, x, positions, 50.0), hint="rope_theta_ignored")


@pytest.mark.points(1)
def test_attention_mask_follows_row_order_not_positions():
    # two packed sequences: positions restart at 0, but row t still sees rows 0..t
    theirs = seeded_llama_attention(32, 4, 2, 10000.0, seed=6)
    ours = student_attention(theirs, 32, 4, 2, 10000.0)
    x = randn(1, 7, 32, seed=42)
    positions = torch.tensor([0, 1, 2, 0, 1, 2, 3])
    expected = oracle(hf_attention, theirs, x, positions, 10000.0)
    with torch.no_grad():
        out = ours(x, positions)
    check.close(out, expected, hint="gqa_mask_from_positions")
