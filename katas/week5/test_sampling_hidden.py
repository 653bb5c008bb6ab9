"""Hidden tests for week5/sampling: fresh seeded inputs, expected values from the reference."""

import functools
from pathlib import Path

import pytest
import torch

from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from graders import check, oracle, reference, student

from .test_sampling import P_VALUE_FLOOR  # a correct sampler fails a chi-square test with probability 1e-6
from .test_sampling import (frequency_mistake, min_p_mistake, repetition_mistake, sampling_mistake, top_k_mistake,
                            top_p_mistake)

pytestmark = pytest.mark.hidden

sampling = student("week5.sampling")
model_solution = reference("week5.sampling")

ROOT = Path(__file__).resolve().parents[2]


def fresh_logits(shape, seed, scale=2.5, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale - 1.0).to(dtype)


def boundary_safe(x, p):
    probs = torch.softmax(x.double(), dim=-1).sort(dim=-1, descending=True).values
    return bool(((probs.cumsum(-1) - p).abs() > 1e-5).all())


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [101, 102, 103])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_filters_match_reference(seed, dtype):
    x = fresh_logits((2, 3, 17), seed, dtype=dtype)
    check.close(sampling.apply_temperature(x, 0.7), model_solution.apply_temperature(x, 0.7))
    for k in (1, 4, 17, 30):
        out = sampling.top_k_filter(x, k)
        check.equal(out, model_solution.top_k_filter(x, k), hint=oracle(top_k_mistake, out, x, k))
    for p in (0.05, 0.35, 0.8, 0.97):
        if boundary_safe(x, p):
            out = sampling.top_p_filter(x, p)
            check.equal(out, model_solution.top_p_filter(x, p), hint=oracle(top_p_mistake, out, x, p))
            out = sampling.top_p_filter(x, p, min_tokens_to_keep=3)
            check.equal(out, model_solution.top_p_filter(x, p, min_tokens_to_keep=3),
                        hint=oracle(top_p_mistake, out, x, p, 3))
    for min_p in (0.01, 0.3):
        out = sampling.min_p_filter(x, min_p)
        check.equal(out, model_solution.min_p_filter(x, min_p), hint=oracle(min_p_mistake, out, x, min_p))


@pytest.mark.points(2)
def test_top_k_ties_match_reference():
    x = torch.randint(-2, 2, (4, 2, 11), generator=torch.Generator().manual_seed(104)).float()
    for k in (1, 2, 3, 6):
        out = sampling.top_k_filter(x, k)
        check.equal(out, model_solution.top_k_filter(x, k), hint=oracle(top_k_mistake, out, x, k))


@pytest.mark.points(2)
@pytest.mark.parametrize("penalty", [1.1, 3.0, 0.6])
def test_penalties_match_reference(penalty):
    g = torch.Generator().manual_seed(105)
    x = torch.randn(3, 2, 13, generator=g) * 3
    ids = torch.randint(0, 13, (3, 2, 9), generator=g)
    out = sampling.repetition_penalty(x, ids, penalty)
    check.close(out, model_solution.repetition_penalty(x, ids, penalty),
                hint=oracle(repetition_mistake, out, x, ids, penalty))
    out = sampling.frequency_presence_penalty(x, ids, 0.25 * penalty, 1.0 / penalty)
    check.close(out, model_solution.frequency_presence_penalty(x, ids, 0.25 * penalty, 1.0 / penalty),
                hint=oracle(frequency_mistake, out, x, ids, 0.25 * penalty, 1.0 / penalty))


@pytest.mark.points(1)
def test_greedy_matches_reference():
    x = fresh_logits((5, 4, 23), 106)
    check.equal(sampling.sample(x, temperature=0), model_solution.sample(x, temperature=0),
                hint="greedy_temperature_zero")


def chi_square_p_value(counts, probs):
    """Called only through oracle(...)."""
    counts, probs = counts.double(), probs.double()
    keep = probs > 0
    expected = counts.sum() * probs[keep]
    stat = ((counts[keep] - expected) ** 2 / expected).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), stat / 2))


def filtered_distribution(logits, options):
    """softmax of transformers' warpers applied in order (called only through oracle(...))."""
    ids = torch.zeros(1, 1, dtype=torch.long)
    filtered = TemperatureLogitsWarper(options["temperature"])(ids, logits)
    if "top_k" in options:
        filtered = TopKLogitsWarper(options["top_k"])(ids, filtered)
    if "top_p" in options:
        filtered = TopPLogitsWarper(options["top_p"])(ids, filtered)
    if "min_p" in options:
        filtered = MinPLogitsWarper(options["min_p"])(ids, filtered)
    return torch.softmax(filtered.double(), -1)[0]


@pytest.mark.points(2)
@pytest.mark.parametrize("options", [dict(temperature=0.5, top_p=0.9), dict(temperature=2.0, top_k=3, min_p=0.3)])
def test_sample_distribution_on_fresh_logits(options):
    logits = fresh_logits((1, 6), 107, scale=1.0)
    expected = oracle(filtered_distribution, logits, options)
    n = 5000
    draws = sampling.sample(logits.expand(n, 6), generator=torch.Generator().manual_seed(108), **options)
    counts = torch.bincount(draws, minlength=6)
    check.that(int(counts[expected == 0].sum()) == 0, "the sampler drew tokens the filters remove",
               hint=oracle(sampling_mistake, counts, logits, options, "sample_distribution"), about=draws)
    p_value = oracle(chi_square_p_value, counts, expected)
    check.that(p_value > P_VALUE_FLOOR, f"sampled frequencies do not follow the filtered distribution "
               f"(chi-square p-value {p_value:.2g})",
               hint=oracle(sampling_mistake, counts, logits, options, "sample_distribution"), about=draws)


class TrigramToy:
    """A deterministic toy LM over 40 tokens whose logits depend on the last two tokens."""

    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(40, 40, 40, generator=g) * 1.5

    def __call__(self, ids):
        prev = torch.cat([ids[:, :1], ids[:, :-1]], dim=1)
        return self.table[prev, ids]


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,num_beams,length_penalty,eos", [(110, 2, 1.0, 3), (111, 3, 0.0, 7), (112, 4, 2.0, 1),
                                                               (113, 3, -1.0, 5), (114, 5, 1.0, None)])
def test_beam_search_matches_reference_on_a_toy_model(seed, num_beams, length_penalty, eos):
    model = TrigramToy(seed)
    prompt = torch.tensor([[seed % 40, (seed * 7) % 40, 2]])
    expected = model_solution.beam_search(model, prompt, num_beams, 9, length_penalty=length_penalty, eos_token_id=eos)
    out = sampling.beam_search(model, prompt, num_beams, 9, length_penalty=length_penalty, eos_token_id=eos)
    check.equal(out, expected, hint="beam_search_rules")


@pytest.mark.points(1)
@pytest.mark.parametrize("num_beams", [2, 3])
def test_beam_search_keeps_only_the_k_best_finished(num_beams):
    # EOS (token 0) follows every token but the prompt's last with probability 0.9, so more than
    # k hypotheses finish within two steps. With length_penalty 2 the search then stops: the best
    # running beam, at its current length, cannot beat the k-th best finished one. Keeping every
    # finished hypothesis (and so comparing with the worst of them) searches on to a longer answer.
    after = [0.9, 0.02, 0.02, 0.03, 0.02, 0.01]
    model = Bigram([after] * 5 + [[0.4, 0.3, 0.25, 0.02, 0.02, 0.01]])
    prompt = torch.tensor([[3, 5]])
    expected = model_solution.beam_search(model, prompt, num_beams, 9, length_penalty=2.0, eos_token_id=0)
    out = sampling.beam_search(model, prompt, num_beams, 9, length_penalty=2.0, eos_token_id=0)
    check.equal(out, expected, hint="beam_search_rules")


@functools.cache
def tiny_gpt2():
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    return GPT2LMHeadModel.from_pretrained(ROOT / "checkpoints" / "gpt2-tiny").eval()


def greedy_generate(model, prompt, max_new_tokens):
    """transformers' greedy generate (called only through oracle(...))."""
    with torch.no_grad():
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              max_new_tokens=max_new_tokens, eos_token_id=None, pad_token_id=0)


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_speculative_greedy_on_gpt2_equals_generate():
    target = tiny_gpt2()
    draft = type(target)(target.config).eval()  # a different random model of the same shape
    torch.manual_seed(115)
    draft.load_state_dict({k: v + 0.05 * torch.randn_like(v) for k, v in target.state_dict().items()})

    def call(model):
        def forward(ids):
            with torch.no_grad():
                return model(ids).logits
        return forward

    prompt = torch.randint(1, 512, (1, 5), generator=torch.Generator().manual_seed(116))
    expected = oracle(greedy_generate, target, prompt, 12)
    out, rate = sampling.speculative_decode(call(target), call(draft), prompt, 12, k=3, temperature=0.0)
    check.equal(out, expected, hint="speculative_greedy")
    expected_out = model_solution.speculative_decode(call(target), call(draft), prompt, 12, k=3, temperature=0.0)
    check.close(rate, expected_out[1], hint="acceptance_rate", what="acceptance rate",
                likely_if="proposals are cut to the tokens still to generate (test_speculative_greedy_acceptance_rate passes)")


class Bigram:
    def __init__(self, probs):
        self.logits = torch.tensor(probs, dtype=torch.float64).log().float()

    def __call__(self, ids):
        return self.logits[ids]


def two_token_probs(target):
    """P(a | 0) * P(b | a), flattened (called only through oracle(...))."""
    step = torch.softmax(target.logits.double(), -1)
    return (step[0][:, None] * step).reshape(-1)


@pytest.mark.points(3)
@pytest.mark.timeout(120)
def test_speculative_sampling_two_tokens_follow_the_target():
    target = Bigram([[0.2, 0.5, 0.2, 0.1], [0.4, 0.1, 0.1, 0.4], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    draft = Bigram([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.6, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]])
    n, g = 2500, torch.Generator().manual_seed(117)
    counts = torch.zeros(16)
    for _ in range(n):
        out, _ = sampling.speculative_decode(target, draft, torch.tensor([[3, 0]]), 2, k=3, generator=g)
        counts[4 * int(out[0, 2]) + int(out[0, 3])] += 1
    expected = oracle(two_token_probs, target)
    p_value = oracle(chi_square_p_value, counts, expected)
    check.that(p_value > P_VALUE_FLOOR, f"speculative samples do not follow the target (chi-square p-value "
               f"{p_value:.2g})", hint="speculative_residual",
               likely_if="a draft token is accepted with probability min(1, p_target / p_draft)")
