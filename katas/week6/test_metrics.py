"""Public tests for week6/metrics.

Oracles: transformers' own causal-LM loss on the tiny GPT-2 checkpoint (real logits),
torch's cross-entropy, exact binomials with Python integers and fractions, a float64
maximum-likelihood fit of Bradley-Terry with torch's L-BFGS, and the definitions
(argmax, SQuAD's normalisation rules) applied to inputs whose answer the test knows.
"""

import math
import random
import string
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student
from graders.testing import hinted, randn

metrics = student("week6.metrics")


def token_logprob_oracle(logits, labels, mask):
    """Per-sequence sums from torch's cross-entropy with ignore_index, shifted by one."""
    shifted = labels[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="none")
    return -nll.sum(dim=-1)


def random_batch(seed, B=3, T=9, V=11, dtype=torch.float64, p_mask=0.3):
    g = torch.Generator().manual_seed(seed)
    logits = randn(B, T, V, seed=seed, dtype=dtype, scale=2.0)
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) > p_mask
    mask[:, -1] = True  # at least one counted token per row
    return logits, labels, mask


# --- sequence_logprob and perplexity -----------------------------------------------------


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), B=st.integers(1, 3), T=st.integers(2, 8), V=st.integers(2, 9))
def test_label_t_is_predicted_by_the_logits_at_t_minus_1(seed, B, T, V):
    logits, labels, _ = random_batch(seed, B, T, V)
    mask = torch.ones(B, T, dtype=torch.bool)
    check.close(metrics.sequence_logprob(logits, labels, mask), token_logprob_oracle(logits, labels, mask),
                hint="no_shift")


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16))
def test_mask_is_aligned_with_the_labels(seed):
    logits, labels, mask = random_batch(seed)
    check.close(metrics.sequence_logprob(logits, labels, mask), token_logprob_oracle(logits, labels, mask),
                hint="mask_alignment")


@pytest.mark.points(1)
def test_position_zero_never_counts():
    logits, labels, mask = random_batch(1)
    only_first = torch.zeros_like(mask)
    only_first[:, 0] = True
    mask = mask.clone()
    mask[:, 0] = False
    with_first = mask | only_first
    check.close(metrics.sequence_logprob(logits, labels, with_first), token_logprob_oracle(logits, labels, mask),
                what="log-probs with mask[:, 0] set (position 0 has no prediction)", hint="mask_alignment")


@pytest.mark.points(1)
def test_token_logprobs_are_summed_not_averaged():
    logits, labels, _ = random_batch(2, B=2, T=10)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 4:] = False  # rows with 9 and 3 counted tokens
    check.close(metrics.sequence_logprob(logits, labels, mask), token_logprob_oracle(logits, labels, mask),
                hint="mean_not_sum")


@pytest.mark.points(1)
def test_uncounted_labels_may_be_minus_100():
    logits, labels, mask = random_batch(3)
    labels = labels.masked_fill(~mask, -100)
    out = hinted("ignore_index", metrics.sequence_logprob, logits, labels, mask)
    check.close(out, token_logprob_oracle(logits, labels.clamp(min=0), mask), hint="ignore_index")


@pytest.mark.points(1)
def test_float32_logits_give_float32_sums():
    logits, labels, mask = random_batch(4, dtype=torch.float32)
    check.close(metrics.sequence_logprob(logits, labels, mask), token_logprob_oracle(logits, labels, mask))


@pytest.fixture(scope="module")
def gpt2_batch():
    """Real logits of the tiny GPT-2 checkpoint and transformers' own loss (stored by the recipe).

    Rows: a prompt (not counted), a response (counted), then right padding (not counted),
    of different lengths, so token-weighted and per-row averages differ.
    """
    data = fixtures.load("week6/metrics")
    mask = data["gpt2_mask"]
    counts = mask[:, 1:].sum(dim=1)
    expected_sums = -data["gpt2_row_loss"] * counts
    return data["gpt2_logits"], data["gpt2_ids"], mask, expected_sums, torch.exp(data["gpt2_batch_loss"])


@pytest.mark.points(2)
def test_sequence_logprob_on_tiny_gpt2(gpt2_batch):
    logits, ids, mask, expected, _ = gpt2_batch
    check.close(metrics.sequence_logprob(logits, ids, mask), expected, rtol=1e-5, atol=1e-4,
                reason="transformers' mean loss times the token count re-rounds sums of ~20 float32 terms",
                hint="no_shift")


@pytest.mark.points(2)
def test_perplexity_on_tiny_gpt2_pools_the_batch(gpt2_batch):
    logits, ids, mask, _, expected = gpt2_batch
    check.close(metrics.perplexity(logits, ids, mask), expected, hint="ppl_per_sequence")


@pytest.mark.points(1)
@pytest.mark.parametrize("V", [7, 512])
def test_perplexity_of_uniform_logits_is_the_vocabulary_size(V):
    _, labels, mask = random_batch(5, V=V)
    logits = torch.zeros(3, 9, V, dtype=torch.float64)
    check.close(metrics.perplexity(logits, labels, mask), torch.tensor(float(V), dtype=torch.float64))


@pytest.mark.points(1)
def test_perplexity_needs_a_counted_token():
    logits, labels, mask = random_batch(6)
    mask[:, 1:] = False
    with check.raises(ValueError):
        metrics.perplexity(logits, labels, mask)


# --- multiple choice -----------------------------------------------------------------------


@pytest.mark.points(1)
@given(choices=st.lists(st.text(max_size=12), max_size=5))
def test_byte_lengths_count_utf8_bytes(choices):
    check.equal(list(metrics.byte_lengths(choices)), [len(c.encode("utf-8")) for c in choices], hint="acc_norm_bytes")


@pytest.mark.points(1)
def test_byte_lengths_of_non_ascii_choices():
    choices = ["café", "naïve résumé", "北京", "ok 🙂"]  # 1, 2, 3 and 4 bytes per character
    check.equal(list(metrics.byte_lengths(choices)), [len(c.encode("utf-8")) for c in choices], hint="acc_norm_bytes")


def mc_questions(seed, n_questions=40):
    rng = np.random.default_rng(seed)
    logprobs, gold, lengths = [], [], []
    for _ in range(n_questions):
        k = int(rng.integers(2, 6))
        logprobs.append([float(x) for x in -rng.uniform(1, 30, k)])
        lengths.append([int(x) for x in rng.integers(1, 40, k)])
        gold.append(int(rng.integers(0, k)))
    return logprobs, gold, lengths


@pytest.mark.points(1)
@pytest.mark.parametrize("seed", [0, 1])
def test_acc_is_the_fraction_of_argmax_hits(seed):
    logprobs, gold, _ = mc_questions(seed)
    check.close(metrics.mcqa_accuracy(logprobs, gold),
                float(np.mean([int(np.argmax(lp)) == g for lp, g in zip(logprobs, gold)])))


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [2, 3])
def test_acc_norm_divides_by_byte_length(seed):
    logprobs, gold, lengths = mc_questions(seed)
    check.close(metrics.mcqa_accuracy(logprobs, gold, lengths),
                float(np.mean([int(np.argmax(np.array(lp) / np.array(n))) == g
                               for lp, g, n in zip(logprobs, gold, lengths)])), hint="acc_norm_ignored")


@pytest.mark.points(1)
def test_mcqa_rejects_mismatched_gold():
    with check.raises(ValueError):
        metrics.mcqa_accuracy([[-1.0, -2.0], [-3.0, -1.0]], [0])


# --- quasi exact match ---------------------------------------------------------------------

ARTICLES = {"a", "an", "the"}
plain_words = st.lists(st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=7)
                       .filter(lambda w: w not in ARTICLES), min_size=1, max_size=6)


def scramble(rng, words, articles=False):
    """Change only what SQuAD's normalisation removes: case, punctuation, spacing (and articles)."""
    out = []
    for w in words:
        if articles and rng.random() < 0.5:
            out.append(rng.choice(["a", "an", "The", "THE", "the"]))
        w = "".join(c.upper() if rng.random() < 0.3 else c for c in w)
        w = rng.choice(["", "(", '"', "'"]) + w + rng.choice(["", ".", ",", "!", "?", ")", "'s"[:1], ";"])
        out.append(w)
    if articles:
        out.append(rng.choice(["a", "the"]))
    return rng.choice(["", " ", "\n"]) + rng.choice([" ", "  ", "\t"]).join(out) + rng.choice(["", " ", " !"])


@pytest.mark.points(2)
@given(words=plain_words, seed=st.integers(0, 2**16))
def test_qem_ignores_case_punctuation_and_spacing(words, seed):
    pred = scramble(random.Random(seed), words)
    check.equal(metrics.quasi_exact_match(pred, " ".join(words)), True, what=f"quasi_exact_match({pred!r}, {' '.join(words)!r})",
                hint="squad_normalisation")


@pytest.mark.points(1)
@given(words=plain_words, seed=st.integers(0, 2**16))
def test_qem_ignores_articles(words, seed):
    pred = scramble(random.Random(seed), words, articles=True)
    check.equal(metrics.quasi_exact_match(pred, " ".join(words)), True, what=f"quasi_exact_match({pred!r}, {' '.join(words)!r})",
                hint="squad_articles")


@pytest.mark.points(1)
@given(words=plain_words, seed=st.integers(0, 2**16), data=st.data())
def test_qem_rejects_a_different_word(words, seed, data):
    i = data.draw(st.integers(0, len(words) - 1))
    other = list(words)
    other[i] = words[i] + "x"
    check.equal(metrics.quasi_exact_match(scramble(random.Random(seed), other), " ".join(words)), False)


@pytest.mark.points(1)
@pytest.mark.parametrize("pred,gold,match", [
    ("then", "n", False),          # "the" inside a word is not an article
    ("another", "other", False),   # nor is "an"
    ("The  Eiffel Tower!", "eiffel tower", True),
    ("a", "", True),               # an answer that is only an article normalises to ""
    ("rock-n-roll", "rocknroll", True),  # punctuation is deleted, not turned into spaces
])
def test_qem_squad_edge_cases(pred, gold, match):
    check.equal(metrics.quasi_exact_match(pred, gold), match, what=f"quasi_exact_match({pred!r}, {gold!r})",
                hint="squad_articles" if "the" in pred or "an" in pred else "squad_normalisation")


# --- pass@k --------------------------------------------------------------------------------


def exact_pass_at_k(n, c, k):
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.points(2)
@given(n=st.integers(1, 200), data=st.data())
def test_pass_at_k_is_the_unbiased_estimator(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    check.close(metrics.pass_at_k(n, c, k), exact_pass_at_k(n, c, k), what=f"pass_at_k({n}, {c}, {k})",
                hint="pass_at_k_biased")


@pytest.mark.points(2)
@pytest.mark.parametrize("n,c,k", [(1000, 3, 100), (2000, 7, 1000), (2000, 1500, 600), (5000, 1, 2500)])
def test_pass_at_k_is_stable_for_large_n(n, c, k):
    got = hinted("pass_at_k_overflow", metrics.pass_at_k, n, c, k)
    check.close(got, exact_pass_at_k(n, c, k), what=f"pass_at_k({n}, {c}, {k})", hint="pass_at_k_overflow")


@pytest.mark.points(1)
def test_pass_at_k_edges():
    check.close(metrics.pass_at_k(10, 0, 5), 0.0, what="no correct sample")
    check.close(metrics.pass_at_k(10, 6, 5), 1.0, what="fewer than k wrong samples")
    check.close(metrics.pass_at_k(10, 3, 1), 0.3, what="pass@1 is c/n")
    with check.raises(ValueError):
        metrics.pass_at_k(5, 2, 6)


# --- Bradley-Terry ---------------------------------------------------------------------------


def simulate(seed, strengths, n_games, tie_rate=0.0):
    """Games from the Bradley-Terry model; a fraction `tie_rate` of games is declared a tie."""
    rng = random.Random(seed)
    names = sorted(strengths)
    games = []
    for _ in range(n_games):
        a, b = rng.sample(names, 2)
        if rng.random() < tie_rate:
            games.append((a, b, 0.5))
        else:
            games.append((a, b, 1.0 if rng.random() < strengths[a] / (strengths[a] + strengths[b]) else 0.0))
    return games


def mle_log_strengths(games):
    """Maximum likelihood (ties as half a win each), float64 L-BFGS; log-strengths sum to 0.
    (players, log-strengths); called only through oracle(...)."""
    names = sorted({p for a, b, _ in games for p in (a, b)})
    idx = {p: i for i, p in enumerate(names)}
    first = torch.tensor([idx[a] for a, _, _ in games])
    second = torch.tensor([idx[b] for _, b, _ in games])
    score = torch.tensor([s for *_, s in games], dtype=torch.float64)
    theta = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        d = theta[first] - theta[second]
        loss = -(score * F.logsigmoid(d) + (1 - score) * F.logsigmoid(-d)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    theta = theta.detach()
    return names, theta - theta.mean()


def log_strengths(result, names):
    return torch.tensor([math.log(result[p]) for p in names], dtype=torch.float64)


STRENGTHS = {"alpaca": 2.5, "bison": 1.0, "camel": 0.6, "dingo": 1.8, "emu": 0.3}


@pytest.mark.points(2)
@pytest.mark.parametrize("tie_rate", [0.0, 0.2])
def test_bradley_terry_is_the_maximum_likelihood_fit(tie_rate):
    games = simulate(10, STRENGTHS, 600, tie_rate)
    expected = oracle(mle_log_strengths, games)  # (players, log-strengths)
    got = metrics.bradley_terry(games)
    check.equal(sorted(got), expected[0], what="players")
    check.close(log_strengths(got, sorted(got)), expected[1], rtol=1e-6, atol=1e-6,
                reason="100 MM iterations converge to ~1e-10 here; other correct solvers stop a little earlier",
                hint="bt_ties" if tie_rate else "bt_orientation")


@pytest.mark.points(1)
def test_bradley_terry_strengths_have_geometric_mean_one():
    got = metrics.bradley_terry(simulate(11, STRENGTHS, 300))
    check.close(sum(math.log(v) for v in got.values()), 0.0, what="sum of log-strengths", hint="bt_normalisation")


@pytest.mark.points(2)
def test_bradley_terry_recovers_known_strengths():
    """4000 simulated games among 5 players (~1600 per player).

    The standard error of each fitted log-strength is about 1/sqrt(1600 * 0.2) ~ 0.06;
    the tolerance 0.3 is 5 of them: a correct fit fails with probability ~3e-6 over the
    simulation seed (fixed here, so the test never flakes).
    """
    games = simulate(12, STRENGTHS, 4000)
    names = sorted(STRENGTHS)
    truth = oracle(lambda: log_strengths(STRENGTHS, names))
    got = metrics.bradley_terry(games)
    check.close(log_strengths(got, names), truth - truth.mean(), rtol=0.0, atol=0.3,
                reason="a fit to simulated games; see the docstring", hint="bt_orientation")
