"""A correct week3/optim written differently: state created in one pass per group and updated
with torch._foreach-free list comprehensions and lerp; cosine_lr via a precomputed
piecewise function; clip_grad_norm_ with a Python sum of squares."""

import math

import torch


class AdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                self.state[p].setdefault("step", 0)
                self.state[p].setdefault("m", torch.zeros_like(p))
                self.state[p].setdefault("v", torch.zeros_like(p))
            b1, b2 = group["betas"]
            for p in params:
                s = self.state[p]
                s["step"] += 1
                s["m"].lerp_(p.grad, 1 - b1)
                s["v"].mul_(b2).add_((1 - b2) * p.grad.square())
                step_size = group["lr"] / (1 - b1 ** s["step"])
                denom = s["v"].div(1 - b2 ** s["step"]).sqrt().add(group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.sub_(step_size * s["m"] / denom)
        return loss


def cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    if step >= total_steps and step >= warmup_steps:
        return float(min_lr)
    if step < warmup_steps:
        return float(max_lr * (step + 1) / warmup_steps)
    frac = (step - warmup_steps) / (total_steps - warmup_steps)
    return float(max_lr - (max_lr - min_lr) * (1 - math.cos(math.pi * frac)) / 2)


def clip_grad_norm_(parameters, max_norm):
    params = [parameters] if torch.is_tensor(parameters) else [p for p in parameters]
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return torch.tensor(0.0)
    total = sum((p.grad.detach().float() ** 2).sum() for p in with_grad) ** 0.5
    coef = min(1.0, float(max_norm / (total + 1e-6)))
    for p in with_grad:
        p.grad.detach().mul_(coef)
    return total
