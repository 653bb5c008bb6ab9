"""Hidden tests for week6/metrics: fresh inputs, expected values from the reference."""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from graders import check, reference, student

from .test_metrics import STRENGTHS, exact_pass_at_k, mc_questions, random_batch, simulate

pytestmark = pytest.mark.hidden

metrics = student("week6.metrics")
ref = reference("week6.metrics")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,dtype", [(100, torch.float32), (101, torch.float64), (102, torch.float32)])
def test_hidden_logprob_and_perplexity(seed, dtype):
    logits, labels, mask = random_batch(seed, B=4, T=13, V=17, dtype=dtype, p_mask=0.5)
    labels = labels.masked_fill(~mask, -100)
    check.close(metrics.sequence_logprob(logits, labels, mask), ref.sequence_logprob(logits, labels, mask),
                hint="mask_alignment")
    check.close(metrics.perplexity(logits, labels, mask), ref.perplexity(logits, labels, mask),
                hint="ppl_per_sequence")


@pytest.mark.points(1)
@pytest.mark.parametrize("seed", [103, 104])
def test_hidden_mcqa(seed):
    logprobs, gold, lengths = mc_questions(seed, n_questions=60)
    check.close(metrics.mcqa_accuracy(logprobs, gold), ref.mcqa_accuracy(logprobs, gold))
    check.close(metrics.mcqa_accuracy(logprobs, gold, lengths), ref.mcqa_accuracy(logprobs, gold, lengths),
                hint="acc_norm_ignored")


words = st.sampled_from(["a", "an", "the", "The", "cat", "then", "an-ode", "A.", "x", "rock'n'roll", "(1990)", "e=mc2"])


@pytest.mark.points(2)
@given(pred=st.lists(words, max_size=5), gold=st.lists(words, max_size=5),
       sep=st.sampled_from([" ", "  ", "\t", " , "]))
def test_hidden_qem(pred, gold, sep):
    p, g = sep.join(pred), " ".join(gold)
    check.equal(metrics.quasi_exact_match(p, g), ref.quasi_exact_match(p, g), what=f"quasi_exact_match({p!r}, {g!r})",
                hint="squad_normalisation")


@pytest.mark.points(1)
@given(n=st.integers(500, 3000), data=st.data())
def test_hidden_pass_at_k_large(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    check.close(metrics.pass_at_k(n, c, k), exact_pass_at_k(n, c, k), hint="pass_at_k_overflow")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,tie_rate", [(105, 0.1), (106, 0.3)])
def test_hidden_bradley_terry(seed, tie_rate):
    strengths = {**STRENGTHS, "fox": 0.9, "gnu": 1.4}
    games = simulate(seed, strengths, 900, tie_rate)
    got, want = metrics.bradley_terry(games), ref.bradley_terry(games)
    check.equal(sorted(got), sorted(want), what="players")
    check.close(torch.tensor([math.log(got[p]) for p in sorted(got)], dtype=torch.float64),
                torch.tensor([math.log(want[p]) for p in sorted(want)], dtype=torch.float64), rtol=1e-6, atol=1e-6,
                reason="iterative fits converge to ~1e-10; other correct solvers stop a little earlier",
                hint="bt_ties")
