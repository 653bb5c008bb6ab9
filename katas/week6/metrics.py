"""Kata: evaluation metrics for language models.

Six small functions that decide what a benchmark number means. Each has one classic way
to be silently wrong; the docstrings say which.

Must catch: no shift between logits and labels; the mask read at the wrong positions;
averaging instead of summing token log-probs; perplexity as a mean of per-sequence
perplexities; gathering with -100 labels; acc_norm by characters instead of bytes (or
not normalised at all); SQuAD normalisation missing a step; the biased or overflowing
pass@k; Bradley-Terry ignoring ties, swapping winner and loser, or not normalised.

Run time: `pytest katas/week6/test_metrics.py` takes about 6 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""
import torch


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each sequence's labelled tokens: `Tensor[B]`.

    Args:
        logits: `[B, T, V]` model outputs for input ids `[B, T]`.
        labels: `[B, T]` int64, aligned with the INPUT ids (usually the ids themselves).
        mask:   `[B, T]` bool (or 0/1), aligned with labels: True where a token counts.

    The model's logits at position t-1 predict the token at position t, so
        out[b] = sum over t >= 1 with mask[b, t] of log_softmax(logits[b, t-1])[labels[b, t]].
    Position 0 never counts (nothing predicts it) and the logits at T-1 are unused.
    Where mask is False the label may be anything, including -100: never index with it.
    Compute log_softmax in float32 at least (float64 stays float64); sum, do not average.
    The result is in that precision too: float32 for float16/bfloat16/float32 logits
    (casting the sums back to half precision would round away what float32 kept).

    Worked example (T = 3): out[b] = logp(logits[b,0])[labels[b,1]] * mask[b,1]
                                   + logp(logits[b,1])[labels[b,2]] * mask[b,2].
    """
    raise NotImplementedError


def perplexity(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Corpus perplexity of the whole batch: a 0-dim tensor.

    exp( -(sum of every counted token's log-prob) / (number of counted tokens) ), with the
    same shift and mask as `sequence_logprob`: token-weighted over the batch, which is
    exp(loss) of transformers' `model(ids, labels=...)` with uncounted labels set to -100.
    NOT the mean of per-sequence perplexities. ValueError if no token counts.
    """
    raise NotImplementedError


def byte_lengths(choices: list[str]) -> list[int]:
    """Length of each choice in UTF-8 bytes: `len("café".encode("utf-8")) == 5`, not 4.

    The lengths `mcqa_accuracy` normalises by; characters and tokens are different units.
    """
    raise NotImplementedError


def mcqa_accuracy(
    choice_logprobs: list[list[float]], gold: list[int], choice_lengths: list[list[int]] | None = None
) -> float:
    """Multiple-choice accuracy, lm-evaluation-harness style.

    choice_logprobs[q][i] is the log-likelihood of choice i as the continuation of
    question q; gold[q] is the correct index. The prediction is the argmax of
      - acc (choice_lengths is None): the log-likelihoods;
      - acc_norm (choice_lengths given): log-likelihood / choice_lengths[q][i], the
        choice's length in bytes (see `byte_lengths`), so long answers are not punished
        for having more tokens.
    Ties go to the lowest index (numpy's argmax). Returns the fraction correct (float).
    ValueError if gold is empty or its length differs from choice_logprobs.
    """
    raise NotImplementedError


def quasi_exact_match(prediction: str, gold: str) -> bool:
    """True when the two strings are equal after SQuAD's answer normalisation.

    In this order: lowercase; delete every character of `string.punctuation`; replace the
    whole words a / an / the (regex `\\b(a|an|the)\\b`) by a space; collapse whitespace
    (`" ".join(s.split())`). So "The Eiffel  Tower!" matches "eiffel tower", but "then"
    keeps its "the" (not a whole word).
    """
    raise NotImplementedError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021).

        pass@k = 1 - C(n - c, k) / C(n, k)        (1.0 when n - c < k)

    Computing the binomials in floating point overflows (C(2000, 1000) ~ 1e600); use the
    stable product 1 - prod_{i=n-c+1}^{n} (1 - k / i), or exact integers. Not
    1 - (1 - c/n)**k: that estimator is biased. ValueError unless 0 <= c <= n and 1 <= k <= n.
    """
    raise NotImplementedError


def bradley_terry(comparisons: list[tuple[str, str, float]], iterations: int = 100) -> dict[str, float]:
    """Bradley-Terry strengths from pairwise outcomes, by maximum likelihood.

    Each comparison (a, b, s): s = 1.0 a won, 0.0 b won, 0.5 a tie (half a win each).
    Model: P(a beats b) = p_a / (p_a + p_b). Maximise the likelihood with the MM update
    (Zermelo; Hunter 2004), `iterations` times:
        p_i <- W_i / sum over comparisons involving i of 1 / (p_i + p_opponent)
    where W_i is i's total score (wins + 0.5 * ties); then renormalise.
    Normalisation: the geometric mean of the strengths is 1 (log-strengths sum to 0).
    Returns {player: strength} for every player named. Assumes every player has scored
    something and lost something (otherwise the maximum is at 0 or infinity).
    """
    raise NotImplementedError
