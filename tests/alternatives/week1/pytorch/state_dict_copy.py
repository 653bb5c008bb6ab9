"""week1/pytorch written another way: matmul with F.relu, torch.var_mean, a Dataset over
numpy-converted tensors, a running-mean epoch loss, and transfer by load_state_dict into a
freshly built MLP (values copied, no shared tensors)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def mlp_forward(x, weights, biases):
    *hidden, last = list(zip(weights, biases))
    for w, b in hidden:
        x = F.relu(torch.matmul(x, w.transpose(0, 1)) + b)
    w, b = last
    return torch.matmul(x, w.transpose(0, 1)) + b


def sgd_step_(params, lr):
    with torch.no_grad():
        for p in filter(lambda t: t.grad is not None, params):
            p.add_(p.grad * -lr)
            p.grad = None


def fit_standardizer(x_train):
    var, mean = torch.var_mean(x_train, dim=0, correction=0)
    std = var.sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardize(x, mean, std):
    return (x - mean) / std


class DigitsDataset(Dataset):
    def __init__(self, x, y):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self.x, self.y = x.float(), y.long()

    def __len__(self):
        return self.y.shape[0]

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def make_loader(dataset, batch_size, shuffle, seed=0):
    return DataLoader(dataset, batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
                      drop_last=False)


class MLP(nn.Module):
    def __init__(self, in_features=64, hidden=(128, 64), n_classes=10):
        super().__init__()
        sizes = (in_features,) + tuple(hidden)
        modules = []
        for i in range(len(hidden)):
            modules.append(nn.Linear(sizes[i], sizes[i + 1]))
            modules.append(nn.ReLU())
        self.body = nn.Sequential(*modules)
        self.head = nn.Linear(sizes[-1], n_classes)

    def forward(self, x):
        return self.head(self.body(x))


def train_one_epoch(model, loader, optimizer, loss_fn=F.cross_entropy):
    model.train()
    mean, n = 0.0, 0
    for batch in loader:
        inputs, targets = batch
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        b = len(targets)
        n += b
        mean += (loss.item() - mean) * b / n  # running mean over samples
    return mean


def evaluate(model, loader):
    model.eval()
    loss_sum, right, n = 0.0, 0, 0
    for inputs, targets in loader:
        with torch.no_grad():
            logits = model(inputs)
        loss_sum += F.nll_loss(F.log_softmax(logits, dim=1), targets, reduction="sum").item()
        right += int((logits.argmax(1) == targets).sum())
        n += len(targets)
    return loss_sum / n, right / n


def freeze_(module):
    for p in module.parameters():
        p.grad = None
        p.requires_grad = False


def transfer(pretrained, n_new_classes):
    linears = [m for m in pretrained.body.modules() if isinstance(m, nn.Linear)]
    model = MLP(linears[0].in_features, [m.out_features for m in linears], n_new_classes)
    model.body.load_state_dict(pretrained.body.state_dict())
    freeze_(model.body)
    return model
