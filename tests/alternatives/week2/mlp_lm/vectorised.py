"""week2/mlp_lm written differently: pairs by unfold, counts by bincount, einsum forward,
Gumbel-max sampling, F.normalize neighbours."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BOUNDARY = "\n"


def build_vocab(docs: list[str]) -> tuple[dict[str, int], list[str]]:
    if any(BOUNDARY in doc for doc in docs):
        raise ValueError("documents may not contain '\\n'")
    chars = set()
    for doc in docs:
        chars.update(doc)
    itos = [BOUNDARY, *sorted(chars)]
    return dict(zip(itos, range(len(itos)))), itos


def build_dataset(docs: list[str], stoi: dict[str, int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for doc in docs:
        ids = torch.tensor([stoi[ch] for ch in doc] + [0], dtype=torch.long)
        padded = F.pad(ids, (block_size, 0))
        xs.append(padded.unfold(0, block_size, 1)[:-1])
        ys.append(ids)
    if not xs:
        return torch.zeros(0, block_size, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(xs), torch.cat(ys)


class MLPLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, direct: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(block_size * n_embd, n_hidden)
        self.output = nn.Linear(n_hidden, vocab_size)
        self.direct = nn.Linear(block_size * n_embd, vocab_size, bias=False) if direct else None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        x = self.embedding.weight[X].flatten(1)
        h = torch.tanh(torch.einsum("bi,hi->bh", x, self.hidden.weight) + self.hidden.bias)
        logits = torch.einsum("bh,vh->bv", h, self.output.weight) + self.output.bias
        if self.direct is not None:
            logits = logits + torch.einsum("bi,vi->bv", x, self.direct.weight)
        return logits


def bigram_nll(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               vocab_size: int, alpha: float = 1.0) -> float:
    V = vocab_size
    counts = torch.bincount(x_train[:, -1] * V + y_train, minlength=V * V).reshape(V, V).double()
    log_probs = (counts + alpha).log() - (counts.sum(1, keepdim=True) + alpha * V).log()
    return float(-log_probs[x_val[:, -1], y_val].mean())


def train(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, batch_size: int = 64,
          lr: float = 3e-3, generator: torch.Generator | None = None) -> list[float]:
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    history = []
    for _ in range(steps):
        batch = torch.randint(0, len(X), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(X[batch]), Y[batch])
        for p in params:
            p.grad = None
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history


def generate(model: nn.Module, itos: list[str], block_size: int, max_len: int = 200, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> str:
    context = torch.zeros(1, block_size, dtype=torch.long)
    text = ""
    with torch.no_grad():
        while len(text) < max_len:
            logits = model(context)[0].double()
            if temperature == 0:
                ix = int(logits.argmax())
            else:  # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T)
                u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).clamp_min(1e-300)
                ix = int((logits / temperature - (-u.log()).log()).argmax())
            if ix == 0:
                return text
            text += itos[ix]
            context = torch.cat([context[:, 1:], torch.tensor([[ix]])], dim=1)
    return text


def nearest_neighbours(embedding: torch.Tensor, index: int, k: int) -> list[int]:
    unit = F.normalize(embedding.double(), dim=1)
    order = (unit @ unit[index]).argsort(descending=True).tolist()
    return [i for i in order if i != index][:k]
