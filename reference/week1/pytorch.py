"""Tensors to a digit classifier, and transfer learning (reference solution)."""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def mlp_forward(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """x [N, in] through Linear (weights [out, in]) + ReLU layers; no ReLU after the last."""
    h = x
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T + b
        if i < last:
            h = torch.relu(h)
    return h


def sgd_step_(params: list[torch.Tensor], lr: float) -> None:
    """p -= lr * p.grad in place, then drop the gradient; parameters without one are skipped."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            p -= lr * p.grad
            p.grad = None


def fit_standardizer(x_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and population std of the training split; a constant feature gets std 1."""
    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, correction=0)  # population std, as sklearn's StandardScaler
    std = torch.where(std == 0, torch.ones_like(std), std)
    return mean, std


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


class DigitsDataset(Dataset):
    """(image [64] float32, label int64 0-dim) pairs over two aligned arrays or tensors."""

    def __init__(self, x, y):
        self.x = torch.as_tensor(x).to(torch.float32)
        self.y = torch.as_tensor(y).to(torch.int64)
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=False)


class MLP(nn.Module):
    """body: (Linear + ReLU) per hidden width; head: Linear to the classes (raw logits)."""

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (128, 64), n_classes: int = 10):
        super().__init__()
        layers = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, loss_fn=F.cross_entropy) -> float:
    """One pass over `loader`; returns the mean loss per SAMPLE (batches weighted by their size)."""
    model.train()
    total, seen = 0.0, 0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(yb)
        seen += len(yb)
    return total / seen


def evaluate(model: nn.Module, loader) -> tuple[float, float]:
    """(mean cross-entropy per sample, accuracy) in eval mode, without building a graph."""
    model.eval()
    total, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            total += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(dim=-1) == yb).sum().item()
            seen += len(yb)
    return total / seen, correct / seen


def freeze_(module: nn.Module) -> None:
    """Stop training `module`: no new gradients, and no stale ones for an optimizer to apply."""
    for p in module.parameters():
        p.requires_grad_(False)
        p.grad = None


def transfer(pretrained: MLP, n_new_classes: int) -> MLP:
    """A new MLP: a frozen deep copy of `pretrained.body` and a fresh head for the new classes."""
    body = copy.deepcopy(pretrained.body)
    freeze_(body)
    linears = [m for m in body if isinstance(m, nn.Linear)]
    model = MLP(linears[0].in_features, tuple(m.out_features for m in linears), n_new_classes)
    model.body = body
    return model
