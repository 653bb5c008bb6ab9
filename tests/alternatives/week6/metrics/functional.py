"""metrics written differently: one-hot sums in float64, exact integer pass@k, regex SQuAD, log-space BT."""
import math
import re
import string
from fractions import Fraction

import torch


def _per_token(logits, labels, mask):
    keep = mask[:, 1:] != 0
    onehot = torch.nn.functional.one_hot(torch.where(keep, labels[:, 1:], torch.zeros_like(labels[:, 1:])),
                                         logits.shape[-1])
    lp = logits[:, :-1].double() - torch.logsumexp(logits[:, :-1].double(), dim=-1, keepdim=True)
    picked = (lp * onehot).sum(-1)
    return picked * keep, keep


def sequence_logprob(logits, labels, mask):
    out_dtype = logits.dtype if logits.dtype == torch.float64 else torch.float32
    picked, _ = _per_token(logits, labels, mask)
    return picked.sum(-1).to(out_dtype)


def perplexity(logits, labels, mask):
    out_dtype = logits.dtype if logits.dtype == torch.float64 else torch.float32
    picked, keep = _per_token(logits, labels, mask)
    if not keep.any():
        raise ValueError("nothing to count")
    return torch.exp(-picked.sum() / keep.sum()).to(out_dtype)


def byte_lengths(choices):
    return [len(bytes(c, "utf-8")) for c in choices]


def mcqa_accuracy(choice_logprobs, gold, choice_lengths=None):
    if not gold or len(gold) != len(choice_logprobs):
        raise ValueError("gold must match the questions")
    hits = 0
    for i, lls in enumerate(choice_logprobs):
        t = torch.tensor(lls, dtype=torch.float64)
        if choice_lengths is not None:
            t = t / torch.tensor(choice_lengths[i], dtype=torch.float64)
        hits += int(torch.argmax(t)) == gold[i]
    return hits / len(gold)


def quasi_exact_match(prediction, gold):
    def norm(s):
        s = s.lower().translate(str.maketrans("", "", string.punctuation))
        s = re.sub(r"\b(a|an|the)\b", " ", s)
        return re.sub(r"\s+", " ", s).strip()

    return norm(prediction) == norm(gold)


def pass_at_k(n, c, k):
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError("bad n, c, k")
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def bradley_terry(comparisons, iterations=100):
    names = sorted({p for a, b, _ in comparisons for p in (a, b)})
    idx = {p: i for i, p in enumerate(names)}
    score = [0.0] * len(names)
    for a, b, s in comparisons:
        score[idx[a]] += s
        score[idx[b]] += 1 - s
    log_p = [0.0] * len(names)
    for _ in range(iterations):
        denom = [0.0] * len(names)
        for a, b, _ in comparisons:
            i, j = idx[a], idx[b]
            d = 1.0 / (math.exp(log_p[i]) + math.exp(log_p[j]))
            denom[i] += d
            denom[j] += d
        log_p = [math.log(score[i] / denom[i]) for i in range(len(names))]
        mean = sum(log_p) / len(log_p)
        log_p = [x - mean for x in log_p]
    return {p: math.exp(log_p[idx[p]]) for p in names}
