"""Hidden tests for week3/llama: fresh seeded inputs and shapes, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student
from graders.testing import randn

pytestmark = pytest.mark.hidden

llama = student("week3.llama")
model = reference("week3.llama")


def rope_atol(max_position):
    """float32 angles are accepted: ~3 roundings of position * rate (see the public tests)."""
    return 1e-6 + 3 * max_position * 2.0**-24


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype, eps", [(torch.float32, 1e-5), (torch.float16, 1e-6), (torch.bfloat16, 1e-6),
                                        (torch.float32, 1e-3)])
def test_rmsnorm_on_fresh_inputs(dtype, eps):
    x = randn(3, 2, 48, seed=1101, dtype=dtype, scale=4.0, shift=-1.0)
    ours, expected = llama.RMSNorm(48, eps=eps), model.RMSNorm(48, eps=eps)
    weight = randn(48, seed=1102, shift=0.5)
    ours.load_state_dict({"weight": weight}, strict=False)
    expected.load_state_dict({"weight": weight})
    with torch.no_grad():
        hint = ("rms_dtype" if dtype in (torch.float16, torch.bfloat16)
                else "rms_eps_outside_sqrt" if eps >= 1e-3 else "rms_mean_subtracted")
        check.close(ours(x), expected(x), hint=hint)
    tiny = randn(5, 48, seed=1103, scale=3e-3)
    with torch.no_grad():
        check.close(ours(tiny), expected(tiny), hint="rms_eps_outside_sqrt")


@pytest.mark.points(2)
@pytest.mark.parametrize("head_dim, length, theta", [(128, 2048, 1e6), (6, 50, 10000.0), (32, 8192, 500000.0)])
def test_rope_frequencies_on_fresh_sizes(head_dim, length, theta):
    cos, sin = llama.rope_frequencies(head_dim, length, theta=theta)
    expected = model.rope_frequencies(head_dim, length, theta=theta)  # (cos, sin)
    reason = "float32 angles are accepted: their error grows with position"
    check.close(cos, expected[0], check_dtype=False, atol=rope_atol(length - 1), rtol=0.0, reason=reason,
                what="cos", hint="rope_theta_exponent")
    check.close(sin, expected[1], check_dtype=False, atol=rope_atol(length - 1), rtol=0.0, reason=reason,
                what="sin", hint="rope_theta_exponent")


@pytest.mark.points(2)
@pytest.mark.parametrize("interleaved", [False, True])
def test_apply_rope_on_fresh_inputs(interleaved):
    # the tables are inputs: built here, never from the reference (see docs/writing-katas.md)
    i = torch.arange(12, dtype=torch.float64)
    angles = (torch.arange(1000, dtype=torch.float64)[:, None] * 20000.0 ** (-2 * i / 24)).repeat(1, 2)
    cos, sin = angles.cos().float(), angles.sin().float()
    x = randn(2, 2, 3, 9, 24, seed=1201)  # extra leading dims
    positions = torch.tensor([999, 0, 1, 500, 501, 2, 77, 78, 3])
    for pos in (None, positions):
        check.close(llama.apply_rope(x, cos, sin, pos, interleaved=interleaved),
                    model.apply_rope(x, cos, sin, pos, interleaved=interleaved),
                    hint="rope_positions_ignored" if pos is not None else "rope_pairing")


@pytest.mark.points(1)
def test_swiglu_on_fresh_weights():
    g = torch.Generator().manual_seed(1301)
    weights = {"w1.weight": torch.randn(52, 20, generator=g) * 0.2, "w3.weight": torch.randn(52, 20, generator=g) * 0.2,
               "w2.weight": torch.randn(20, 52, generator=g) * 0.2}
    expected, ours = model.SwiGLU(20, 52), llama.SwiGLU(20, 52)
    expected.load_state_dict(weights)
    ours.load_state_dict(weights, strict=False)
    with torch.no_grad():
        x = randn(4, 3, 20, seed=1302, scale=3.0)
        check.close(ours(x), expected(x), hint="silu_not_gelu")


@pytest.mark.points(1)
def test_repeat_kv_on_fresh_inputs():
    x = randn(3, 2, 4, 5, seed=1401)
    check.equal(llama.repeat_kv(x, 3), model.repeat_kv(x, 3), hint="gqa_interleaved")


@pytest.mark.points(3)
@pytest.mark.parametrize("d_model, n_heads, n_kv_heads, theta", [(48, 6, 3, 1e6), (40, 10, 2, 10000.0),
                                                                 (32, 2, 1, 10000.0)])
def test_attention_on_fresh_weights(d_model, n_heads, n_kv_heads, theta):
    g = torch.Generator().manual_seed(1501 + d_model)
    hd, kv = d_model // n_heads, n_kv_heads * (d_model // n_heads)
    shapes = {"q_proj": (n_heads * hd, d_model), "k_proj": (kv, d_model), "v_proj": (kv, d_model),
              "o_proj": (d_model, n_heads * hd)}
    weights = {f"{n}.weight": torch.randn(*s, generator=g) / d_model**0.5 for n, s in shapes.items()}
    expected = model.GroupedQueryAttention(d_model, n_heads, n_kv_heads, rope_theta=theta)
    ours = llama.GroupedQueryAttention(d_model, n_heads, n_kv_heads, rope_theta=theta)
    expected.load_state_dict(weights)
    ours.load_state_dict(weights, strict=False)
    with torch.no_grad():
        x = randn(2, 11, d_model, seed=1502)
        check.close(ours(x), expected(x), hint="gqa_interleaved")
        positions = torch.tensor([3, 4, 9, 10, 11, 40, 41, 42, 100, 230, 231])
        check.close(ours(x, positions), expected(x, positions), hint="rope_positions_ignored")
