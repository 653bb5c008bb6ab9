"""Week 3 — training-loop arithmetic: AdamW, the warmup + cosine schedule, gradient clipping.

Three small pieces every GPT training loop (nanoGPT's `train.py`, for one) runs each step:

    lr = cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps)
    for group in optimizer.param_groups: group["lr"] = lr
    loss.backward()
    clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step(); optimizer.zero_grad()

The tests compare them with `torch.optim.AdamW`, `torch.nn.utils.clip_grad_norm_` and the
closed-form schedule below.

Run `pytest katas/week3/test_optim.py`; `kata hint week3/optim` gives hints one at a time.

Run time: `pytest katas/week3/test_optim.py` takes about 6 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay, step for step equal to `torch.optim.AdamW`.

    Subclass `torch.optim.Optimizer`: call `super().__init__(params, defaults)` with
    `defaults = dict(lr=..., betas=..., eps=..., weight_decay=...)`; it builds
    `self.param_groups` (each group a dict holding its params and its own hyper-parameters:
    groups may override lr or weight_decay) and `self.state` (a dict per parameter, where
    you keep the step count and the two moment buffers). `zero_grad` is inherited.
    `params` is often a generator (`model.parameters()`) that can be read only once: hand
    it to `super().__init__` as it is. Read lr, betas, eps and weight_decay from the group
    at every step: training loops set `group["lr"]` before each step (the schedule below).

    `step(closure=None)`: for every group, for every parameter p with p.grad not None
    (skip the others entirely: no decay, no state), with g = p.grad and t = that
    parameter's step count (1 on its first update):

        p   <- p * (1 - lr * weight_decay)          decoupled decay, on the weights only
        m   <- beta1 * m + (1 - beta1) * g          first moment  (m, v start at zeros)
        v   <- beta2 * v + (1 - beta2) * g * g      second moment
        m_hat = m / (1 - beta1 ** t)                bias corrections: m, v start at 0,
        v_hat = v / (1 - beta2 ** t)                so early averages are too small
        p   <- p - lr * m_hat / (sqrt(v_hat) + eps)

    Pitfalls: adding weight_decay * p to the gradient is Adam + L2 (torch.optim.Adam's
    weight_decay), not AdamW — the decay then gets divided by sqrt(v_hat); forgetting the
    bias corrections distorts the early steps (step 1 with the default betas: m = 0.1 g,
    v = 0.001 g**2, so the update is ~3.2 lr instead of lr); eps goes where the formula puts
    it, after the bias correction and outside the square root (it matters when gradients are
    ~eps or 0). Update the parameters in place under `torch.no_grad()` (decorate `step`):
    each keeps its storage, dtype and device (make the state with `torch.zeros_like(p)`;
    `p.data = ...` is not in place). If a closure is given, call it first, under
    `torch.enable_grad()` (it runs the backward pass), and return its loss; otherwise return
    None. Sanity check: with weight_decay = 0 the first step moves every coordinate by
    almost exactly lr * sign(g).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        raise NotImplementedError


def cosine_lr(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at `step` (0-based): linear warmup, then cosine decay, then flat.

        step <  warmup_steps:   max_lr * (step + 1) / warmup_steps
        step >= total_steps:    min_lr
        otherwise:              progress = (step - warmup_steps) / (total_steps - warmup_steps)
                                min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr)

    The warmup is nanoGPT's: the FIRST step (step 0) already trains, at max_lr / warmup_steps,
    and step warmup_steps - 1 reaches max_lr. Example max_lr = 1.0, min_lr = 0.1,
    warmup_steps = 10, total_steps = 100:
        step 0 -> 0.1,  step 9 -> 1.0,  step 10 -> 1.0 (progress 0),
        step 55 -> 0.55 (halfway: the mean of max and min), step 100 -> 0.1, step 500 -> 0.1.
    warmup_steps = 0 means no warmup. Return a Python float.
    """
    raise NotImplementedError


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float) -> Tensor:
    """Rescale gradients in place so their global L2 norm is at most max_norm; return that norm.

    parameters: a tensor or an iterable of tensors (often a generator such as
    `model.parameters()`: it can be read only once, so make a list first). Parameters whose
    `.grad` is None are skipped (and their .grad stays None).

        total_norm = sqrt(sum over all grads g of sum(g ** 2))      (one norm over ALL grads)
        coef       = min(1, max_norm / (total_norm + 1e-6))
        every g   <- g * coef                                       (in place)

    Returns `total_norm` as a 0-dim tensor: the norm BEFORE clipping (torch's convention;
    training loops log it). With no gradients at all, return `torch.tensor(0.0)`.
    Pitfalls: clipping each tensor to max_norm on its own changes the update's direction;
    float16 gradients overflow when squared (65504 is float16's largest value, so a gradient
    of 300 squares to inf): take each tensor's norm with `torch.linalg.vector_norm` (it
    accumulates in float32) or square in float32; gradients keep their dtype.
    """
    raise NotImplementedError
