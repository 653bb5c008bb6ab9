"""week1/pytorch written another way: einsum and explicit loops, float64 statistics, a
hand-written Dataset indexing, a deep copy of the whole pretrained model with a new head."""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def mlp_forward(x, weights, biases):
    n_layers = len(weights)
    for k in range(n_layers):
        x = torch.einsum("ni,oi->no", x, weights[k]) + biases[k]
        if k != n_layers - 1:
            x = x.clamp_min(0)
    return x


def sgd_step_(params, lr):
    for p in params:
        g = p.grad
        if g is not None:
            with torch.no_grad():
                p.sub_(g, alpha=lr)
            p.grad = None


def fit_standardizer(x_train):
    x = x_train.double()
    mean = x.sum(0) / x.shape[0]
    var = ((x - mean) ** 2).sum(0) / x.shape[0]
    std = var.sqrt()
    std[std == 0] = 1.0
    return mean.to(x_train.dtype), std.to(x_train.dtype)


def standardize(x, mean, std):
    return (x - mean.unsqueeze(0)) / std.unsqueeze(0)


class DigitsDataset(Dataset):
    def __init__(self, x, y):
        if len(x) != len(y):
            raise ValueError("x and y differ in length")
        self.images = [torch.as_tensor(row, dtype=torch.float32) for row in x]
        self.labels = [torch.tensor(int(label), dtype=torch.int64) for label in y]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def make_loader(dataset, batch_size, shuffle, seed=0):
    if not shuffle:
        return DataLoader(dataset, batch_size=batch_size)
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)


class MLP(nn.Module):
    def __init__(self, in_features=64, hidden=(128, 64), n_classes=10):
        super().__init__()
        widths = [in_features, *hidden]
        self.body = nn.Sequential()
        for a, b in zip(widths, widths[1:]):
            self.body.append(nn.Linear(a, b))
            self.body.append(nn.ReLU())
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x):
        h = x
        for layer in self.body:
            h = layer(h)
        return self.head(h)


def train_one_epoch(model, loader, optimizer, loss_fn=F.cross_entropy):
    model.train(True)
    sums = torch.zeros((), dtype=torch.float64)
    count = 0
    for inputs, targets in loader:
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        sums += loss.detach().double() * targets.shape[0]
        count += targets.shape[0]
    return float(sums / count)


@torch.no_grad()
def evaluate(model, loader):
    model.train(False)
    losses, hits = [], []
    for inputs, targets in loader:
        logits = model(inputs)
        losses.append(F.cross_entropy(logits, targets, reduction="none"))
        hits.append(logits.argmax(1) == targets)
    losses, hits = torch.cat(losses), torch.cat(hits)
    return losses.double().mean().item(), hits.double().mean().item()


def freeze_(module):
    module.requires_grad_(False)
    for p in module.parameters():
        p.grad = None


def transfer(pretrained, n_new_classes):
    model = copy.deepcopy(pretrained)
    freeze_(model.body)
    model.head = nn.Linear(model.head.in_features, n_new_classes)
    return model
