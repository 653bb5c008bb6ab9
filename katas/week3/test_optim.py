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

from graders import check, fixtures, in_one_crossing, is_instance, oracle, student, type_name, unwrap
from graders.testing import hinted, randn

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


@pytest.mark.points(1)
def test_step_without_a_closure_returns_none():
    ours = make_params(seed=16, shapes=[(2, 3)])
    opt = optim.AdamW(ours)
    check.that(is_instance(opt, torch.optim.Optimizer),
               f"AdamW should subclass torch.optim.Optimizer, got {type_name(opt)}", hint="adamw_update")
    ours[0].grad = randn(2, 3, seed=17)
    returned = opt.step()
    check.that(returned is None, f"step() without a closure should return None, got {returned!r}",
               hint="adamw_update")


# One documented argument away from its default per case (the rest default): an optimizer that
# ignores it, or reads a constant instead, moves the parameters by ~1e-4 or more within 6 steps
# (lr 1e-3 by default), far outside float32's tolerance.
ONE_ARGUMENT = {"lr": dict(lr=0.05), "beta1": dict(betas=(0.5, 0.999)), "beta2": dict(betas=(0.9, 0.5)),
                "eps": dict(eps=0.3), "weight_decay": dict(weight_decay=0.5)}


@pytest.mark.points(1)
@pytest.mark.parametrize("argument", list(ONE_ARGUMENT))
def test_every_hyperparameter_is_used(argument):
    kwargs = ONE_ARGUMENT[argument]
    ours = make_params(seed=40)
    run_in_lockstep(ours, optim.AdamW(ours, **kwargs), lambda ps: torch.optim.AdamW(ps, **kwargs),
                    steps=6, seed=41, check_at=(1,), hint="hyperparameters_from_group")


# A warmup + cosine schedule (inputs only): 3 warmup steps to 0.05, decay to 0.005 at step 10, flat after.
SCHEDULE = [0.05 * (s + 1) / 3 if s < 3 else 0.005 + 0.0225 * (1 + math.cos(math.pi * min(s - 3, 7) / 7))
            for s in range(12)]


def scheduled_groups(ps):
    return [{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}]


def drive_with_schedule(opt, ps, grads):
    """Set every group's lr from SCHEDULE before each step, as a training loop does; the
    parameters after the last step."""
    for lr, row in zip(SCHEDULE, grads):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, grad in zip(ps, row):
            p.grad = grad.clone()
        opt.step()
    return [p.detach().clone() for p in ps]


def _scheduled_adamw(params, grads):
    """Glue: the student's AdamW over clones of `params`, its groups' lr changed before every step
    (the test writes into the optimizer's param_groups, so this runs as one crossing)."""
    ps = [p.detach().clone().requires_grad_() for p in params]
    return drive_with_schedule(unwrap(optim.AdamW)(scheduled_groups(ps), lr=1.0, weight_decay=0.1), ps, grads)


def torch_scheduled_adamw(params, grads):
    """torch's AdamW driven the same way (only through oracle(...))."""
    ps = [p.detach().clone().requires_grad_() for p in params]
    return drive_with_schedule(torch.optim.AdamW(scheduled_groups(ps), lr=1.0, weight_decay=0.1), ps, grads)


@pytest.mark.points(2)
def test_lr_set_on_the_param_groups_between_steps():
    """nanoGPT's loop sets group["lr"] = cosine_lr(step, ...) before every step: the optimizer must
    read lr (and weight_decay, overridden in the second group) from its groups at every step,
    not keep the value it was constructed with (lr=1.0 here, which would blow the weights up)."""
    ours = make_params(seed=42)
    grads = lockstep_grads(ours, len(SCHEDULE), seed=43)
    expected = oracle(torch_scheduled_adamw, ours, grads)
    got = in_one_crossing(optim, _scheduled_adamw, ours, grads)
    for i in range(len(ours)):
        check.close(got[i], expected[i], what=f"parameter {i} after {len(SCHEDULE)} scheduled steps",
                    hint="hyperparameters_from_group")


# Gradient scales per row: exactly 0, around eps (1e-8, the default), tiny, ordinary and huge.
# Adam is scale invariant except through eps: rows near eps move by about half of lr, rows of 0
# not at all (0 / (0 + eps)), rows much larger than eps by ~lr * sign(g).
GRADIENT_SCALES = [0.0, 1e-12, 1e-10, 1e-9, 1e-8, 1e-7, 1e-5, 1.0, 1e5, 1e12]


def scaled_grads(shape, steps, seed, dtype):
    """Per step, standard normal gradients times GRADIENT_SCALES[row] (drawn in float64)."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor(GRADIENT_SCALES, dtype=torch.float64)[:, None]
    return [[(torch.randn(shape, generator=g, dtype=torch.float64) * scales).to(dtype)] for _ in range(steps)]


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=lambda d: str(d).removeprefix("torch."))
def test_zero_tiny_and_huge_gradients(dtype):
    ours = [randn(len(GRADIENT_SCALES), 4, seed=44, dtype=dtype).requires_grad_()]
    grads = scaled_grads((len(GRADIENT_SCALES), 4), 5, seed=45, dtype=dtype)
    expected = oracle(optimizer_trajectory, lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.0), ours, grads,
                      {1, 5})
    opt = optim.AdamW(ours, lr=0.1, weight_decay=0.0)
    for step, row in enumerate(grads, start=1):
        ours[0].grad = row[0].clone()
        opt.step()
        if step in (1, 5):
            check.close(ours[0].detach(), expected[step][0], hint="eps_placement",
                        what=f"parameter after step {step} (rows: gradients of {GRADIENT_SCALES})")


def half_safe_grads(params, steps, seed):
    """Gradients of magnitude 0.5 to ~4 (in float16, (1 - beta2) * g**2 stays a normal number and
    g**2 far from overflow, so torch's half-precision AdamW is the oracle)."""
    g = torch.Generator().manual_seed(seed)
    grads = []
    for _ in range(steps):
        row = []
        for p in params:
            x = torch.randn(p.shape, generator=g, dtype=torch.float64)
            row.append((torch.sign(x) * (0.5 + x.abs().clamp(max=3.5))).to(p.dtype))
        grads.append(row)
    return grads


def _step_in_place(params, grads):
    """Glue: the student's AdamW(lr=1e-2, weight_decay=0.1) over clones of `params`, one step per
    row of `grads`; per parameter (still the same storage, dtype, device), and the final values."""
    ps = [p.detach().clone().requires_grad_() for p in params]
    storage = [p.data_ptr() for p in ps]
    opt = unwrap(optim.AdamW)(ps, lr=1e-2, weight_decay=0.1)
    for row in grads:
        for p, grad in zip(ps, row):
            p.grad = grad.clone()
        opt.step()
    places = [(p.data_ptr() == ptr, str(p.dtype), p.device.type) for p, ptr in zip(ps, storage)]
    return places, [p.detach().clone() for p in ps]


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=lambda d: str(d).removeprefix("torch."))
def test_step_updates_parameters_in_place_in_their_dtype(dtype):
    ours = make_params(seed=46, dtype=dtype, shapes=[(3, 5), (4,)])
    with torch.no_grad():
        for p in ours:
            p.mul_(0.1)  # small weights: a few ulps of rounding stay far inside half-precision tolerances
    grads = half_safe_grads(ours, 3, seed=47)
    expected = oracle(optimizer_trajectory, lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1), ours, grads,
                      {3})
    got = hinted("param_in_place", in_one_crossing, optim, _step_in_place, ours, grads)
    check.equal(got[0], [(True, str(dtype), "cpu")] * len(ours), hint="param_in_place",
                what="(same storage as before, dtype, device) of each parameter after 3 steps")
    for i in range(len(ours)):
        check.close(got[1][i], expected[3][i], what=f"parameter {i} after 3 steps", hint="param_in_place")


def _steps_on_the_meta_device(shapes, steps):
    """Glue: the student's AdamW over parameters on the meta device (shapes and dtypes, no
    data: what a step on a GPU checks, without a GPU); each parameter's device afterwards."""
    ps = [torch.zeros(shape, device="meta", requires_grad=True) for shape in shapes]
    opt = unwrap(optim.AdamW)(ps, lr=1e-2)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.zeros_like(p)
        opt.step()
    return [p.device.type for p in ps]


@pytest.mark.points(1)
def test_step_keeps_parameters_and_state_on_their_device():
    """A model on a GPU: the state must be made on the parameter's device (the meta device
    stands in for one here; a buffer on the CPU meets a meta gradient and the step raises)."""
    shapes = [(3, 5), (4,)]
    got = hinted("state_device", in_one_crossing, optim, _steps_on_the_meta_device, shapes, 2)
    check.equal(got, ["meta"] * len(shapes), what="each parameter's device after 2 steps on the meta device",
                hint="state_device")


@pytest.mark.points(1)
def test_adamw_takes_a_generator_of_parameters():
    """AdamW(model.parameters()): a generator, read once by torch.optim.Optimizer.__init__."""
    ours = make_params(seed=48)
    kwargs = dict(lr=1e-2, weight_decay=0.1)
    opt = hinted("params_generator", optim.AdamW, (p for p in ours), **kwargs)
    run_in_lockstep(ours, opt, lambda ps: torch.optim.AdamW(ps, **kwargs), steps=5, seed=49, hint="params_generator")


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
    check.that(isinstance(halfway, float), f"cosine_lr should return a Python float, got {type(halfway).__name__}",
               hint="lr_float")
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


@pytest.mark.points(1)
def test_cosine_lr_returns_a_python_float_in_every_phase():
    # warmup, its last step, the start of the decay, halfway, total_steps, after it, no warmup
    cases = [(0, 1.0, 0.1, 10, 100), (9, 1.0, 0.1, 10, 100), (10, 1.0, 0.1, 10, 100), (55, 1.0, 0.1, 10, 100),
             (100, 1.0, 0.1, 10, 100), (500, 1.0, 0.1, 10, 100), (0, 3e-4, 3e-5, 0, 50)]
    for args in cases:
        lr = optim.cosine_lr(*args)
        check.that(isinstance(lr, float), f"cosine_lr{args} should return a Python float, got {type(lr).__name__}",
                   hint="lr_float")


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


@pytest.mark.points(1)
@pytest.mark.parametrize("case", ["no_grads", "empty_list", "empty_generator"])
def test_clip_grad_norm_without_gradients(case):
    params = make_params(seed=26, shapes=[(3, 2), (4,)])  # .grad is None
    parameters = {"no_grads": params, "empty_list": [], "empty_generator": (p for p in [])}[case]
    total = hinted("clip_no_grads", optim.clip_grad_norm_, parameters, 1.0)
    check.equal(total, torch.tensor(0.0), hint="clip_no_grads", what=f"clip_grad_norm_ with {case}")
    for i, p in enumerate(params):
        check.that(p.grad is None, f"parameter {i} had no gradient: its .grad should stay None", hint="clip_generator")


def clipped_in_float64(grads, max_norm):
    """(total norm, gradients scaled by min(1, max_norm / (total + 1e-6)) and rounded back to their
    dtype), computed in float64 from the gradients' exact values. Only through oracle(...)."""
    exact = [g.double() for g in grads]
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in exact]))
    coef = min(1.0, max_norm / (float(total) + 1e-6))
    return total, [(e * coef).to(g.dtype) for e, g in zip(exact, grads)]


# A float64 norm may be accumulated in float32 (a correct choice): ~1e-7 relative, above float64's
# table; every mistake here moves the result by > 1e-3.
NORM_IN_FLOAT32 = {"rtol": 1e-6, "atol": 1e-9, "reason": "a float64 norm may be accumulated in float32 (~1e-7 relative)"}


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=lambda d: str(d).removeprefix("torch."))
def test_clip_grad_norm_in_every_dtype(dtype):
    """Gradients of ~300: in float16 their squares overflow (float16's largest value is 65504), yet
    the norm, ~1200, is a float16 number. Gradients keep their dtype."""
    params = make_params(seed=27, dtype=dtype, shapes=[(4, 3), (5,)])
    for i, p in enumerate(params):
        p.grad = randn(*p.shape, seed=28 + i, scale=300.0, dtype=dtype)
    expected = oracle(clipped_in_float64, [p.grad for p in params], 1.0)  # (total, gradients)
    total = optim.clip_grad_norm_(params, 1.0)
    if dtype == torch.float64:
        check.close(total, expected[0], hint="clip_overflow", what="returned total norm", check_dtype=False,
                    **NORM_IN_FLOAT32)
    else:
        check.close(total, expected[0], hint="clip_overflow", what="returned total norm", check_dtype=False)
    for i, p in enumerate(params):
        if dtype == torch.float64:
            check.close(p.grad, expected[1][i], hint="clip_overflow", what=f"gradient {i} after clipping",
                        **NORM_IN_FLOAT32)
        else:
            check.close(p.grad, expected[1][i], hint="clip_overflow", what=f"gradient {i} after clipping")


@pytest.mark.points(1)
@pytest.mark.parametrize("scale", [0.0, 1e-5], ids=["zero", "tiny"])
def test_clip_grad_norm_of_zero_and_tiny_gradients(scale):
    """All-zero gradients: the norm is 0 and nothing changes (no 0/0). A total norm of ~4e-5 with
    max_norm=1e-5: the 1e-6 in max_norm / (total + 1e-6) changes the scale by ~2.5% (float64, so
    that the absolute tolerance, 1e-9, is far below gradients of ~1e-6)."""
    params = make_params(29, dtype=torch.float64, shapes=[(4, 3), (5,)])
    for i, p in enumerate(params):
        p.grad = randn(*p.shape, seed=129 + i, scale=scale, dtype=torch.float64)
    expected = oracle(clipped_by_formula, [p.grad for p in params], 1e-5)  # (total, gradients)
    total = optim.clip_grad_norm_(params, 1e-5)
    # the norm's dtype is not specified (torch: the gradients'; a float32 accumulator is fine)
    check.close(total, expected[0], what="returned total norm", hint="clip_global_norm", check_dtype=False)
    for i, p in enumerate(params):
        check.close(p.grad, expected[1][i], what=f"gradient {i} after clipping", hint="clip_global_norm")


def _clipped_grad_objects(params, max_norm):
    """Glue: the student's clip_grad_norm_ on clones of `params`; the gradient tensors that were
    .grad BEFORE the call (the same objects), after it. Clipping in place scales those."""
    ps = []
    for p in params:
        clone = p.detach().clone().requires_grad_()
        clone.grad = p.grad.clone()
        ps.append(clone)
    held = [p.grad for p in ps]
    unwrap(optim.clip_grad_norm_)(ps, max_norm)
    return [g.clone() for g in held]


@pytest.mark.points(1)
def test_clip_grad_norm_scales_the_gradients_in_place():
    params = params_with_grads(31, [(4, 3), (5,)], scale=2.0)
    expected = oracle(clipped_by_formula, [p.grad for p in params], 0.5)  # (total, gradients)
    got = in_one_crossing(optim, _clipped_grad_objects, params, 0.5)
    for i in range(len(params)):
        check.close(got[i], expected[1][i], hint="clip_in_place",
                    what=f"gradient tensor {i} that was .grad before the call (scaled in place?)")
