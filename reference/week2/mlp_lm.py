"""A character-level MLP language model (Bengio et al., 2003): the model solution."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BOUNDARY = "\n"


def build_vocab(docs: list[str]) -> tuple[dict[str, int], list[str]]:
    for doc in docs:
        if BOUNDARY in doc:
            raise ValueError("a document contains the boundary character '\\n'")
    itos = [BOUNDARY] + sorted(set("".join(docs)))
    stoi = {ch: i for i, ch in enumerate(itos)}
    return stoi, itos


def build_dataset(docs: list[str], stoi: dict[str, int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    contexts, targets = [], []
    for doc in docs:
        context = [0] * block_size
        for ch in doc + BOUNDARY:
            ix = stoi[ch]
            contexts.append(context)
            targets.append(ix)
            context = context[1:] + [ix]
    X = torch.tensor(contexts, dtype=torch.long).reshape(len(contexts), block_size)
    Y = torch.tensor(targets, dtype=torch.long)
    return X, Y


class MLPLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, direct: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(block_size * n_embd, n_hidden)
        self.output = nn.Linear(n_hidden, vocab_size)
        self.direct = nn.Linear(block_size * n_embd, vocab_size, bias=False) if direct else None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        x = self.embedding(X).view(X.shape[0], -1)  # [B, block * n_embd], oldest position first
        logits = self.output(torch.tanh(self.hidden(x)))
        if self.direct is not None:
            logits = logits + self.direct(x)
        return logits


def bigram_nll(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               vocab_size: int, alpha: float = 1.0) -> float:
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    counts.index_put_((x_train[:, -1], y_train), torch.ones(len(y_train), dtype=torch.float64), accumulate=True)
    probs = (counts + alpha) / (counts.sum(dim=1, keepdim=True) + alpha * vocab_size)
    return -probs[x_val[:, -1], y_val].log().mean().item()


def train(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, batch_size: int = 64,
          lr: float = 3e-3, generator: torch.Generator | None = None) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
        loss = F.cross_entropy(model(X[ix]), Y[ix])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def generate(model: nn.Module, itos: list[str], block_size: int, max_len: int = 200, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> str:
    context = [0] * block_size
    out = []
    while len(out) < max_len:
        with torch.no_grad():
            logits = model(torch.tensor([context]))[0]
        if temperature == 0:
            ix = int(logits.argmax())
        else:
            probs = F.softmax(logits / temperature, dim=-1)
            ix = int(torch.multinomial(probs, 1, generator=generator))
        if ix == 0:
            break
        out.append(itos[ix])
        context = context[1:] + [ix]
    return "".join(out)


def nearest_neighbours(embedding: torch.Tensor, index: int, k: int) -> list[int]:
    unit = embedding / embedding.norm(dim=1, keepdim=True)
    similarity = unit @ unit[index]
    similarity[index] = float("-inf")  # a vector is always its own nearest neighbour
    return similarity.topk(k).indices.tolist()
