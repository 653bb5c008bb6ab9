"""week2/mlp_lm with plain Python loops and float64 arithmetic where it is cheap."""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

BOUNDARY = "\n"


def build_vocab(docs: list[str]) -> tuple[dict[str, int], list[str]]:
    seen = set()
    for doc in docs:
        for ch in doc:
            if ch == BOUNDARY:
                raise ValueError("'\\n' is the boundary, not text")
            seen.add(ch)
    itos = [BOUNDARY]
    for ch in sorted(seen):
        itos.append(ch)
    stoi = {}
    for i, ch in enumerate(itos):
        stoi[ch] = i
    return stoi, itos


def build_dataset(docs: list[str], stoi: dict[str, int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    X, Y = [], []
    for doc in docs:
        ids = [0] * block_size + [stoi[ch] for ch in doc] + [0]
        for t in range(block_size, len(ids)):
            X.append(ids[t - block_size:t])
            Y.append(ids[t])
    return torch.tensor(X, dtype=torch.long).view(-1, block_size), torch.tensor(Y, dtype=torch.long)


class MLPLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, direct: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(block_size * n_embd, n_hidden)
        self.output = nn.Linear(n_hidden, vocab_size)
        self.direct = None
        if direct:
            self.direct = nn.Linear(block_size * n_embd, vocab_size, bias=False)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.embedding(X[:, i]) for i in range(X.shape[1])], dim=1)
        out = self.output(self.hidden(x).tanh())
        return out if self.direct is None else out + self.direct(x)


def bigram_nll(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               vocab_size: int, alpha: float = 1.0) -> float:
    pairs = Counter(zip(x_train[:, -1].tolist(), y_train.tolist()))
    rows = Counter(x_train[:, -1].tolist())
    total = 0.0
    for prev, nxt in zip(x_val[:, -1].tolist(), y_val.tolist()):
        total -= math.log((pairs[prev, nxt] + alpha) / (rows[prev] + alpha * vocab_size))
    return total / len(y_val)


def train(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, batch_size: int = 64,
          lr: float = 3e-3, generator: torch.Generator | None = None) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, X.size(0), (batch_size,), generator=generator)
        logits = model(X[idx])
        loss = -F.log_softmax(logits, dim=-1).gather(1, Y[idx, None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def generate(model: nn.Module, itos: list[str], block_size: int, max_len: int = 200, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> str:
    context = [0] * block_size
    chars = []
    for _ in range(max_len):
        with torch.no_grad():
            logits = model(torch.tensor(context).unsqueeze(0)).squeeze(0).double()
        if temperature == 0:
            nxt = int(torch.argmax(logits))
        else:
            nxt = torch.multinomial(torch.softmax(logits / temperature, dim=0), 1, generator=generator).item()
        if nxt == 0:
            break
        chars.append(itos[nxt])
        context.pop(0)
        context.append(nxt)
    return "".join(chars)


def nearest_neighbours(embedding: torch.Tensor, index: int, k: int) -> list[int]:
    rows = embedding.double().tolist()
    query = rows[index]
    qnorm = math.sqrt(sum(q * q for q in query))
    scored = []
    for i, row in enumerate(rows):
        if i != index:
            cos = sum(a * b for a, b in zip(row, query)) / (math.sqrt(sum(a * a for a in row)) * qnorm)
            scored.append((-cos, i))
    return [i for _, i in sorted(scored)[:k]]
