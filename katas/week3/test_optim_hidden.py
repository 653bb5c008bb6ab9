"""Hidden tests for week3/optim: fresh seeded inputs and settings, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student

pytestmark = pytest.mark.hidden

optim = student("week3.optim")
model = reference("week3.optim")


def randn(*shape, seed, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.points(3)
@pytest.mark.parametrize("kwargs, hint", [
    (dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0), "bias_correction"),
    (dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.3), "decoupled_weight_decay"),
])
def test_adamw_on_fresh_settings(kwargs, hint):
    shapes = [(6, 2), (3,), (2, 3, 2)]
    ours = [randn(*s, seed=3101 + i).requires_grad_() for i, s in enumerate(shapes)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    groups = lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "lr": kwargs["lr"] * 3}]  # noqa: E731
    opt, expected = optim.AdamW(groups(ours), **kwargs), model.AdamW(groups(theirs), **kwargs)
    g = torch.Generator().manual_seed(3102)
    for step in range(1, 41):
        for a, b in zip(ours, theirs):
            grad = torch.randn(a.shape, generator=g) * (0.05 + step % 3)
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        expected.step()
        if step in (1, 5, 40):
            for i, (a, b) in enumerate(zip(ours, theirs)):
                check.close(a.detach(), b.detach(), what=f"parameter {i} after step {step}", hint=hint)


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
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if i != 1:
            a.grad = randn(*a.shape, seed=3311 + i, scale=scale)
            b.grad = a.grad.clone()
    check.close(optim.clip_grad_norm_(ours, max_norm), model.clip_grad_norm_(theirs, max_norm),
                what="returned total norm", hint="clip_global_norm")
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if b.grad is not None:
            check.close(a.grad, b.grad, what=f"gradient {i} after clipping", hint="clip_global_norm")
