"""Evaluation metrics (reference solution)."""
import math
import re
import string

import torch


def _token_logprobs(logits, labels, mask):
    if not logits.dtype.is_floating_point or logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:]
    keep = mask[:, 1:].bool()
    picked = logp.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, picked, torch.zeros_like(picked)), keep


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    token_logp, _ = _token_logprobs(logits, labels, mask)
    return token_logp.sum(dim=-1)


def perplexity(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    token_logp, keep = _token_logprobs(logits, labels, mask)
    n = keep.sum()
    if n == 0:
        raise ValueError("no tokens are counted (mask[:, 1:] is all False)")
    return torch.exp(-token_logp.sum() / n)


def byte_lengths(choices: list[str]) -> list[int]:
    return [len(c.encode("utf-8")) for c in choices]


def mcqa_accuracy(
    choice_logprobs: list[list[float]], gold: list[int], choice_lengths: list[list[int]] | None = None
) -> float:
    if len(choice_logprobs) != len(gold) or not gold:
        raise ValueError("need one gold index per question, and at least one question")
    correct = 0
    for q, lls in enumerate(choice_logprobs):
        scores = list(lls) if choice_lengths is None else [ll / n for ll, n in zip(lls, choice_lengths[q])]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        correct += best == gold[q]
    return correct / len(gold)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def quasi_exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def pass_at_k(n: int, c: int, k: int) -> float:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k / i)
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def bradley_terry(comparisons: list[tuple[str, str, float]], iterations: int = 100) -> dict[str, float]:
    players = sorted({p for a, b, _ in comparisons for p in (a, b)})
    wins = {p: 0.0 for p in players}
    games: dict[tuple[str, str], float] = {}
    for a, b, outcome in comparisons:
        wins[a] += outcome
        wins[b] += 1.0 - outcome
        key = (a, b) if a < b else (b, a)
        games[key] = games.get(key, 0.0) + 1.0
    strength = {p: 1.0 for p in players}
    for _ in range(iterations):
        denom = {p: 0.0 for p in players}
        for (a, b), n in games.items():
            d = n / (strength[a] + strength[b])
            denom[a] += d
            denom[b] += d
        strength = {p: wins[p] / denom[p] for p in players}
        log_mean = sum(math.log(s) for s in strength.values()) / len(players)
        strength = {p: s / math.exp(log_mean) for p, s in strength.items()}
    return strength
