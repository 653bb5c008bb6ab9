"""Public tests for week5/sampling.

Oracles: transformers' own logits warpers and processors, `GPT2LMHeadModel.generate` with
beam search on the tiny checkpoint, closed forms (OpenAI's penalties, bigram toy models),
and chi-square tests of sampled frequencies against exact distributions.

Statistical tests use fixed generators, so they are deterministic for a given
implementation; their thresholds are chosen so that a *correct* sampler drawing in any
order fails with probability at most 1e-6 per test (p-value of the chi-square statistic,
computed with the regularised incomplete gamma function).
"""

import functools
import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, strategies as st
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from graders import check, oracle, student
from graders.testing import hinted, mistake_shown

sampling = student("week5.sampling")

ROOT = Path(__file__).resolve().parents[2]
P_VALUE_FLOOR = 1e-6  # a correct sampler fails a chi-square test with probability 1e-6


def logits_batch(rows, vocab, seed, scale=2.0, shift=0.0):
    """Distinct rows of tie-free logits, some all negative (shift < 0)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=g) * scale + shift


def chi_square_p_value(counts, probs):
    """P(X >= stat) for X ~ chi^2 with (cells - 1) degrees of freedom; cells with p > 0."""
    counts, probs = counts.double(), probs.double()
    keep = probs > 0
    n = counts.sum()
    expected = n * probs[keep]
    stat = ((counts[keep] - expected) ** 2 / expected).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), stat / 2))


def warped(warper, x):
    """transformers' logits warper on x[..., V], row by row (called only through oracle(...))."""
    rows = x.reshape(-1, x.shape[-1])
    return warper(torch.zeros(rows.shape[0], 1, dtype=torch.long), rows.clone()).reshape(x.shape)


# --- which mistake a wrong result shows (called only through oracle(...)) -----------------
#
# A failing check names a mistake only when the student's result is what that mistake gives
# (a filter's output, exactly; a sampler's draws, by a chi-square test against the
# distribution that mistake draws from). A result that matches no mistake names none.


def top_p_mistake(out, x, p, min_tokens_to_keep=1):
    """top_p_filter's wrong output `out`: in every row that differs, one token too many kept
    (`top_p_too_many`) or one too few (`top_p_too_few`), or min_tokens_to_keep ignored."""
    expected = warped(TopPLogitsWarper(p, min_tokens_to_keep=min_tokens_to_keep), x)
    kept = torch.isfinite(expected).sum(-1, keepdim=True)
    place = x.argsort(-1, descending=True).argsort(-1)  # 0 for the most probable token of its row
    return mistake_shown(out, {
        "top_p_too_many": [x.masked_fill(place >= kept + 1, float("-inf"))],
        "top_p_too_few": [x.masked_fill(place >= (kept - 1).clamp_min(min_tokens_to_keep), float("-inf"))],
        "top_p_min_tokens": [warped(TopPLogitsWarper(p), x)],
    })


def top_k_mistake(out, x, k):
    """`top_k_ties` when every row that differs keeps exactly k of the tokens it should keep
    (the k-th largest value was tied, and the ties were cut); else None."""
    expected = warped(TopKLogitsWarper(k), x)
    if not (isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype):
        return None
    kept, wanted = torch.isfinite(out), torch.isfinite(expected)
    differs = (kept != wanted).any(-1)
    cut_ties = (kept.sum(-1) == min(k, x.shape[-1])) & ~(kept & ~wanted).any(-1)
    values_kept = bool((out[kept] == x[kept]).all())
    return "top_k_ties" if bool(differs.any()) and bool(cut_ties[differs].all()) and values_kept else None


def min_p_mistake(out, x, min_p):
    """min_p_filter's wrong output `out`: a threshold on absolute probabilities or on logits,
    or tokens on the threshold removed (`min_p_threshold`); else None."""
    probs = torch.softmax(x.double(), dim=-1)
    top = probs.amax(dim=-1, keepdim=True)
    return mistake_shown(out, {"min_p_threshold": [
        x.masked_fill(probs < min_p, float("-inf")),
        x.masked_fill(x < min_p * x.amax(dim=-1, keepdim=True), float("-inf")),
        x.masked_fill(probs <= min_p * top, float("-inf")),
    ]})


def token_counts(x, ids):
    """How often each token of the vocabulary occurs in ids, in float64, shaped like x."""
    return torch.zeros(x.shape, dtype=torch.float64).scatter_add(-1, ids, torch.ones(ids.shape, dtype=torch.float64))


def repetition_mistake(out, x, ids, penalty):
    """repetition_penalty's wrong output `out`: negative logits divided too, or the penalty
    applied to unseen tokens or once per occurrence; else None."""
    x64, counts = x.double(), token_counts(x, ids)
    seen = counts > 0
    penalised = torch.where(x64 < 0, x64 * penalty, x64 / penalty)
    return mistake_shown(out, {
        "repetition_negative": [torch.where(seen, x64 / penalty, x64).to(x.dtype)],
        "repetition_counts": [penalised.to(x.dtype),
                              torch.where(x64 < 0, x64 * penalty ** counts, x64 / penalty ** counts).to(x.dtype)],
    })


def frequency_mistake(out, x, ids, frequency, presence):
    """frequency_presence_penalty's wrong output `out`: presence per occurrence, frequency
    once, the two swapped, or the penalties added (`frequency_presence`); else None."""
    x64, counts = x.double(), token_counts(x, ids)
    once = (counts > 0).double()
    return mistake_shown(out, {"frequency_presence": [
        (x64 - counts * frequency - counts * presence).to(x.dtype),
        (x64 - once * frequency - once * presence).to(x.dtype),
        (x64 - once * frequency - counts * presence).to(x.dtype),
        (x64 + counts * frequency + once * presence).to(x.dtype),
    ]})


WARPERS = {"top_k": TopKLogitsWarper, "top_p": TopPLogitsWarper, "min_p": MinPLogitsWarper}


def probs_after(x, temperature, filters):
    """softmax of x[1, V] / temperature filtered by transformers' warpers in the order of
    `filters` ((name, value) pairs), in float64."""
    ids = torch.zeros(x.shape[0], 1, dtype=torch.long)
    x = TemperatureLogitsWarper(float(temperature))(ids, x)
    for name, value in filters:
        x = WARPERS[name](value)(ids, x)
    return torch.softmax(x.double(), dim=-1)


def sampling_variants(x, options):
    """The distribution sample(x, **options) draws from with each mistake that changes it."""
    temperature = options.get("temperature", 1.0)
    filters = [(name, options[name]) for name in WARPERS if options.get(name) is not None]
    filtered_first = probs_after(x, 1.0, filters).log()  # -inf where removed
    variants = {"temperature_after_filter": [torch.softmax(filtered_first / temperature, dim=-1)]}
    variants["filter_order"] = [probs_after(x, temperature, list(order))
                                for order in itertools.permutations(filters) if list(order) != filters]
    variants["sample_filter_ignored"] = [probs_after(x, temperature, [f for f in filters if f != ignored])
                                         for ignored in filters]
    return variants


def follows(counts, probs):
    """Whether draws with these counts per token could come from `probs`: none where it is 0,
    and frequencies a chi-square test accepts (a single possible token needs no test)."""
    if not bool((counts[probs == 0] == 0).all()):
        return False
    return int((probs > 0).sum()) == 1 or oracle(chi_square_p_value, counts, probs) > P_VALUE_FLOOR


def sampling_mistake(counts, x, options, otherwise=None):
    """The mistake whose distribution the draws (counts per token, from sample(x[1, V],
    **options)) follow, when the right one is not; `otherwise` when they follow none."""
    for mistake, distributions in sampling_variants(x, options).items():
        if any(follows(counts, probs[0]) for probs in distributions):
            return mistake
    return otherwise


# --- filters against transformers' warpers ----------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_matches_transformers(temperature):
    x = logits_batch(3, 11, seed=1, shift=-1.0)
    check.close(sampling.apply_temperature(x, temperature), oracle(warped, TemperatureLogitsWarper(temperature), x))


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 12), scale=st.sampled_from([0.5, 3.0, 10.0]),
       shift=st.sampled_from([0.0, -20.0]))
def test_top_k_matches_transformers(seed, k, scale, shift):
    x = logits_batch(4, 10, seed, scale, shift)
    out = sampling.top_k_filter(x, k)
    check.equal(out, oracle(warped, TopKLogitsWarper(k), x), hint=oracle(top_k_mistake, out, x, k))


@pytest.mark.points(2)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_keeps_every_tie_of_the_kth(k):
    # Integer logits: many ties, and rows that differ. Tied values are kept or dropped together.
    x = torch.randint(-3, 3, (6, 9), generator=torch.Generator().manual_seed(2)).float()
    x[0] = torch.tensor([3.0, 1.0, 1.0, 0.5, 1.0, -2.0, 0.0, 0.0, 3.0])
    out = sampling.top_k_filter(x, k)
    check.equal(out, oracle(warped, TopKLogitsWarper(k), x), hint=oracle(top_k_mistake, out, x, k))


@pytest.mark.points(1)
def test_top_k_worked_example():
    # The docstring's example, k = 2: both 1.0s tie with the 2nd largest value, so three are kept.
    x = torch.tensor([3.0, 1.0, 1.0, 0.5])
    out = sampling.top_k_filter(x, 2)
    check.equal(out, oracle(warped, TopKLogitsWarper(2), x), hint=oracle(top_k_mistake, out, x, 2),
                what="top_k_filter([3.0, 1.0, 1.0, 0.5], k=2)")


def top_p_oracle_is_unambiguous(x, p):
    """No cumulative mass within 1e-5 of p: the answer does not hinge on float rounding."""
    probs = torch.softmax(x.double(), dim=-1).sort(dim=-1, descending=True).values
    return bool(((probs.cumsum(-1) - p).abs() > 1e-5).all())


@pytest.mark.points(3)
@given(seed=st.integers(0, 2**16), p=st.sampled_from([0.01, 0.2, 0.5, 0.75, 0.9, 0.99]),
       scale=st.sampled_from([0.3, 2.0, 8.0]), shift=st.sampled_from([0.0, -30.0]))
def test_top_p_matches_transformers(seed, p, scale, shift):
    x = logits_batch(5, 12, seed, scale, shift)
    assume(top_p_oracle_is_unambiguous(x, p))
    expected = oracle(warped, TopPLogitsWarper(p), x)
    out = sampling.top_p_filter(x, p)
    check.equal(out, expected, hint=oracle(top_p_mistake, out, x, p))


@pytest.mark.points(2)
def test_top_p_worked_example():
    x = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    for p in (0.6, 0.5, 0.85, 0.4):  # keeps 2, 1, 3 and 1 tokens
        expected = oracle(warped, TopPLogitsWarper(p), x)
        out = sampling.top_p_filter(x, p)
        check.equal(out, expected, hint=oracle(top_p_mistake, out, x, p),
                    what=f"top_p_filter(log [0.5, 0.3, 0.15, 0.05], p={p})")


@pytest.mark.points(2)
@pytest.mark.parametrize("min_tokens_to_keep", [1, 2, 5])
@pytest.mark.parametrize("p", [0.05, 0.6])
def test_top_p_min_tokens_to_keep(min_tokens_to_keep, p):
    x = logits_batch(4, 10, seed=3, scale=4.0)
    assert top_p_oracle_is_unambiguous(x, p)
    out = sampling.top_p_filter(x, p, min_tokens_to_keep=min_tokens_to_keep)
    check.equal(out, oracle(warped, TopPLogitsWarper(p, min_tokens_to_keep=min_tokens_to_keep), x),
                hint=oracle(top_p_mistake, out, x, p, min_tokens_to_keep))


@pytest.mark.points(1)
def test_top_p_keeps_leading_batch_dims():
    x = logits_batch(6, 8, seed=4).reshape(2, 3, 8)
    assert top_p_oracle_is_unambiguous(x, 0.7)
    out = sampling.top_p_filter(x, 0.7)
    check.equal(out, oracle(warped, TopPLogitsWarper(0.7), x), hint=oracle(top_p_mistake, out, x, 0.7))


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), min_p=st.sampled_from([0.0, 0.02, 0.1, 0.5, 0.9]),
       scale=st.sampled_from([0.5, 3.0]), shift=st.sampled_from([0.0, -10.0]))
def test_min_p_matches_transformers(seed, min_p, scale, shift):
    x = logits_batch(4, 10, seed, scale, shift)
    probs = torch.softmax(x.double(), -1)
    ratio = probs / probs.amax(-1, keepdim=True)
    assume(bool(((ratio - min_p).abs() > 1e-5).all()))  # no token on the threshold
    out = sampling.min_p_filter(x, min_p)
    check.equal(out, oracle(warped, MinPLogitsWarper(min_p), x), hint=oracle(min_p_mistake, out, x, min_p))


@pytest.mark.points(1)
def test_min_p_keeps_the_tokens_on_the_threshold():
    # min_p = 1.0 puts the threshold on the top probability itself: removal is strict
    # (probs < min_p * max), so the most probable token, and every token tied with it, survives.
    x = torch.tensor([[2.0, 0.5, 2.0, -1.0], [0.0, 3.0, 1.0, 2.5]])
    out = sampling.min_p_filter(x, 1.0)
    check.equal(out, oracle(warped, MinPLogitsWarper(1.0), x), hint=oracle(min_p_mistake, out, x, 1.0),
                what="min_p_filter(x, min_p=1.0)")


# --- penalties ---------------------------------------------------------------------------


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), penalty=st.sampled_from([0.7, 1.2, 2.0]), shift=st.sampled_from([0.0, -1.0, 1.0]))
def test_repetition_penalty_matches_transformers(seed, penalty, shift):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 12, generator=g) * 2 + shift  # positive and negative logits
    ids = torch.randint(0, 12, (3, 7), generator=g)  # repeats within a row
    expected = oracle(lambda: RepetitionPenaltyLogitsProcessor(penalty)(ids, x.clone()))
    out = sampling.repetition_penalty(x, ids, penalty)
    check.close(out, expected, hint=oracle(repetition_mistake, out, x, ids, penalty))


@pytest.mark.points(1)
def test_repetition_penalty_worked_example():
    x = torch.tensor([[4.0, -1.0, 2.0, -3.0]])
    ids = torch.tensor([[0, 1, 1, 1]])  # token 1 three times: still penalised once
    expected = oracle(lambda: RepetitionPenaltyLogitsProcessor(2.0)(ids, x.clone()))
    out = sampling.repetition_penalty(x, ids, 2.0)
    check.close(out, expected, hint=oracle(repetition_mistake, out, x, ids, 2.0))


@pytest.mark.points(1)
def test_repetition_penalty_leaves_unseen_tokens_and_handles_leading_dims():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 9, generator=g)
    ids = torch.randint(0, 4, (2, 3, 5), generator=g)  # tokens 4..8 never seen
    expected = oracle(lambda: RepetitionPenaltyLogitsProcessor(1.5)(ids.reshape(6, 5), x.reshape(6, 9).clone()).reshape(2, 3, 9))
    out = sampling.repetition_penalty(x, ids, 1.5)
    check.close(out, expected, hint=oracle(repetition_mistake, out, x, ids, 1.5))


@pytest.mark.points(2)
@pytest.mark.parametrize("frequency,presence", [(0.5, 0.0), (0.0, 1.5), (0.3, 0.7), (-0.2, 0.4)])
def test_frequency_presence_penalty_closed_form(frequency, presence):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 8, generator=g)
    ids = torch.randint(0, 8, (2, 3, 10), generator=g)
    out = sampling.frequency_presence_penalty(x, ids, frequency, presence)
    check.close(out, oracle(penalised, x, ids, frequency, presence),
                hint=oracle(frequency_mistake, out, x, ids, frequency, presence))


def penalised(x, ids, frequency, presence):
    """OpenAI's penalties in closed form, token by token (called only through oracle(...))."""
    expected = x.clone()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            row = ids[i, j].tolist()
            for token in set(row):
                expected[i, j, token] -= row.count(token) * frequency + presence
    return expected


# --- sample ------------------------------------------------------------------------------


def filtered_probs(x, temperature=1.0, top_k=None, top_p=None, min_p=None):
    """The distribution `sample` must draw from, from transformers' warpers in their order.
    Called only where the checks judge (through oracle(...))."""
    ids = torch.zeros(x.shape[0], 1, dtype=torch.long)
    x = TemperatureLogitsWarper(float(temperature))(ids, x)
    if top_k is not None:
        x = TopKLogitsWarper(top_k)(ids, x)
    if top_p is not None:
        x = TopPLogitsWarper(top_p)(ids, x)
    if min_p is not None:
        x = MinPLogitsWarper(min_p)(ids, x)
    return torch.softmax(x.double(), dim=-1)


SAMPLE_CASES = [
    dict(),
    dict(temperature=0.6),
    dict(temperature=1.7, top_k=4),
    dict(temperature=0.8, top_p=0.8),
    dict(temperature=1.3, min_p=0.15),
    dict(temperature=0.9, top_k=5, top_p=0.9, min_p=0.05),
]


@pytest.mark.points(3)
@pytest.mark.parametrize("options", SAMPLE_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_sample_follows_the_filtered_distribution(options):
    logits = logits_batch(1, 7, seed=7, scale=1.2)
    expected = oracle(lambda: filtered_probs(logits, **options)[0])
    n = 6000
    draws = sampling.sample(logits.expand(n, 7), generator=torch.Generator().manual_seed(8), **options)
    check.equal(list(draws.shape), [n], what="shape of sample(logits[6000, 7])", hint="sample_distribution")
    counts = torch.bincount(draws, minlength=7)
    outside = oracle(lambda: int(counts[expected == 0].sum()))
    check.that(outside == 0, f"{outside} of {n} draws are tokens the filters remove",
               hint=oracle(sampling_mistake, counts, logits, options, "sample_distribution"), about=draws)
    p_value = oracle(chi_square_p_value, counts, expected)
    check.that(p_value > P_VALUE_FLOOR,
               f"sampled frequencies {(counts / n).tolist()} do not follow the filtered distribution "
               f"{[round(v, 4) for v in expected.tolist()]} (chi-square p-value {p_value:.2g})",
               hint=oracle(sampling_mistake, counts, logits, options, "sample_distribution"), about=draws)


def only_token_0_survives(logits, filters):
    assert bool((filtered_probs(logits, temperature=0.25, **filters)[0, 1:] == 0).all())


@pytest.mark.points(2)
@pytest.mark.parametrize("filters", [dict(top_p=0.5), dict(min_p=0.2)])
def test_sample_applies_temperature_before_filtering(filters):
    # At temperature 0.25 only token 0 survives top-p 0.5 / min-p 0.2; at temperature 1 token 1
    # would survive too. A correct sampler therefore draws token 0 every time.
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0]])
    oracle(only_token_0_survives, logits, filters)  # the premise, checked where the oracle may run
    draws = sampling.sample(logits.expand(400, 5), temperature=0.25, generator=torch.Generator().manual_seed(9),
                            **filters)
    counts = torch.bincount(draws.reshape(-1), minlength=5)
    check.that(bool((draws == 0).all()), f"token 0 is the only one left after temperature 0.25 and {filters}, "
               f"but the sampler drew {sorted(set(draws.tolist()))}",
               hint=oracle(sampling_mistake, counts, logits, {"temperature": 0.25, **filters}), about=draws)


@pytest.mark.points(1)
def test_sample_temperature_zero_is_greedy():
    logits = logits_batch(40, 30, seed=10, scale=0.5).reshape(2, 20, 30)
    out = sampling.sample(logits, temperature=0.0, top_k=3)
    check.equal(out, logits.argmax(-1), hint="greedy_temperature_zero")


@pytest.mark.points(1)
def test_sample_is_reproducible_with_a_generator_and_keeps_batch_shape():
    logits = logits_batch(4, 9, seed=11).reshape(2, 2, 9)
    a = sampling.sample(logits, generator=torch.Generator().manual_seed(12))
    b = sampling.sample(logits, generator=torch.Generator().manual_seed(12))
    check.equal(list(a.shape), [2, 2], what="shape", hint="sample_distribution")
    check.equal(a, b, what="two draws with identically seeded generators", hint="generator_ignored")


# --- beam search -------------------------------------------------------------------------


@functools.cache
def tiny_gpt2():
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    return GPT2LMHeadModel.from_pretrained(ROOT / "checkpoints" / "gpt2-tiny").eval()


def hf_beam_search(model, prompt, num_beams, max_new_tokens, length_penalty, eos_token_id):
    """generate()'s beam search: the oracle (called through oracle(...); also to pick an EOS id that the
    search really produces, an input)."""
    with torch.no_grad():
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), num_beams=num_beams, do_sample=False,
                              max_new_tokens=max_new_tokens, length_penalty=length_penalty,
                              eos_token_id=eos_token_id, pad_token_id=0, early_stopping=False)


def logits_fn(model):
    def forward(ids):
        with torch.no_grad():
            return model(ids).logits
    return forward


@pytest.mark.points(3)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed,num_beams,length_penalty", [(0, 2, 1.0), (1, 3, 0.5), (2, 4, 2.0), (3, 3, -1.0)])
def test_beam_search_matches_generate_without_eos(seed, num_beams, length_penalty):
    model = tiny_gpt2()
    prompt = torch.randint(1, 512, (1, 5), generator=torch.Generator().manual_seed(seed))
    expected = oracle(lambda: hf_beam_search(model, prompt, num_beams, 8, length_penalty, None))
    out = sampling.beam_search(logits_fn(model), prompt, num_beams, 8, length_penalty=length_penalty)
    check.equal(out, expected, hint="beam_search_rules")


@pytest.mark.points(4)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed,num_beams,length_penalty,eos_at",
                         [(0, 3, 0.5, 1), (1, 2, 1.0, 1), (1, 3, 1.0, 2), (2, 3, -0.5, 3), (4, 4, 2.0, 2),
                          (5, 3, 1.0, 0), (1, 3, None, 2), (5, 3, None, 0)])  # None: not passed (the default, 1.0)
def test_beam_search_matches_generate_with_eos(seed, num_beams, length_penalty, eos_at):
    # The EOS id is a token the search really produces: the one the oracle's own beam
    # search (without EOS) generates at position `eos_at`, so finished hypotheses matter.
    model = tiny_gpt2()
    prompt = torch.randint(1, 512, (1, 6), generator=torch.Generator().manual_seed(seed))
    penalty = 1.0 if length_penalty is None else length_penalty
    eos = int(hf_beam_search(model, prompt, num_beams, 10, penalty, None)[0, 6 + eos_at])
    expected = oracle(lambda: hf_beam_search(model, prompt, num_beams, 10, penalty, eos))
    options = {} if length_penalty is None else {"length_penalty": length_penalty}
    out = sampling.beam_search(logits_fn(model), prompt, num_beams, 10, eos_token_id=eos, **options)
    check.equal(out, expected, hint="beam_search_rules" if length_penalty is not None else "beam_default_length_penalty",
                what="beam" + ("" if length_penalty is not None else " (length_penalty not passed: 1.0)"),
                likely_if=None if length_penalty is not None else "the same case with length_penalty=1.0 passes")


@pytest.mark.points(2)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed,num_beams,length_penalty,rank", [(0, 2, 0.0, 2), (1, 3, 0.5, 4), (5, 3, 0.0, 3),
                                                                (2, 2, -1.0, 2)])
def test_beam_search_finishes_eos_only_among_the_first_k(seed, num_beams, length_penalty, rank):
    # EOS is the first step's candidate of rank k..2k-1: generate() drops it there (only the
    # first k candidates may finish), so an early EOS hypothesis must not win.
    model = tiny_gpt2()
    prompt = torch.randint(1, 512, (1, 6), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        eos = int(model(prompt).logits[0, -1].topk(2 * num_beams).indices[rank])
    expected = oracle(lambda: hf_beam_search(model, prompt, num_beams, 10, length_penalty, eos))
    out = sampling.beam_search(logits_fn(model), prompt, num_beams, 10, length_penalty=length_penalty,
                               eos_token_id=eos)
    check.equal(out, expected, hint="beam_search_rules")


# --- speculative decoding ----------------------------------------------------------------


class Bigram:
    """A toy language model: the next-token distribution depends only on the last token."""

    def __init__(self, probs):
        self.logits = torch.tensor(probs, dtype=torch.float64).log().float()

    def __call__(self, ids):
        return self.logits[ids]  # [B, L] -> [B, L, V]

    def greedy(self, ids, n):
        ids = ids[0].tolist()
        for _ in range(n):
            ids.append(int(self.logits[ids[-1]].argmax()))
        return torch.tensor([ids])


TARGET = Bigram([[0.5, 0.3, 0.2], [0.15, 0.6, 0.25], [0.3, 0.3, 0.4]])
DRAFT = Bigram([[0.1, 0.3, 0.6], [0.6, 0.2, 0.2], [0.34, 0.33, 0.33]])
TARGET4 = Bigram([[0.1, 0.5, 0.3, 0.1], [0.2, 0.1, 0.6, 0.1], [0.45, 0.25, 0.2, 0.1], [0.3, 0.1, 0.2, 0.4]])
DRAFT4 = Bigram([[0.4, 0.3, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.4, 0.1], [0.3, 0.4, 0.2, 0.1]])


def joint_probs(model, first, n, temperature=1.0):
    """P(x_1..x_n | first) under a bigram model, flattened in base-V order (only through oracle(...))."""
    step = torch.softmax(model.logits.double() / temperature, dim=-1)
    vocab = step.shape[0]
    probs = step[first]  # [V]
    last = torch.arange(vocab)
    for _ in range(n - 1):
        probs = (probs[:, None] * step[last]).reshape(-1)
        last = torch.arange(vocab).repeat(probs.numel() // vocab)
    return probs


@pytest.mark.points(2)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_speculative_greedy_equals_target_greedy(k):
    prompt = torch.tensor([[0, 2]])
    out, rate = sampling.speculative_decode(TARGET4, DRAFT4, prompt, 9, k=k, temperature=0.0)
    check.equal(out, TARGET4.greedy(prompt, 9), hint="speculative_greedy")
    check.that(isinstance(rate, float) and 0.0 <= rate <= 1.0, f"acceptance rate should be a float in [0, 1], got {rate!r}",
               hint="acceptance_rate")


@pytest.mark.points(2)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_speculative_accepts_everything_when_draft_is_target(temperature):
    prompt = torch.tensor([[1]])
    out, rate = sampling.speculative_decode(TARGET4, TARGET4, prompt, 11, k=3, temperature=temperature,
                                            generator=torch.Generator().manual_seed(13))
    check.equal(list(out.shape), [1, 12], what="output shape (the prompt and 11 new tokens)")
    check.that(rate == 1.0, f"a draft identical to the target must have every token accepted; "
               f"acceptance rate {rate!r}", hint="acceptance_rate")


@pytest.mark.points(4)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("k,temperature", [(2, 1.0), (1, 1.0), (4, 0.7)])
def test_speculative_sampling_follows_the_target(k, temperature):
    # Every 3-token continuation is counted; its exact probability under the target is a
    # product of table entries (all >= 0.003 here, >= 6 expected draws in every cell).
    n, new = 2000, 3
    g = torch.Generator().manual_seed(14 + k)
    counts = torch.zeros(27)
    rates = []
    for _ in range(n):
        out, rate = sampling.speculative_decode(TARGET, DRAFT, torch.tensor([[0]]), new, k=k,
                                                temperature=temperature, generator=g)
        a, b, c = out[0, 1:].tolist()
        counts[9 * a + 3 * b + c] += 1
        rates.append(rate)
    expected = oracle(joint_probs, TARGET, 0, new, temperature)
    p_value = oracle(chi_square_p_value, counts, expected)
    check.that(p_value > P_VALUE_FLOOR,
               f"speculative samples do not follow the target's distribution: chi-square p-value {p_value:.2g} "
               f"over {n} runs (largest gap {float((counts / n - expected).abs().max()):.3f})",
               hint="speculative_residual",
               likely_if="a draft token is accepted with probability min(1, p_target / p_draft)")
    mean_rate = sum(rates) / n
    check.that(0.05 < mean_rate < 0.95, f"mean acceptance rate {mean_rate:.3f}: with this draft some, but not all, "
               f"proposals should be accepted", hint="acceptance_rate")


# --- the stated bounds, every dtype, extreme magnitudes -----------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_temperature_must_be_positive(temperature):
    x = logits_batch(2, 5, seed=20)
    with check.raises(ValueError, hint="temperature_positive"):
        sampling.apply_temperature(x, temperature)


# Per dtype: the spacing between a row's logits near +-1e4 (a multiple of the dtype's ulp there,
# so every logit is exact and distinct) and, for `sample`, the temperature that brings those
# gaps back to 1 (so the distribution is not one-hot).
STEP = {torch.float64: 0.5, torch.float32: 0.5, torch.float16: 8.0, torch.bfloat16: 64.0}


def permuted_rows(shifts, vocab, step, seed, dtype):
    """One row per shift: shift + step * (a permutation of 0..V-1, centred): distinct, exact in dtype."""
    g = torch.Generator().manual_seed(seed)
    rows = [shift + step * (torch.randperm(vocab, generator=g).double() - vocab // 2) for shift in shifts]
    return torch.stack(rows).to(dtype)


def in_dtype(warper, x, dtype):
    """transformers' warper on the exact float64 values of x, back in x's dtype (only through oracle(...))."""
    return warped(warper, x.double()).to(dtype)


def dtype_or(out, dtype, hint):
    """`dtype_changed` when the student's output is not in the input's dtype, else `hint` (only through oracle(...))."""
    return "dtype_changed" if getattr(out, "dtype", dtype) != dtype else hint


def dtype_or_unstable(out, dtype, warper, x):
    """A filter's wrong output on rows [moderate, near +1e4, near -1e4]: `dtype_changed` in
    another dtype; `unstable_softmax` when it holds a nan or only the extreme rows are wrong;
    else None (only through oracle(...))."""
    if getattr(out, "dtype", dtype) != dtype:
        return "dtype_changed"
    expected = in_dtype(warper, x, dtype)
    if isinstance(out, torch.Tensor) and out.shape == expected.shape and (
            bool(out.isnan().any()) or check.matches(out[0], expected[0])):
        return "unstable_softmax"
    return None


def penalised_rows(x, ids, frequency, presence):
    """OpenAI's penalties on 2-D rows, computed in float64 and rounded once (only through oracle(...))."""
    return penalised(x.double()[None], ids[None], frequency, presence)[0].to(x.dtype)


def top_p_margin(x):
    """Distance of p = 0.5 and p = 0.9 from every cumulative mass of x's rows (float64)."""
    probs = torch.softmax(x.double(), dim=-1).sort(dim=-1, descending=True).values
    cumulative = probs.cumsum(-1)
    return min(float((cumulative - p).abs().min()) for p in (0.5, 0.9))


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_filters_keep_the_dtype_and_survive_logits_of_1e4(dtype):
    # Rows: moderate logits, logits near +1e4 (exp overflows), logits near -1e4 (a row that is
    # all very negative: exp underflows to 0/0). The filters that take a softmax must stay
    # exact there, and every function returns the input's dtype with kept values unchanged.
    x = torch.cat([permuted_rows([0.0], 9, 0.5, 21, dtype), permuted_rows([1e4, -1e4], 9, STEP[dtype], 22, dtype)])
    ids = torch.randint(0, 9, (3, 6), generator=torch.Generator().manual_seed(23))
    assert top_p_margin(x) > 0.02  # the kept sets do not hinge on the dtype's rounding of the masses
    out = sampling.apply_temperature(x, 0.5)
    check.close(out, x.double().div(0.5).to(dtype), hint=oracle(dtype_or, out, dtype, None),
                what="apply_temperature(x, 0.5)")
    out = sampling.top_k_filter(x, 3)  # the rows have no ties: a wrong result is not top_k_ties
    check.equal(out, oracle(in_dtype, TopKLogitsWarper(3), x, dtype), hint=oracle(dtype_or, out, dtype, None),
                what="top_k_filter(x, 3)")
    for p in (0.5, 0.9):
        out = sampling.top_p_filter(x, p)
        check.equal(out, oracle(in_dtype, TopPLogitsWarper(p), x, dtype),
                    hint=oracle(dtype_or_unstable, out, dtype, TopPLogitsWarper(p), x), what=f"top_p_filter(x, {p})")
    out = sampling.min_p_filter(x, 0.3)
    check.equal(out, oracle(in_dtype, MinPLogitsWarper(0.3), x, dtype),
                hint=oracle(dtype_or_unstable, out, dtype, MinPLogitsWarper(0.3), x), what="min_p_filter(x, 0.3)")
    out = sampling.repetition_penalty(x, ids, 2.0)  # halving and doubling are exact in every dtype
    check.close(out, oracle(lambda: RepetitionPenaltyLogitsProcessor(2.0)(ids, x.double()).to(dtype)),
                hint=oracle(dtype_or, out, dtype, oracle(repetition_mistake, out, x, ids, 2.0)),
                what="repetition_penalty(x, ids, 2.0)")
    out = sampling.frequency_presence_penalty(x, ids, 0.5, 0.25)
    check.close(out, oracle(penalised_rows, x, ids, 0.5, 0.25),
                hint=oracle(dtype_or, out, dtype, oracle(frequency_mistake, out, x, ids, 0.5, 0.25)),
                what="frequency_presence_penalty(x, ids, 0.5, 0.25)")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_sample_survives_logits_of_1e4(dtype):
    # Logits near +1e4 and near -1e4 whose gaps the temperature brings back to 1: the draws
    # must follow softmax(logits / T) (a softmax without the max subtracted gives nan there).
    step = STEP[dtype]
    x = permuted_rows([1e4, -1e4], 5, step, 24, dtype)
    expected = oracle(lambda: torch.softmax(x.double() / step, dim=-1))
    n = 2000
    draws = hinted("unstable_softmax", sampling.sample, x[:, None, :].expand(2, n, 5), temperature=step,
                   generator=torch.Generator().manual_seed(25))
    for row in range(2):
        counts = torch.bincount(draws[row].reshape(-1), minlength=5)
        p_value = oracle(chi_square_p_value, counts, expected[row])
        check.that(p_value > P_VALUE_FLOOR,
                   f"logits near {x[row, 0].item():.0f} ({dtype}): sampled frequencies {(counts / n).tolist()} do not "
                   f"follow softmax(logits / {step}) (chi-square p-value {p_value:.2g})",
                   hint="unstable_softmax", about=draws,
                   likely_if="sample follows the distribution on moderate logits (test_sample_follows_the_filtered_distribution)")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_sample_near_zero_temperature_is_greedy(dtype):
    # Temperature 1e-3, near its bound: logits / T reach ~5e3, and the argmax gap is >= 0.1,
    # so every other token has probability below exp(-100).
    x = permuted_rows([0.0] * 6, 8, 0.25, 26, dtype)
    draws = hinted("unstable_softmax", sampling.sample, x, temperature=1e-3, generator=torch.Generator().manual_seed(27))
    check.equal(draws, x.argmax(-1), what="sample(x, temperature=1e-3)", hint="unstable_softmax",
                likely_if="sample follows the distribution on moderate logits (test_sample_follows_the_filtered_distribution)")


@pytest.mark.points(1)
@pytest.mark.parametrize("filters", [dict(top_k=2), dict(top_p=0.5), dict(min_p=0.5)], ids=lambda f: next(iter(f)))
def test_sample_applies_every_filter_it_is_given(filters):
    # At temperature 1 each of these filters keeps only tokens 0 and 1 (probabilities
    # 0.46, 0.28, 0.17, 0.06, 0.02); without it, 300 draws would hit tokens 2-4 ~77 times.
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0]])
    draws = sampling.sample(logits.expand(300, 5), generator=torch.Generator().manual_seed(28), **filters)
    check.that(bool((draws < 2).all()), f"{filters} keeps only tokens 0 and 1 of softmax([2, 1.5, 1, 0, -1]), but "
               f"the sampler drew {sorted(set(draws.tolist()))}", hint="sample_filter_ignored", about=draws)


# Filters whose result depends on the order they run in (at temperature 1). Each later filter
# looks at the probabilities the earlier one left, renormalised.
ORDER_CASES = {
    # top-k 3 leaves [0.39, 0.33, 0.28]: top-p 0.7 then keeps tokens 0 and 1 (0.72 comes before
    # token 2). top-p first would keep tokens 0, 1 and 2 (0.65 < 0.7), and top-k 3 all of them.
    "top_k-then-top_p": (dict(top_k=3, top_p=0.7), [0.35, 0.3, 0.25, 0.1]),
    # top-p 0.57 keeps tokens 0 and 1 (0.55 < 0.57), and min-p 0.2 (threshold 0.11) both of them.
    # min-p first would leave [0.65, 0.35], of which top-p 0.57 keeps token 0 alone.
    "top_p-then-min_p": (dict(top_p=0.57, min_p=0.2), [0.55, 0.3, 0.1, 0.05]),
}


@pytest.mark.points(1)
@pytest.mark.parametrize("case", sorted(ORDER_CASES))
def test_sample_applies_the_filters_in_order(case):
    filters, probs = ORDER_CASES[case]
    logits = torch.tensor([probs], dtype=torch.float64).log().float()
    expected = oracle(lambda: filtered_probs(logits, **filters)[0])  # transformers' warpers, in the stated order
    n = 2000
    draws = sampling.sample(logits.expand(n, 4), generator=torch.Generator().manual_seed(32), **filters)
    counts = torch.bincount(draws, minlength=4)
    outside = oracle(lambda: int(counts[expected == 0].sum()))
    check.that(outside == 0, f"{outside} of {n} draws are tokens that {filters}, applied in the order top-k, top-p, "
               f"min-p, removes", hint=oracle(sampling_mistake, counts, logits, filters), about=draws)
    p_value = oracle(chi_square_p_value, counts, expected)
    check.that(p_value > P_VALUE_FLOOR,
               f"sampled frequencies {(counts / n).tolist()} do not follow {filters} applied in the order top-k, "
               f"top-p, min-p: {[round(v, 4) for v in expected.tolist()]} (chi-square p-value {p_value:.2g})",
               hint=oracle(sampling_mistake, counts, logits, filters), about=draws)


@pytest.mark.points(1)
def test_sample_draws_with_the_given_generator():
    # 64 rows: two different seeds agree on every row with probability < 1e-30.
    logits = logits_batch(64, 9, seed=29)
    a = sampling.sample(logits, generator=torch.Generator().manual_seed(30))
    b = sampling.sample(logits, generator=torch.Generator().manual_seed(30))
    c = sampling.sample(logits, generator=torch.Generator().manual_seed(31))
    check.equal(a, b, what="two draws with identically seeded generators", hint="generator_ignored")
    check.that(not bool((a == c).all()), "generators seeded differently gave identical draws on all 64 rows: "
               "is `generator` passed to torch.multinomial?", hint="generator_ignored", about=c)


def greedy_acceptance_rate(target, draft, prompt, n, k, whole_rounds=False, per_new_token=False):
    """Speculative decoding at temperature 0 on bigram models, by the stub's rules: the
    acceptance rate (only through oracle(...)). The mistakes' rates: `whole_rounds`, k
    proposals even in the last round; `per_new_token`, accepted tokens / new tokens."""
    ids, start = prompt[0].tolist(), prompt.shape[1]
    proposed = accepted = 0
    while len(ids) - start < n:
        props = []
        for _ in range(k if whole_rounds else min(k, n - (len(ids) - start))):
            props.append(int(draft.logits[(ids + props)[-1]].argmax()))
        new = []
        for token in props:
            proposed += 1
            want = int(target.logits[(ids + new)[-1]].argmax())
            new.append(want)
            if token != want:
                break
            accepted += 1
        else:
            new.append(int(target.logits[(ids + new)[-1]].argmax()))
        ids += new
    return accepted / (len(ids) - start if per_new_token else proposed)


def acceptance_mistake(rate, target, draft, prompt, n, k, k_given=True):
    """The mistake a wrong greedy acceptance rate shows: proposals not cut to the tokens still
    to generate, k ignored (4 always), rate per new token, or (k not given) another default."""
    variants = {
        "speculative_draft_length": [greedy_acceptance_rate(target, draft, prompt, n, k, whole_rounds=True)]
        + ([greedy_acceptance_rate(target, draft, prompt, n, 4)] if k_given and k != 4 else []),
        "acceptance_rate": [greedy_acceptance_rate(target, draft, prompt, n, k, per_new_token=True)],
    }
    if not k_given:
        variants["speculative_default_k"] = [greedy_acceptance_rate(target, draft, prompt, n, other)
                                             for other in range(1, 9) if other != k]
    return mistake_shown(rate, variants)


# Greedy paths: the target cycles 0 -> 1 -> 2 -> 3 -> 0; the draft agrees except after 3.
TARGET_CYCLE = Bigram([[0.1, 0.5, 0.3, 0.1], [0.2, 0.1, 0.6, 0.1], [0.1, 0.2, 0.3, 0.4], [0.45, 0.25, 0.2, 0.1]])
DRAFT_CYCLE = Bigram([[0.2, 0.4, 0.3, 0.1], [0.1, 0.2, 0.5, 0.2], [0.2, 0.1, 0.2, 0.5], [0.1, 0.6, 0.2, 0.1]])


@pytest.mark.points(1)
@pytest.mark.parametrize("k,n", [(2, 5), (3, 7), (5, 7)])
def test_speculative_greedy_acceptance_rate(k, n):
    # The draft proposes min(k, tokens still to generate) tokens per round: the last round
    # proposes fewer, and the acceptance rate counts every proposal.
    prompt = torch.tensor([[2, 0]])
    _, rate = sampling.speculative_decode(TARGET_CYCLE, DRAFT_CYCLE, prompt, n, k=k, temperature=0.0)
    check.close(rate, oracle(greedy_acceptance_rate, TARGET_CYCLE, DRAFT_CYCLE, prompt, n, k), what="acceptance rate",
                hint=oracle(acceptance_mistake, rate, TARGET_CYCLE, DRAFT_CYCLE, prompt, n, k))


# Greedy paths of period 5: the target cycles 0 -> 1 -> 2 -> 3 -> 4 -> 0; the draft agrees except
# after 4. A round that starts at 0 with 4 proposals (1, 2, 3, 4) never asks the draft about 4, so
# the acceptance rate is 1.0 with k = 4 and below it with 3 or 5.
TARGET_CYCLE5 = Bigram([[0.125, 0.5, 0.125, 0.125, 0.125], [0.125, 0.125, 0.5, 0.125, 0.125],
                        [0.125, 0.125, 0.125, 0.5, 0.125], [0.125, 0.125, 0.125, 0.125, 0.5],
                        [0.5, 0.125, 0.125, 0.125, 0.125]])
DRAFT_CYCLE5 = Bigram([[0.125, 0.5, 0.125, 0.125, 0.125], [0.125, 0.125, 0.5, 0.125, 0.125],
                       [0.125, 0.125, 0.125, 0.5, 0.125], [0.125, 0.125, 0.125, 0.125, 0.5],
                       [0.125, 0.5, 0.125, 0.125, 0.125]])


@pytest.mark.points(1)
def test_speculative_default_draft_length_is_4():
    """speculative_decode without k drafts k = 4 tokens per round (the signature's default)."""
    prompt = torch.tensor([[0]])
    _, rate = sampling.speculative_decode(TARGET_CYCLE5, DRAFT_CYCLE5, prompt, 7, temperature=0.0)
    check.close(rate, oracle(greedy_acceptance_rate, TARGET_CYCLE5, DRAFT_CYCLE5, prompt, 7, 4),
                what="acceptance rate with k not passed (4)",
                hint=oracle(acceptance_mistake, rate, TARGET_CYCLE5, DRAFT_CYCLE5, prompt, 7, 4, False))
