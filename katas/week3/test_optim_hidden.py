"""Hidden tests for week3/optim: fresh seeded inputs and settings, expected values from the reference."""

import pytest
import torch

from graders import check, oracle, reference, student
from graders.testing import randn

pytestmark = pytest.mark.hidden

optim = student("week3.optim")
model = reference("week3.optim")


def reference_trajectory(params, kwargs, grads, check_at):
    """The reference AdamW on copies of `params`, fed `grads`: the parameters after each step in
    `check_at` (called only through oracle(...))."""
    theirs = [p.detach().clone().requires_grad_() for p in params]
    opt = model.AdamW(groups(theirs, kwargs["lr"]), **kwargs)
    after = {}
    for step, row in enumerate(grads, start=1):
        for p, grad in zip(theirs, row):
            p.grad = grad.clone()
        opt.step()
        if step in check_at:
            after[step] = [p.detach().clone() for p in theirs]
    return after


def groups(ps, lr):
    return [{"params": ps[:1]}, {"params": ps[1:], "lr": lr * 3}]


@pytest.mark.points(3)
@pytest.mark.parametrize("kwargs, hint", [
    (dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0), "bias_correction"),
    (dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.3), "decoupled_weight_decay"),
])
def test_adamw_on_fresh_settings(kwargs, hint):
    shapes = [(6, 2), (3,), (2, 3, 2)]
    ours = [randn(*s, seed=3101 + i).requires_grad_() for i, s in enumerate(shapes)]
    g = torch.Generator().manual_seed(3102)
    grads = [[torch.randn(p.shape, generator=g) * (0.05 + step % 3) for p in ours] for step in range(1, 41)]
    expected = oracle(reference_trajectory, ours, kwargs, grads, (1, 5, 40))
    opt = optim.AdamW(groups(ours, kwargs["lr"]), **kwargs)
    for step in range(1, 41):
        for a, grad in zip(ours, grads[step - 1]):
            a.grad = grad.clone()
        opt.step()
        if step in (1, 5, 40):
            for i, a in enumerate(ours):
                check.close(a.detach(), expected[step][i], what=f"parameter {i} after step {step}", hint=hint)


@pytest.mark.points(2)
@pytest.mark.parametrize("max_lr, min_lr, warmup, total", [(3e-4, 0.0, 7, 37), (1.0, 0.5, 1, 2), (2e-3, 2e-4, 100, 5000)])
def test_cosine_lr_on_fresh_settings(max_lr, min_lr, warmup, total):
    for step in sorted({0, 1, warmup - 1, warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 3}):
        if step < 0:
            continue
        hint = "warmup_off_by_one" if step < warmup else "cosine_shape"
        check.close(optim.cosine_lr(step, max_lr, min_lr, warmup, total),
                    model.cosine_lr(step, max_lr, min_lr, warmup, total), what=f"lr at step {step}", hint=hint)


@pytest.mark.points(2)
@pytest.mark.parametrize("max_norm, scale", [(0.3, 1.0), (2.0, 0.1), (1.0, 5.0)])
def test_clip_grad_norm_on_fresh_gradients(max_norm, scale):
    shapes = [(3, 3), (4,), (1,), (2, 5)]
    ours = [randn(*s, seed=3301 + i).requires_grad_() for i, s in enumerate(shapes)]
    for i, a in enumerate(ours):
        if i != 1:
            a.grad = randn(*a.shape, seed=3311 + i, scale=scale)
    expected = oracle(reference_clip, ours, max_norm)  # (total, gradients)
    check.close(optim.clip_grad_norm_(ours, max_norm), expected[0], what="returned total norm", hint="clip_global_norm")
    for i, a in enumerate(ours):
        if i != 1:
            check.close(a.grad, expected[1][i], what=f"gradient {i} after clipping", hint="clip_global_norm")


def reference_clip(params, max_norm):
    """The reference's clip_grad_norm_ on copies: (total, gradients after). Only through oracle(...)."""
    copies = []
    for p in params:
        copy = p.detach().clone().requires_grad_()
        copy.grad = None if p.grad is None else p.grad.clone()
        copies.append(copy)
    return model.clip_grad_norm_(copies, max_norm), [c.grad for c in copies]
