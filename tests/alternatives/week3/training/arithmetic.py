"""week3/training written differently again: a scaler that counts clean steps with a modulo,
accumulation that scales the summed loss once per micro-batch by a precomputed weight,
shards by index arithmetic, gradients divided before the all-reduce."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .gpt2 import GPT, GPTConfig
from .optim import AdamW, cosine_lr

IGNORE_INDEX = -100


def train_step(model: nn.Module, optimizer, x, y, *, amp_dtype=None, scaler=None) -> float:
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None
    if amp_dtype is None:
        logits = model(x)
    else:
        with torch.autocast(device_type=x.device.type, dtype=amp_dtype):
            logits = model(x)
    flat = logits.float().view(-1, logits.size(-1))
    loss = F.cross_entropy(flat, y.flatten())
    (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return loss.item()


class DynamicLossScaler:
    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        self.s = float(init_scale)
        self.up, self.down, self.every = growth_factor, backoff_factor, growth_interval
        self.clean = 0
        self.overflow = None  # None: nothing unscaled since update(); else {id(optimizer): found}

    def scale(self, loss):
        return self.s * loss

    def unscale_(self, optimizer):
        seen = self.overflow if self.overflow is not None else {}
        if id(optimizer) in seen:
            raise RuntimeError("already unscaled")
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        found = False
        with torch.no_grad():
            for grad in grads:
                grad.div_(torch.tensor(self.s, dtype=torch.float32))
                found = found or not bool(torch.isfinite(grad).all())
        seen[id(optimizer)] = found
        self.overflow = seen

    def step(self, optimizer) -> bool:
        if self.overflow is None or id(optimizer) not in self.overflow:
            self.unscale_(optimizer)
        if any(self.overflow.values()):
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        if self.overflow and any(self.overflow.values()):
            self.s, self.clean = self.s * self.down, 0
        else:
            self.clean = (self.clean + 1) % self.every
            if self.clean == 0:
                self.s *= self.up
        self.overflow = None

    def get_scale(self) -> float:
        return self.s


def accumulated_step(model, optimizer, micro_batches, weighting="token"):
    counts = torch.tensor([float((lab[..., 1:] != IGNORE_INDEX).sum()) for _, lab in micro_batches], dtype=torch.float64)
    if weighting == "token":
        weights = torch.full_like(counts, 1.0 / float(counts.sum()))
    elif weighting == "batch":
        weights = 1.0 / (counts * len(micro_batches))
    else:
        raise ValueError(weighting)
    optimizer.zero_grad()
    total = 0.0
    for (ids, labels), weight in zip(micro_batches, weights.tolist()):
        logits = model(ids).float()
        V = logits.size(-1)
        summed = F.cross_entropy(logits[..., :-1, :].contiguous().view(-1, V), labels[..., 1:].contiguous().view(-1),
                                 reduction="sum")
        (summed * weight).backward()
        total += summed.item() * weight
    optimizer.step()
    return total


def shard_indices(n, rank, world_size):
    per_rank = -(-n // world_size)
    return [(rank + k * world_size) % n for k in range(per_rank)] if n else []


def broadcast_parameters_(model, src=0):
    with torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p, src=src)
        for b in model.buffers():
            dist.broadcast(b, src=src)


def average_gradients_(model):
    w = dist.get_world_size()
    for p in model.parameters():
        if p.grad is None:
            continue
        p.grad.div_(w)
        dist.all_reduce(p.grad)


def ddp_train(rank, world_size, init_method, model, x, y, steps, lr):
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        broadcast_parameters_(model, 0)
        idx = shard_indices(len(x), rank, world_size)
        xb, yb = x[idx], y[idx]
        params = list(model.parameters())
        for _ in range(steps):
            for p in params:
                p.grad = None
            F.cross_entropy(model(xb), yb).backward()
            average_gradients_(model)
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
    finally:
        dist.destroy_process_group()
    return {k: t.detach().clone() for k, t in model.state_dict().items()}


def pretrain(tokens, config, *, steps, batch_size, max_lr, min_lr, warmup_steps, weight_decay=0.1, seed=0):
    torch.manual_seed(seed)
    model = GPT(config)
    optimizer = AdamW(model.parameters(), lr=max_lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    n = config.n_positions
    for step in range(steps):
        lr = cosine_lr(step, max_lr, min_lr, warmup_steps, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(tokens) - n, (batch_size,), generator=g).tolist()
        x = torch.stack([tokens[s:s + n] for s in starts])
        y = torch.stack([tokens[s + 1:s + n + 1] for s in starts])
        model.train()
        train_step(model, optimizer, x, y)
    return model.eval()
