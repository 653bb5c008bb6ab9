"""Public tests for week3/optim.

Oracles: `torch.optim.AdamW` run in lockstep on the same gradients; closed forms (Adam's
first step is lr * sign(g); with zero gradients AdamW only shrinks the weights by
(1 - lr * wd) per step; the schedule's values at its boundaries); and
`torch.nn.utils.clip_grad_norm_`.
"""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student
from graders.testing import randn

optim = student("week3.optim")


SHAPES = [(5, 3), (7,), (2, 2, 2)]


def make_params(seed, dtype=torch.float32, shapes=SHAPES):
    """Leaf tensors for the student's AdamW (torch's runs on copies of them, in the oracle)."""
    return [randn(*s, seed=seed + i, dtype=dtype).requires_grad_() for i, s in enumerate(shapes)]


def lockstep_grads(params, steps, seed, skip=lambda step, i: False):
    """The gradients both optimizers get: grads[step - 1][i] for parameter i, None when skipped."""
    g = torch.Generator().manual_seed(seed)
    grads = []
    for step in range(1, steps + 1):
        row = []
        for i, p in enumerate(params):
            grad = (torch.randn(p.shape, generator=g, dtype=torch.float64) * (0.1 + step % 4)).to(p.dtype)
            row.append(None if skip(step, i) else grad)
        grads.append(row)
    return grads


def optimizer_trajectory(make_optimizer, params, grads, check_at):
    """The parameters after each step in `check_at` of `make_optimizer(copies of params)` fed
    `grads` (called only through oracle(...))."""
    params = [p.detach().clone().requires_grad_() for p in params]
    opt = make_optimizer(params)
    after = {}
    for step, row in enumerate(grads, start=1):
        for p, grad in zip(params, row):
            p.grad = None if grad is None else grad.clone()
        opt.step()
        if step in check_at:
            after[step] = [p.detach().clone() for p in params]
    return after


def run_in_lockstep(ours, opt, make_reference, steps, seed, skip=lambda step, i: False, check_at=(), hint=None):
    """Give the student's optimizer and `make_reference(params)` (torch's, in the oracle) the same
    random gradients for `steps` steps; compare the parameters after the steps listed in
    `check_at` (1-based) and at the end."""
    grads = lockstep_grads(ours, steps, seed, skip)
    checked = {*check_at, steps}
    expected = oracle(optimizer_trajectory, make_reference, ours, grads, checked)
    for step in range(1, steps + 1):
        for a, grad in zip(ours, grads[step - 1]):
            a.grad = None if grad is None else grad.clone()
        opt.step()
        if step in checked:
            for i, a in enumerate(ours):
                check.close(a.detach(), expected[step][i], what=f"parameter {i} after step {step}", hint=hint)


# --- AdamW -------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_first_step_moves_by_lr_times_sign_of_the_gradient():
    """Bias-corrected, step 1 has m_hat = g and v_hat = g**2: the update is lr * g / (|g| + eps)."""
    p0 = randn(4, 6, seed=1, dtype=torch.float64)
    g = randn(4, 6, seed=2, dtype=torch.float64)
    g = g + 0.2 * torch.sign(g)  # keep |g| away from 0 so eps is negligible
    p = p0.clone().requires_grad_()
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.0)
    p.grad = g.clone()
    opt.step()
    check.close(p.detach(), p0 - 0.1 * g / (g.abs() + 1e-8), what="parameter after one step",
                hint="bias_correction")


@pytest.mark.points(3)
def test_matches_torch_adamw_without_weight_decay():
    ours = make_params(seed=3)
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    run_in_lockstep(ours, optim.AdamW(ours, **kwargs), lambda ps: torch.optim.AdamW(ps, **kwargs),
                    steps=60, seed=4, check_at=(1, 2, 10), hint="bias_correction")


@pytest.mark.points(2)
def test_weight_decay_is_decoupled_from_the_gradient():
    """With zero gradients the Adam step is 0/(0 + eps) = 0: AdamW only shrinks the weights,
    p_t = p_0 * (1 - lr * wd) ** t. (Adam + L2 would feed wd * p into the moments instead.)"""
    p0 = randn(3, 4, seed=5)
    p = p0.clone().requires_grad_()
    opt = optim.AdamW([p], lr=0.05, weight_decay=0.5)
    for _ in range(10):
        p.grad = torch.zeros_like(p)
        opt.step()
    check.close(p.detach(), p0 * (1 - 0.05 * 0.5) ** 10, what="parameter after 10 steps of zero gradient",
                hint="decoupled_weight_decay")


@pytest.mark.points(3)
def test_matches_torch_adamw_with_weight_decay():
    ours = make_params(seed=6)
    kwargs = dict(lr=2e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    run_in_lockstep(ours, optim.AdamW(ours, **kwargs), lambda ps: torch.optim.AdamW(ps, **kwargs),
                    steps=60, seed=7, check_at=(1, 10), hint="decoupled_weight_decay")


@pytest.mark.points(2)
def test_param_groups_and_parameters_without_gradients():
    """Groups override lr and weight_decay; a parameter whose .grad is None is left alone
    (no decay, no state) on that step, and its step count does not advance."""
    ours = make_params(seed=8, shapes=[(4, 4), (4,), (3, 2), (6,)])

    def groups(ps):
        return [{"params": ps[:2]}, {"params": ps[2:], "lr": 5e-2, "weight_decay": 0.0}]

    kwargs = dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.2)
    run_in_lockstep(ours, optim.AdamW(groups(ours), **kwargs), lambda ps: torch.optim.AdamW(groups(ps), **kwargs),
                    steps=40, seed=9, skip=lambda step, i: (i in (1, 3) and step % 3 == 0) or (i == 2 and step < 5),
                    check_at=(3, 6), hint="adamw_update")


@pytest.mark.points(1)
def test_defaults_match_torch():
    ours = make_params(seed=10)
    run_in_lockstep(ours, optim.AdamW(ours), torch.optim.AdamW, steps=20, seed=11, hint="adamw_update")


@pytest.mark.points(1)
def test_float64_parameters():
    ours = make_params(seed=12, dtype=torch.float64)
    kwargs = dict(lr=3e-2, weight_decay=0.05)
    run_in_lockstep(ours, optim.AdamW(ours, **kwargs), lambda ps: torch.optim.AdamW(ps, **kwargs),
                    steps=30, seed=13, hint="adamw_update")


def closure_losses(params, target, steps):
    """torch's AdamW(lr=0.1) stepped with a closure on copies of `params`: each step's loss and
    the final parameter (called only through oracle(...))."""
    ps = [p.detach().clone().requires_grad_() for p in params]
    ref = torch.optim.AdamW(ps, lr=0.1)

    def closure():
        ps[0].grad = None
        loss = ((ps[0] - target) ** 2).sum()
        loss.backward()
        return loss

    losses = [ref.step(closure).detach() for _ in range(steps)]
    return losses, ps[0].detach()


@pytest.mark.points(1)
def test_step_returns_the_closure_loss():
    ours = make_params(seed=14, shapes=[(3,)])
    target = randn(3, seed=15)
    expected = oracle(closure_losses, ours, target, 5)  # (losses, final parameter)
    opt = optim.AdamW(ours, lr=0.1)
    for step in range(5):
        def closure(ps=ours):
            ps[0].grad = None
            loss = ((ps[0] - target) ** 2).sum()
            loss.backward()
            return loss

        loss = opt.step(closure)
        check.close(loss.detach(), expected[0][step], what="the loss step(closure) returned", hint="adamw_update")
    check.close(ours[0].detach(), expected[1], what="parameter after 5 closure steps", hint="adamw_update")


# --- cosine_lr ---------------------------------------------------------------------------


def closed_form_lr(step, max_lr, min_lr, warmup, total):
    """The schedule written from the docstring's three cases."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


@pytest.mark.points(2)
def test_cosine_lr_warmup_boundaries():
    max_lr, min_lr, warmup, total = 6e-4, 6e-5, 10, 110
    lr = lambda step: optim.cosine_lr(step, max_lr, min_lr, warmup, total)  # noqa: E731
    check.close(lr(0), max_lr / warmup, what="lr at step 0 (the first step already trains)", hint="warmup_off_by_one")
    check.close(lr(1), 2 * max_lr / warmup, what="lr at step 1", hint="warmup_off_by_one")
    check.close(lr(warmup - 1), max_lr, what="lr at step warmup_steps - 1", hint="warmup_off_by_one")
    check.close(lr(warmup), max_lr, what="lr at step warmup_steps (cosine progress 0)", hint="cosine_shape")


@pytest.mark.points(2)
def test_cosine_lr_decay_boundaries():
    max_lr, min_lr, warmup, total = 1.0, 0.1, 10, 110
    lr = lambda step: optim.cosine_lr(step, max_lr, min_lr, warmup, total)  # noqa: E731
    halfway = lr(50)
    check.that(isinstance(halfway, float), f"cosine_lr should return a Python float, got {type(halfway).__name__}")
    check.close(lr(60), (max_lr + min_lr) / 2, what="lr halfway through the decay", hint="cosine_shape")
    check.close(lr(35), min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi / 4)) / 2,
                what="lr a quarter of the way through the decay", hint="cosine_shape")
    check.close(lr(total), min_lr, what="lr at total_steps", hint="cosine_shape")
    check.close(lr(total + 1), min_lr, what="lr after total_steps", hint="cosine_shape")
    check.close(lr(10 * total), min_lr, what="lr long after total_steps", hint="cosine_shape")


@pytest.mark.points(1)
def test_cosine_lr_without_warmup():
    check.close(optim.cosine_lr(0, 3e-4, 3e-5, 0, 50), 3e-4, what="lr at step 0 with warmup_steps=0",
                hint="cosine_shape")
    check.close(optim.cosine_lr(25, 3e-4, 3e-5, 0, 50), 1.65e-4, what="lr halfway with warmup_steps=0",
                hint="cosine_shape")


@pytest.mark.points(2)
@given(max_lr=st.floats(1e-5, 1.0), ratio=st.floats(0.0, 1.0), warmup=st.integers(1, 50),
       decay=st.integers(1, 500), data=st.data())
def test_cosine_lr_closed_form(max_lr, ratio, warmup, decay, data):
    min_lr, total = max_lr * ratio, warmup + decay
    step = data.draw(st.integers(0, 2 * total), label="step")
    hint = "warmup_off_by_one" if step < warmup else "cosine_shape"
    check.close(optim.cosine_lr(step, max_lr, min_lr, warmup, total), closed_form_lr(step, max_lr, min_lr, warmup, total),
                what=f"lr at step {step} (warmup {warmup}, total {total})", hint=hint)


@pytest.mark.points(1)
def test_golden_training_loop():
    """nanoGPT's loop (at a constant lr): clip, then AdamW with a decayed and a non-decayed group."""
    data = fixtures.load("week3/optim")
    cfg = data["config"]
    params = {k: data[f"init_{k}"].clone().requires_grad_() for k in ("w1", "b1", "w2", "b2")}
    opt = optim.AdamW([{"params": [params["w1"], params["w2"]], "weight_decay": cfg["weight_decay"]},
                       {"params": [params["b1"], params["b2"]], "weight_decay": 0.0}],
                      lr=cfg["lr"], betas=(0.9, 0.95))
    norms = []
    for step in range(cfg["steps"]):
        h = torch.tanh(data["x"] @ params["w1"] + params["b1"])
        loss = ((h @ params["w2"] + params["b2"] - data["y"]) ** 2).mean()
        for p in params.values():
            p.grad = None
        loss.backward()
        norms.append(torch.as_tensor(optim.clip_grad_norm_(params.values(), cfg["max_norm"])).detach().float())
        opt.step()
    # the norms come first: each depends only on the parameters so far, so the first wrong
    # one shows at which step the loop went astray
    check.close(torch.stack(norms), data["grad_norms"], what="gradient norm at each step")
    for k in params:
        check.close(params[k].detach(), data[f"final_{k}"], what=f"{k} after {cfg['steps']} steps")


# --- clip_grad_norm_ ---------------------------------------------------------------------


def params_with_grads(seed, shapes, scale, without_grad=()):
    params = make_params(seed, shapes=shapes)
    for i, p in enumerate(params):
        if i not in without_grad:
            p.grad = randn(*p.shape, seed=seed + 100 + i, scale=scale)
    return params


def torch_clip(params, max_norm):
    """torch's clip_grad_norm_ on copies: (total norm, gradients after; None where there was none).
    Called only through oracle(...)."""
    copies = []
    for p in params:
        copy = p.detach().clone().requires_grad_()
        copy.grad = None if p.grad is None else p.grad.clone()
        copies.append(copy)
    total = torch.nn.utils.clip_grad_norm_(copies, max_norm)
    return total, [c.grad for c in copies]


@pytest.mark.points(2)
@pytest.mark.parametrize("max_norm", [0.5, 1.0])
def test_clip_grad_norm_matches_torch(max_norm):
    without_grad = (2,)
    ours = params_with_grads(20, [(4, 3), (5,), (2, 6), (3,)], scale=1.0, without_grad=without_grad)
    expected = oracle(torch_clip, ours, max_norm)  # (total, gradients)
    total = optim.clip_grad_norm_(ours, max_norm)
    check.close(total, expected[0], what="returned total norm (before clipping)", hint="clip_global_norm")
    for i, a in enumerate(ours):
        if i in without_grad:
            check.that(a.grad is None, f"parameter {i} had no gradient: its .grad should stay None",
                       hint="clip_generator")
        else:
            check.close(a.grad, expected[1][i], what=f"gradient {i} after clipping", hint="clip_global_norm")


@pytest.mark.points(1)
def test_clip_grad_norm_leaves_small_gradients_alone():
    ours = params_with_grads(21, [(4, 3), (5,)], scale=0.01)
    expected = oracle(torch_clip, ours, 1.0)  # (total, gradients)
    total = optim.clip_grad_norm_(ours, 1.0)
    check.close(total, expected[0], what="returned total norm", hint="clip_global_norm")
    for i, a in enumerate(ours):
        check.close(a.grad, expected[1][i], what=f"gradient {i} (norm below max_norm: unchanged)",
                    hint="clip_global_norm")


def clipped_by_formula(grads, max_norm):
    """(total norm, each gradient scaled by min(1, max_norm / (total + 1e-6))), in closed form.
    Called only through oracle(...)."""
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    return total, [g * min(1.0, max_norm / (total + 1e-6)) for g in grads]


@pytest.mark.points(1)
def test_clip_grad_norm_takes_a_generator_or_a_tensor():
    torch.manual_seed(22)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    model(randn(16, 4, seed=23)).pow(2).sum().backward()
    expected = oracle(clipped_by_formula, [p.grad for p in model.parameters()], 0.1)  # (total, gradients)
    total = optim.clip_grad_norm_(model.parameters(), 0.1)  # a generator, as in training loops
    check.close(total, expected[0], what="returned total norm", hint="clip_generator")
    for i, p in enumerate(model.parameters()):
        check.close(p.grad, expected[1][i], what=f"gradient {i} after clipping", hint="clip_generator")

    single = randn(6, seed=24).requires_grad_()
    single.grad = randn(6, seed=25, scale=3.0)
    expected = oracle(clipped_by_formula, [single.grad], 1.0)
    check.close(optim.clip_grad_norm_(single, 1.0), expected[0], what="norm for a single tensor", hint="clip_generator")
    check.close(single.grad, expected[1][0], what="the single tensor's clipped gradient", hint="clip_generator")
