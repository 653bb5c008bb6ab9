"""Hidden tests for week3/flash_attention: fresh seeded inputs, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student
from graders.testing import randn

pytestmark = pytest.mark.hidden

flash = student("week3.flash_attention")
model = reference("week3.flash_attention")


def compare(q, k, v, hint, **kwargs):
    out, lse = flash.flash_attention(q, k, v, **kwargs)
    expected = model.flash_attention(q, k, v, **kwargs)  # (out, lse)
    check.close(out, expected[0], what="out", hint=hint)
    check.close(lse, expected[1], what="lse", hint="lse_wrong")


@pytest.mark.points(2)
@pytest.mark.parametrize("lq, lk, block_q, block_k", [(77, 77, 20, 30), (33, 101, 8, 16), (129, 257, 64, 64)])
def test_ragged_on_fresh_inputs(lq, lk, block_q, block_k):
    q, k, v = randn(2, lq, 24, seed=2101), randn(2, lk, 24, seed=2102, scale=2.0), randn(2, lk, 10, seed=2103)
    compare(q, k, v, "ragged_last_block", block_q=block_q, block_k=block_k)


@pytest.mark.points(2)
@pytest.mark.parametrize("lq, lk, block_q, block_k", [(77, 77, 20, 30), (33, 101, 8, 16), (2, 129, 64, 64),
                                                      (100, 100, 100, 7)])
def test_causal_on_fresh_inputs(lq, lk, block_q, block_k):
    q, k, v = randn(3, lq, 16, seed=2201), randn(3, lk, 16, seed=2202, scale=2.0), randn(3, lk, 16, seed=2203)
    compare(q, k, v, "causal_blocks", is_causal=True, block_q=block_q, block_k=block_k)


@pytest.mark.points(2)
def test_growing_scores_on_fresh_inputs():
    q = randn(1, 4, 50, 16, seed=2301)
    k = randn(1, 4, 300, 16, seed=2302) * torch.linspace(0.2, 3.0, 300)[:, None]
    v = randn(1, 4, 300, 16, seed=2303)
    compare(q, k, v, "output_not_rescaled", block_q=25, block_k=25)


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_on_fresh_inputs(dtype):
    q, k, v = (randn(2, 2, 61, 32, seed=2401 + i, dtype=dtype) for i in range(3))
    compare(q, k, v, "causal_blocks", is_causal=True, block_q=32, block_k=16)
