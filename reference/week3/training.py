"""Mixed precision, loss scaling, gradient accumulation, data parallelism (reference solution).

Same names and signatures as the stub in `katas/week3/training.py`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .gpt2 import GPT, GPTConfig
from .optim import AdamW, cosine_lr

IGNORE_INDEX = -100


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
               amp_dtype: torch.dtype | None = None, scaler=None) -> float:
    optimizer.zero_grad()
    # Autocast runs matmuls in amp_dtype; the parameters themselves stay float32.
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(x)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.item()


class DynamicLossScaler:
    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        self.scale_value = float(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.good_steps = 0  # steps without inf/NaN since the scale last changed
        self.found_inf = False  # any inf/NaN gradient since the last update()
        self.unscaled = set()  # ids of the optimizers unscaled since the last update()

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale_value

    @torch.no_grad()
    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        if id(optimizer) in self.unscaled:
            raise RuntimeError("unscale_() was already called for this optimizer since the last update()")
        self.unscaled.add(id(optimizer))
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float() / self.scale_value
                if not torch.isfinite(grad).all():
                    self.found_inf = True
                p.grad.copy_(grad)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        if id(optimizer) not in self.unscaled:
            self.unscale_(optimizer)
        if self.found_inf:
            return False  # an overflowed gradient would poison the weights: skip this step
        optimizer.step()
        return True

    def update(self) -> None:
        if self.found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.good_steps = 0
        self.found_inf = False
        self.unscaled.clear()

    def get_scale(self) -> float:
        return self.scale_value


def accumulated_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                     micro_batches: list[tuple[torch.Tensor, torch.Tensor]], weighting: str = "token") -> float:
    if weighting not in ("token", "batch"):
        raise ValueError(f"weighting must be 'token' or 'batch', got {weighting!r}")
    counts = [int((labels[..., 1:] != IGNORE_INDEX).sum()) for _, labels in micro_batches]
    total = sum(counts)
    optimizer.zero_grad()
    reported = 0.0
    for (input_ids, labels), count in zip(micro_batches, counts):
        logits = model(input_ids)
        summed = F.cross_entropy(logits[..., :-1, :].float().reshape(-1, logits.shape[-1]),
                                 labels[..., 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
        # token: every counted token weighs 1 / total, as in one big batch;
        # batch: every micro-batch's mean weighs 1 / n_micro, whatever its token count.
        loss = summed / total if weighting == "token" else summed / count / len(micro_batches)
        loss.backward()
        reported += loss.item()
    optimizer.step()
    return reported


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    padded = -(-n // world_size) * world_size  # round up to a multiple of world_size
    return [i % n for i in range(padded)][rank::world_size]


@torch.no_grad()
def broadcast_parameters_(model: nn.Module, src: int = 0) -> None:
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor, src=src)


@torch.no_grad()
def average_gradients_(model: nn.Module) -> None:
    world_size = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world_size


def ddp_train(rank: int, world_size: int, init_method: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              steps: int, lr: float) -> dict[str, torch.Tensor]:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        broadcast_parameters_(model, src=0)
        shard = shard_indices(len(x), rank, world_size)
        xs, ys = x[shard], y[shard]
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(xs), ys).backward()
            average_gradients_(model)
            optimizer.step()
    finally:
        dist.destroy_process_group()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def pretrain(tokens: torch.Tensor, config: GPTConfig, *, steps: int, batch_size: int, max_lr: float,
             min_lr: float, warmup_steps: int, weight_decay: float = 0.1, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config)
    optimizer = AdamW(model.parameters(), lr=max_lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    windows = torch.Generator().manual_seed(seed)
    T = config.n_positions
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, max_lr, min_lr, warmup_steps, steps)
        starts = torch.randint(0, len(tokens) - T, (batch_size,), generator=windows)
        x = torch.stack([tokens[s:s + T] for s in starts])
        y = torch.stack([tokens[s + 1:s + T + 1] for s in starts])
        train_step(model, optimizer, x, y)
    return model.eval()
