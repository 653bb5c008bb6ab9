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
def test_mcqa_accuracy_is_a_python_float():
    logprobs, gold, lengths = mc_questions(4, n_questions=5)
    for options in ({}, {"choice_lengths": lengths}):
        got = metrics.mcqa_accuracy(logprobs, gold, **options)
        check.that(isinstance(got, float), f"mcqa_accuracy(..., {', '.join(options) or 'no lengths'}) should return a "
                   f"Python float (the fraction correct), got {type(got).__name__}", hint="mcqa_float")


@pytest.mark.points(1)
def test_mcqa_rejects_mismatched_gold():
    with check.raises(ValueError, hint="mcqa_validation"):
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
    ("x\u2014the\u2014y", "x\u2014 \u2014y", True),  # an article becomes a space (an em dash is no ASCII punctuation)
    ("x\u2014the\u2014y", "x\u2014\u2014y", False),  # ... not nothing
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


# --- half precision, extreme magnitudes, 0/1 masks ------------------------------------------


def dtype_or(out, dtype, hint):
    """`half_precision` when the student's result is not in `dtype`, else `hint` (only through oracle(...))."""
    return "half_precision" if getattr(out, "dtype", dtype) != dtype else hint


def perplexity_oracle(logits, labels, mask):
    """exp(-(sum of counted log-probs) / (number of counted tokens)), in float64 (only through oracle(...))."""
    return torch.exp(-token_logprob_oracle(logits.double(), labels, mask).sum() / mask[:, 1:].sum())


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=lambda d: str(d).removeprefix("torch."))
def test_half_precision_logits_are_computed_in_float32(dtype):
    # float16/bfloat16 logits are exact in float32: a float32 log_softmax agrees with float64 to
    # ~1e-7, while a half-precision log_softmax (or sum) is off by ~1e-3.
    logits, labels, mask = random_batch(7, B=4, T=10, V=13, dtype=dtype)
    out = metrics.sequence_logprob(logits, labels, mask)
    check.close(out, oracle(lambda: token_logprob_oracle(logits.double(), labels, mask).float()),
                hint=oracle(dtype_or, out, torch.float32, "half_precision"), what=f"sequence_logprob of {dtype} logits")
    ppl = metrics.perplexity(logits, labels, mask)
    check.close(ppl, oracle(lambda: perplexity_oracle(logits, labels, mask).float()),
                hint=oracle(dtype_or, ppl, torch.float32, "half_precision"), what=f"perplexity of {dtype} logits")


# Logits of +-1e4 and beyond: per dtype, the spread of a batch row (the probability of most
# tokens underflows to 0, so log(softmax) gives -inf) and the dtype the sums come back in.
SPREAD = {torch.float16: 100.0, torch.bfloat16: 100.0, torch.float32: 3e3, torch.float64: 3e3}


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_sequence_logprob_of_extreme_logits(dtype):
    # Rows: logits spread by thousands (hundreds in half precision), the same near +1e4, and
    # near -1e4 (a row that is all very negative).
    _, labels, mask = random_batch(8, B=3, T=8, V=10)
    logits = (randn(3, 8, 10, seed=9, dtype=torch.float64, scale=SPREAD[dtype])
              + torch.tensor([0.0, 1e4, -1e4], dtype=torch.float64)[:, None, None]).to(dtype)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    out = metrics.sequence_logprob(logits, labels, mask)
    check.close(out, oracle(lambda: token_logprob_oracle(logits.double(), labels, mask).to(out_dtype)),
                hint=oracle(dtype_or, out, out_dtype, "log_of_softmax"), what=f"sequence_logprob of {dtype} logits near 1e4")


@pytest.mark.points(1)
@pytest.mark.parametrize("shift", [1e4, -1e4])
def test_perplexity_of_logits_near_1e4(shift):
    logits, labels, mask = random_batch(10, dtype=torch.float32)
    logits = logits + shift  # perplexity does not change; exp(logits) overflows or underflows
    check.close(metrics.perplexity(logits, labels, mask), oracle(lambda: perplexity_oracle(logits, labels, mask).float()),
                hint="log_of_softmax")


@pytest.mark.points(1)
def test_mask_may_be_zeros_and_ones():
    logits, labels, mask = random_batch(11)
    labels = labels.masked_fill(~mask, -100)
    ones = mask.long()  # the stub: "bool (or 0/1)"
    out = hinted("mask_not_bool", metrics.sequence_logprob, logits, labels, ones)
    check.close(out, token_logprob_oracle(logits, labels.clamp(min=0), mask), hint="mask_not_bool")
    ppl = hinted("mask_not_bool", metrics.perplexity, logits, labels, ones)
    check.close(ppl, oracle(perplexity_oracle, logits, labels.clamp(min=0), mask), hint="mask_not_bool")


# --- the stated rules of mcqa, SQuAD, pass@k and Bradley-Terry --------------------------------


@pytest.mark.points(1)
def test_mcqa_ties_go_to_the_lowest_index():
    # Every question has tied best choices and its gold is the first of them.
    logprobs = [[-1.0, -1.0, -2.0], [-3.0, -0.5, -0.5], [-2.0, -4.0], [-9.0, -3.0, -6.0]]
    gold = [0, 1, 0, 0]
    check.close(metrics.mcqa_accuracy(logprobs, gold), 0.75, what="acc with tied log-likelihoods", hint="mcqa_ties")
    lengths = [[2, 2, 1], [3, 1, 1], [1, 2], [3, 1, 2]]  # acc_norm: -2, -3, -3 ties in the last two
    check.close(metrics.mcqa_accuracy(logprobs, gold, lengths), 1.0, what="acc_norm with tied normalised scores",
                hint="mcqa_ties")


@pytest.mark.points(1)
def test_mcqa_rejects_no_questions():
    with check.raises(ValueError, hint="mcqa_validation"):
        hinted("mcqa_validation", metrics.mcqa_accuracy, [], [])


@pytest.mark.points(1)
@pytest.mark.parametrize("pred,gold,match", [
    ("the-end", "end", False),     # punctuation is deleted before articles: "theend" keeps its "the"
    ("an-ode", "ode", False),
    ("The-End!", "theend", True),
])
def test_qem_deletes_punctuation_before_removing_articles(pred, gold, match):
    check.equal(metrics.quasi_exact_match(pred, gold), match, what=f"quasi_exact_match({pred!r}, {gold!r})",
                hint="squad_normalisation")


@pytest.mark.points(1)
@pytest.mark.parametrize("n,c,k", [(5, 2, 0), (5, 6, 2), (5, -1, 2), (5, 2, 6), (0, 0, 1)])
def test_pass_at_k_rejects_invalid_arguments(n, c, k):
    with check.raises(ValueError, hint="pass_at_k_validation"):
        hinted("pass_at_k_validation", metrics.pass_at_k, n, c, k)


@pytest.mark.points(1)
def test_pass_at_k_grows_with_k():
    for k in range(1, 11):
        check.close(metrics.pass_at_k(10, 2, k), exact_pass_at_k(10, 2, k), what=f"pass_at_k(10, 2, {k})",
                    hint="pass_at_k_k")


# Two nearly separate groups ({a, d} and {b, c}, joined by one game): the MM updates converge
# slowly, so the fits after 99, 100 and 101 updates differ by about 0.6%.
SLOW_GAMES = [("b", "c", 1.0), ("a", "d", 1.0), ("a", "d", 1.0), ("b", "c", 1.0), ("c", "d", 1.0),
              ("c", "b", 0.5), ("d", "a", 1.0), ("c", "b", 0.0), ("a", "d", 1.0)]


@pytest.mark.points(1)
def test_bradley_terry_default_is_100_iterations():
    """bradley_terry(games) without iterations runs 100 MM updates (the signature's default): on
    games that converge slowly it equals bradley_terry(games, iterations=100), and not the fit of
    99 or 101 updates."""
    default = metrics.bradley_terry(SLOW_GAMES)
    hundred = metrics.bradley_terry(SLOW_GAMES, iterations=100)
    check.equal(sorted(default), sorted(hundred), what="players")
    gap = max(abs(math.log(default[p]) - math.log(hundred[p])) for p in sorted(hundred))
    check.that(gap < 1e-9, f"bradley_terry(games) and bradley_terry(games, iterations=100) differ (largest log gap "
               f"{gap:.2g}): without `iterations`, run 100 MM updates", hint="bt_default_iterations")


@pytest.mark.points(1)
def test_bradley_terry_runs_the_given_number_of_iterations():
    # One MM update from any starting point is far from the fit that 100 updates reach.
    games = simulate(13, STRENGTHS, 300)
    one = metrics.bradley_terry(games, iterations=1)
    full = metrics.bradley_terry(games, iterations=100)
    check.equal(sorted(one), sorted(full), what="players")
    gap = max(abs(math.log(one[p]) - math.log(full[p])) for p in sorted(full))
    check.that(gap > 1e-6, f"bradley_terry(games, iterations=1) equals the 100-iteration fit (largest log gap "
               f"{gap:.2g}): `iterations` must set the number of MM updates", hint="bt_iterations")
