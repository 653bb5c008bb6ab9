"""Hidden tests for week2/attention: fresh seeded inputs, expected values from the reference."""

import pytest
import torch

from graders import check, in_one_crossing, oracle, reference, student, unwrap
from graders.testing import randn

from .test_attention import causal_mask_mistake, mha_mistake, numpy_mistake, sdpa_mistake

pytestmark = pytest.mark.hidden

attention = student("week2.attention")
model = reference("week2.attention")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [101, 202, 303])
def test_sdpa_on_fresh_inputs(seed):
    q = randn(3, 2, 6, 12, seed=seed, draw_dtype=torch.float32)
    k = randn(3, 2, 9, 12, seed=seed + 1, draw_dtype=torch.float32)
    v = randn(3, 2, 9, 5, seed=seed + 2, draw_dtype=torch.float32)
    mask = randn(3, 1, 6, 9, seed=seed + 3, draw_dtype=torch.float32) > -0.3
    mask[..., -1] = True
    for kwargs in ({}, {"mask": mask}, {"is_causal": True}, {"mask": mask, "is_causal": True}):
        out = attention.scaled_dot_product_attention(q, k, v, **kwargs)
        check.close(out, model.scaled_dot_product_attention(q, k, v, **kwargs),
                    hint=oracle(sdpa_mistake, out, q, k, v, kwargs.get("mask"), kwargs.get("is_causal", False)))


@pytest.mark.points(1)
@pytest.mark.parametrize("q_len,k_len", [(5, 11), (1, 1), (9, 9)])
def test_causal_mask_on_fresh_sizes(q_len, k_len):
    out = attention.causal_mask(q_len, k_len)
    check.equal(out, model.causal_mask(q_len, k_len), hint=oracle(causal_mask_mistake, out, q_len, k_len))


@pytest.mark.points(2)
def test_mha_on_fresh_weights():
    # The test makes the weights and loads the same ones into both: never the student's weights
    # into the reference (all-zero weights would make both agree).
    weights = {"w_qkv.weight": randn(60, 20, seed=404, draw_dtype=torch.float32) * 0.3,
               "w_qkv.bias": randn(60, seed=405, draw_dtype=torch.float32) * 0.1,
               "w_o.weight": randn(20, 20, seed=406, draw_dtype=torch.float32) * 0.3,
               "w_o.bias": randn(20, seed=407, draw_dtype=torch.float32) * 0.1}
    mha = attention.MultiHeadSelfAttention(20, 5)
    mha.load_state_dict(weights)
    expected_module = model.MultiHeadSelfAttention(20, 5)
    expected_module.load_state_dict(weights)
    x = randn(2, 7, 20, seed=505, draw_dtype=torch.float32)
    with torch.no_grad():
        out = mha(x)
        check.close(out, expected_module(x), hint=oracle(mha_mistake, out, weights, 5, x))


@pytest.mark.points(1)
def test_attention_numpy_on_fresh_inputs():
    q, k, v = (randn(2, 4, 8, seed=606, draw_dtype=torch.float32).numpy(),
               randn(2, 6, 8, seed=607, draw_dtype=torch.float32).numpy(),
               randn(2, 6, 3, seed=608, draw_dtype=torch.float32).numpy())
    out = attention.attention_numpy(q, k, v)
    check.close(out, model.attention_numpy(q, k, v), hint=oracle(numpy_mistake, out, q, k, v))


def _mask_on_device():
    # runs where the student's code lives: a meta-device tensor never crosses the boundary
    mask = unwrap(attention.causal_mask)(2, 4, device="meta")
    return str(mask.device), str(mask.dtype), list(mask.shape)


@pytest.mark.points(1)
def test_causal_mask_is_built_on_the_given_device():
    # hidden because torch builds its meta-device arange kernels on first use (~2 s)
    report = in_one_crossing(attention, _mask_on_device)  # (device, dtype, shape)
    check.equal(report[0], "meta", what="causal_mask(2, 4, device='meta').device", hint="mask_device")
    check.equal([report[1], report[2]], ["torch.bool", [2, 4]], what="dtype and shape")
