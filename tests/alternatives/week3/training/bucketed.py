"""week3/training written differently: per-optimizer scaler state as GradScaler keeps it,
per-token losses with an explicit weight per token, DistributedSampler's padding rule
spelled out, and gradients all-reduced in one flat bucket (as DDP does)."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .gpt2 import GPT, GPTConfig
from .optim import AdamW, cosine_lr

IGNORE_INDEX = -100


def train_step(model, optimizer, x, y, *, amp_dtype=None, scaler=None) -> float:
    optimizer.zero_grad(set_to_none=True)
    context = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with context:
        logits = model(x)
    logp = F.log_softmax(logits.float(), dim=-1).reshape(-1, logits.shape[-1])
    loss = F.nll_loss(logp, y.reshape(-1))
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


class DynamicLossScaler:
    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
        self._scale = torch.tensor(float(init_scale), dtype=torch.float64)
        self._growth, self._backoff, self._interval = growth_factor, backoff_factor, growth_interval
        self._tracker = 0
        self._per_optimizer: dict[int, dict[str, bool]] = {}

    def scale(self, loss):
        return loss * self._scale.to(loss.dtype)

    def unscale_(self, optimizer):
        state = self._per_optimizer.setdefault(id(optimizer), {"unscaled": False, "found_inf": False})
        if state["unscaled"]:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update()")
        inv = 1.0 / float(self._scale)
        found = False
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        g = p.grad.to(torch.float32).mul(inv)
                        found |= bool(g.isinf().any() or g.isnan().any())
                        p.grad.copy_(g)
        state["unscaled"], state["found_inf"] = True, found

    def step(self, optimizer):
        state = self._per_optimizer.get(id(optimizer))
        if state is None or not state["unscaled"]:
            self.unscale_(optimizer)
            state = self._per_optimizer[id(optimizer)]
        if state["found_inf"]:
            return False
        optimizer.step()
        return True

    def update(self):
        overflow = any(s["found_inf"] for s in self._per_optimizer.values())
        if overflow:
            self._scale = self._scale * self._backoff
            self._tracker = 0
        elif self._tracker + 1 >= self._interval:
            self._scale = self._scale * self._growth
            self._tracker = 0
        else:
            self._tracker += 1
        self._per_optimizer.clear()

    def get_scale(self):
        return float(self._scale)


def accumulated_step(model, optimizer, micro_batches, weighting="token"):
    if weighting == "token":
        total = sum(int(labels[..., 1:].ne(IGNORE_INDEX).sum()) for _, labels in micro_batches)
    elif weighting != "batch":
        raise ValueError("weighting is 'token' or 'batch'")
    optimizer.zero_grad()
    loss_sum = 0.0
    for input_ids, labels in micro_batches:
        logits = model(input_ids)[..., :-1, :].float()
        targets = labels[..., 1:]
        counted = targets.ne(IGNORE_INDEX)
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0),
                                    reduction="none").reshape(targets.shape)
        denominator = total if weighting == "token" else int(counted.sum()) * len(micro_batches)
        loss = (per_token * counted).sum() / denominator
        loss.backward()
        loss_sum += loss.item()
    optimizer.step()
    return loss_sum


def shard_indices(n, rank, world_size):
    indices = list(range(n))
    num_samples = math.ceil(n / world_size)
    padding = num_samples * world_size - n
    if padding and indices:
        indices += (indices * math.ceil(padding / len(indices)))[:padding]
    return indices[rank:num_samples * world_size:world_size]


def broadcast_parameters_(model, src=0):
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src)


def average_gradients_(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    bucket = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(bucket)
    bucket /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(bucket[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def ddp_train(rank, world_size, init_method, model, x, y, steps, lr):
    dist.init_process_group(backend="gloo", init_method=init_method, world_size=world_size, rank=rank)
    try:
        broadcast_parameters_(model)
        mine = torch.tensor(shard_indices(x.shape[0], rank, world_size))
        inputs, targets = x.index_select(0, mine), y.index_select(0, mine)
        sgd = torch.optim.SGD(model.parameters(), lr)
        for _ in range(steps):
            sgd.zero_grad()
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            average_gradients_(model)
            sgd.step()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    finally:
        dist.destroy_process_group()


def pretrain(tokens, config, *, steps, batch_size, max_lr, min_lr, warmup_steps, weight_decay=0.1, seed=0):
    torch.manual_seed(seed)
    model = GPT(config)
    opt = AdamW(model.parameters(), lr=max_lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    rng = torch.Generator().manual_seed(seed)
    T = config.n_positions
    offsets = torch.arange(T + 1)
    model.train()
    for step in range(steps):
        lr = cosine_lr(step, max_lr, min_lr, warmup_steps, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, tokens.numel() - T, (batch_size,), generator=rng)
        windows = tokens[starts[:, None] + offsets]
        train_step(model, opt, windows[:, :-1], windows[:, 1:])
    model.eval()
    return model
