"""Public tests for week3/training.

Oracles: the same training loop written out here (autocast, `torch.amp.GradScaler("cpu")`,
one big batch with `SGD(lr=1)`), `DistributedSampler(shuffle=False)` for the shards, and
single-process SGD for data-parallel training. Everything that trains, or reads what your
code did to a model or an optimizer, runs as one crossing (`in_one_crossing`) and returns
plain data. The data-parallel tests fork 2 ranks that talk gloo over tcp://127.0.0.1; what a
rank returns comes back as NumPy arrays.
"""

import math
import socket
import time
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from graders import check, in_one_crossing, oracle, student, unwrap
from graders.guard import forbid
from graders.testing import hinted, mistake_shown, randn

training = student("week3.training")

# What the kata asks you to write yourself: refused while your scaler and your ranks run.
BANNED = ("torch.amp.GradScaler", "torch.cuda.amp.GradScaler", "torch.nn.parallel.DistributedDataParallel",
          "torch.utils.data.DistributedSampler")


# --- models the tests own --------------------------------------------------------------------


def mlp_weights(seed, d_in=32, hidden=64, d_out=4):
    return {"0.weight": randn(hidden, d_in, seed=seed, scale=d_in ** -0.5), "0.bias": randn(hidden, seed=seed + 1, scale=0.1),
            "2.weight": randn(d_out, hidden, seed=seed + 2, scale=hidden ** -0.5), "2.bias": randn(d_out, seed=seed + 3, scale=0.1)}


def make_mlp(weights):
    """A 32-64-4 GELU MLP holding `weights` (a fresh copy: the caller's tensors stay as they are)."""
    hidden, d_in = weights["0.weight"].shape
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, weights["2.weight"].shape[0]))
    model.load_state_dict(weights)
    return model


def state_of(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def classification_batch(n, seed, d_in=32, classes=4):
    return randn(n, d_in, seed=seed), torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed + 1))


# --- train_step ------------------------------------------------------------------------------


def _train_steps(weights, x, y, steps, lr, amp_dtype, scaler_args):
    """Glue: your train_step, `steps` times, on a model and SGD of the test's own."""
    train_step = unwrap(training.train_step)
    model = make_mlp(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = None if scaler_args is None else torch.amp.GradScaler("cpu", **scaler_args)
    kwargs = {} if amp_dtype is None and scaler is None else {"amp_dtype": amp_dtype, "scaler": scaler}
    losses = [train_step(model, optimizer, x, y, **kwargs) for _ in range(steps)]
    return {"losses": losses, "state": state_of(model), "dtypes": [str(p.dtype) for p in model.parameters()],
            "grad_dtypes": [str(p.grad.dtype) for p in model.parameters() if p.grad is not None],
            "scale": None if scaler is None else scaler.get_scale()}


def written_out_steps(weights, x, y, steps, lr, amp_dtype=None, scaler_args=None, variant=None):
    """The oracle: train_step's recipe written out (variant: what a mistake does instead)."""
    model = make_mlp(weights)
    if variant == "model_cast_to_bf16":
        model = model.to(amp_dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = None if scaler_args is None else torch.amp.GradScaler("cpu", **scaler_args)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        autocast = amp_dtype is not None and variant != "amp_ignored"
        with torch.autocast("cpu", dtype=amp_dtype, enabled=autocast):
            logits = model(x)
        loss = F.cross_entropy(logits if variant == "loss_not_float32" else logits.float(), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        losses.append(loss.item())
    return {"losses": torch.tensor(losses), "state": state_of(model)}


def amp_mistake(got, weights, x, y, steps, lr, amp_dtype):
    """Which mistake's parameters `got` holds, if any (called only through oracle(...))."""
    variants = {m: [written_out_steps(weights, x, y, steps, lr, amp_dtype, variant=m)["state"]["0.weight"]]
                for m in ("model_cast_to_bf16", "amp_ignored", "loss_not_float32")}
    return mistake_shown(got, variants)


@pytest.mark.points(2)
def test_train_step_is_one_sgd_step():
    weights, (x, y) = mlp_weights(seed=0), classification_batch(16, seed=10)
    expected = oracle(written_out_steps, weights, x, y, 3, 0.1)
    got = in_one_crossing(training, _train_steps, weights, x, y, 3, 0.1, None, None)
    losses, state = got["losses"], got["state"]
    check.that(all(type(loss) is float for loss in losses),
               f"train_step should return the loss as a Python float (loss.item()), got {type(losses[0]).__name__}")
    check.close(torch.tensor(losses[:1]), expected["losses"][:1], what="loss of the first step",
                check_dtype=False)
    check.close(torch.tensor(losses), expected["losses"], what="losses of 3 steps (each before its update)",
                hint="no_zero_grad", likely_if="the first step's loss is right", check_dtype=False)
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        check.close(state[name], expected["state"][name], what=f"{name} after 3 steps", hint="no_zero_grad",
                    likely_if="the losses are right")


@pytest.mark.points(2)
def test_train_step_on_a_language_model_batch():
    # logits [B, T, V] and y [B, T] (y the next tokens, with some -100): flatten, then cross-entropy
    weights = {"0.weight": randn(11, 8, seed=20), "1.weight": randn(11, 8, seed=21, scale=8 ** -0.5)}
    ids = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(22))
    y = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(23))
    y[0, :3] = -100
    expected = oracle(lm_steps, weights, ids, y)
    got = in_one_crossing(training, _lm_steps, weights, ids, y)
    check.close(torch.tensor(got["losses"]), expected["losses"], what="losses of an LM batch", check_dtype=False)
    check.close(got["state"]["1.weight"], expected["state"]["1.weight"], what="head weight after 2 steps")


def tiny_lm(weights):
    model = nn.Sequential(nn.Embedding(*weights["0.weight"].shape), nn.Linear(*reversed(weights["1.weight"].shape), bias=False))
    model.load_state_dict(weights)
    return model


def _lm_steps(weights, ids, y):
    train_step = unwrap(training.train_step)
    model = tiny_lm(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    return {"losses": [train_step(model, optimizer, ids, y) for _ in range(2)], "state": state_of(model)}


def lm_steps(weights, ids, y):
    model = tiny_lm(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        logits = model(ids)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return {"losses": torch.tensor(losses), "state": state_of(model)}


@pytest.mark.points(2)
def test_bf16_autocast_keeps_the_parameters_float32():
    weights, (x, y) = mlp_weights(seed=1), classification_batch(16, seed=11)
    # a model cast to bfloat16 often crashes here: float32 inputs meet bfloat16 weights
    got = hinted("model_cast_to_bf16", in_one_crossing, training, _train_steps, weights, x, y, 2, 1e-3, torch.bfloat16, None)
    dtypes, grad_dtypes = got["dtypes"], got["grad_dtypes"]
    check.that(set(dtypes) == {"torch.float32"}, f"after train_step(amp_dtype=torch.bfloat16) the parameters "
               f"should still be float32, got {dtypes}", hint="model_cast_to_bf16")
    check.that(set(grad_dtypes) == {"torch.float32"}, f"the parameters' gradients should be float32 (autocast "
               f"casts the weights' copies, never the weights), got {grad_dtypes}", hint="model_cast_to_bf16")


@pytest.mark.points(3)
def test_bf16_autocast_matches_the_written_out_step():
    weights, (x, y) = mlp_weights(seed=2), classification_batch(16, seed=12)
    expected = oracle(written_out_steps, weights, x, y, 5, 0.05, torch.bfloat16)
    got = in_one_crossing(training, _train_steps, weights, x, y, 5, 0.05, torch.bfloat16, None)
    state = got["state"]
    check.close(state["0.weight"], expected["state"]["0.weight"], what="first-layer weights after 5 bf16 autocast steps",
                hint=oracle(amp_mistake, state["0.weight"], weights, x, y, 5, 0.05, torch.bfloat16))
    check.close(torch.tensor(got["losses"]), expected["losses"], what="losses under bf16 autocast", check_dtype=False,
                hint=oracle(amp_mistake, state["0.weight"], weights, x, y, 5, 0.05, torch.bfloat16))


@pytest.mark.points(2)
def test_bf16_autocast_updates_every_weight():
    """200 steps at lr 1e-3 (the catalogue's measurement): under autocast every first-layer
    weight moves; with the model itself in bfloat16, updates under half an ulp round away
    (4.3% of the weights moved). The bar: at least 99% moved."""
    weights, (x, y) = mlp_weights(seed=3), classification_batch(32, seed=13)
    got = in_one_crossing(training, _train_steps, weights, x, y, 200, 1e-3, torch.bfloat16, None)
    first = got["state"]["0.weight"]
    check.that(moved_fraction(first, weights["0.weight"]) >= 0.99, f"after 200 bf16 autocast steps only "
               f"{moved_fraction(first, weights['0.weight']):.1%} of the first layer's weights changed (float32 "
               "weights all move)", hint="model_cast_to_bf16")


def moved_fraction(after, before):
    return float((after.float() != before).float().mean())


@pytest.mark.points(2)
def test_train_step_goes_through_the_scaler():
    # torch's own GradScaler, growth every step: the scale doubles per update() it sees
    weights, (x, y) = mlp_weights(seed=4), classification_batch(16, seed=14)
    scaler_args = {"init_scale": 1024.0, "growth_interval": 1}
    expected = oracle(written_out_steps, weights, x, y, 3, 0.1, None, scaler_args)
    got = in_one_crossing(training, _train_steps, weights, x, y, 3, 0.1, None, scaler_args)
    scale = got["scale"]
    check.that(scale == 8192.0, f"after 3 train_steps with a GradScaler(init_scale=1024, growth_interval=1) its "
               f"scale should be 8192 (one update() per step), got {scale}", hint="scaler_not_used")
    check.close(torch.tensor(got["losses"]), expected["losses"], what="returned losses (unscaled)",
                hint="returned_scaled_loss", check_dtype=False)
    check.close(got["state"]["0.weight"], expected["state"]["0.weight"], what="weights after 3 scaled steps")


# --- DynamicLossScaler -----------------------------------------------------------------------


def _scaler_run(kwargs, pattern, w0, lr=0.1):
    """Glue: your scaler on w <- w - lr * w (loss = |w|^2 / 2), with inf/NaN put into the
    gradient at the steps `pattern` names. GradScaler and DDP are refused meanwhile."""
    with forbid(BANNED):
        scaler = unwrap(training.DynamicLossScaler)(**kwargs)
        return scaled_steps(scaler, pattern, w0, lr)


def scaled_steps(scaler, pattern, w0, lr=0.1):
    w = nn.Parameter(w0.clone())
    optimizer = torch.optim.SGD([w], lr=lr)
    scales, stepped, weights = [], [], []
    for bad in pattern:
        optimizer.zero_grad()
        scaler.scale((w * w).sum() / 2).backward()
        if bad:
            w.grad[1] = float(bad)
        stepped.append(scaler.step(optimizer))
        scaler.update()
        scales.append(scaler.get_scale())
        weights.append(w.detach().clone())
    return {"scales": scales, "stepped": stepped, "weights": torch.stack(weights)}


def grad_scaler_steps(kwargs, pattern, w0, lr=0.1):
    """The oracle: torch.amp.GradScaler("cpu") on the same steps (it returns no bool: a step is
    taken exactly when no inf/NaN was injected)."""
    out = scaled_steps(torch.amp.GradScaler("cpu", **kwargs), pattern, w0, lr)
    out["stepped"] = [not bad for bad in pattern]
    return out


def rule_scales(kwargs, pattern, reset_on_overflow=True, grow_after=0):
    """get_scale() after each update() by the update rule; the mistakes: a counter kept through
    an overflow, or growth `grow_after` steps late (or early, when negative)."""
    scale, counter, scales = kwargs.get("init_scale", 2.0 ** 16), 0, []
    for bad in pattern:
        if bad:
            scale *= kwargs.get("backoff_factor", 0.5)
            counter = 0 if reset_on_overflow else counter
        else:
            counter += 1
            if counter == kwargs.get("growth_interval", 2000) + grow_after:
                scale, counter = scale * kwargs.get("growth_factor", 2.0), 0
        scales.append(scale)
    return scales


def scale_mistake(scales, kwargs, pattern):
    """Which update-rule mistake gives these scales, if any (called only through oracle(...))."""
    return mistake_shown(scales, {"growth_counter_not_reset": [rule_scales(kwargs, pattern, reset_on_overflow=False)],
                                  "growth_rule": [rule_scales(kwargs, pattern, grow_after=k) for k in (-1, 1)]})


WORKED = ["", "", "", "inf", "", "", ""]  # the docstring's example: ok ok ok inf ok ok ok


@pytest.mark.points(1)
def test_scale_multiplies_the_loss_and_get_scale_is_a_float():
    scaler = training.DynamicLossScaler(init_scale=16.0)
    scale = scaler.get_scale()
    check.that(type(scale) is float and scale == 16.0, f"get_scale() should be 16.0 (a float), got {scale!r}",
               hint="scale_value")
    loss = torch.tensor(0.75)
    check.close(scaler.scale(loss), torch.tensor(12.0), hint="scale_value", what="scale(0.75) with scale 16")


@pytest.mark.points(1)
def test_default_scale_is_two_to_the_sixteenth():
    scale = training.DynamicLossScaler().get_scale()
    check.that(scale == 65536.0, f"DynamicLossScaler() should start at 2.0**16 = 65536.0, got {scale!r}",
               hint="scale_value")


@pytest.mark.points(3)
def test_an_overflowed_step_is_skipped():
    kwargs, w0 = {"init_scale": 16.0, "growth_interval": 2}, randn(5, seed=30)
    expected = oracle(grad_scaler_steps, kwargs, WORKED, w0)
    got = in_one_crossing(training, _scaler_run, kwargs, WORKED, w0)
    stepped, weights = got["stepped"], got["weights"]
    check.equal([bool(s) for s in stepped], expected["stepped"], hint="inf_step_not_skipped",
                what="step()'s return values (False exactly for the step with an inf gradient)")
    check.close(weights, expected["weights"], hint="inf_step_not_skipped",
                what="w after each step (the inf step leaves it as it was)")


@pytest.mark.points(3)
def test_the_worked_example_of_scales():
    kwargs, w0 = {"init_scale": 16.0, "growth_interval": 2}, randn(5, seed=31)
    got = in_one_crossing(training, _scaler_run, kwargs, WORKED, w0)
    scales = got["scales"]
    check.equal([float(s) for s in scales], [16.0, 32.0, 32.0, 16.0, 16.0, 32.0, 32.0],
                what="get_scale() after each update() (ok ok ok inf ok ok ok)",
                hint=oracle(scale_mistake, [float(s) for s in scales], kwargs, WORKED))


@pytest.mark.points(2)
@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
def test_scales_match_grad_scaler_with_overflows(bad):
    kwargs = {"init_scale": 64.0, "growth_factor": 4.0, "backoff_factor": 0.25, "growth_interval": 3}
    pattern = ["", bad, "", "", "", bad, bad, "", "", "", "", bad, ""]
    w0 = randn(6, seed=32)
    expected = oracle(grad_scaler_steps, kwargs, pattern, w0)
    got = in_one_crossing(training, _scaler_run, kwargs, pattern, w0)
    stepped, scales = [bool(s) for s in got["stepped"]], [float(s) for s in got["scales"]]
    check.equal(stepped, expected["stepped"], hint="inf_step_not_skipped", what=f"step()'s return values ({bad})")
    check.equal(scales, expected["scales"], what="get_scale() after each update()",
                hint=oracle(scale_mistake, scales, kwargs, pattern))
    check.close(got["weights"], expected["weights"], what="w after each step")


def _unscale_then_step(init_scale, w0):
    """Glue: scale, backward, unscale_ (as before clipping), read the gradient, a second
    unscale_ (must raise), then step and update."""
    with forbid(BANNED):
        scaler = unwrap(training.DynamicLossScaler)(init_scale=init_scale)
        w = nn.Parameter(w0.clone())
        unused = nn.Parameter(torch.zeros(2))  # no .grad: skipped
        optimizer = torch.optim.SGD([w, unused], lr=0.5)
        scaler.scale((w * w).sum() / 2).backward()
        scaler.unscale_(optimizer)
        grad = w.grad.detach().clone()
        try:
            scaler.unscale_(optimizer)
            raised = False
        except RuntimeError:
            raised = True
        if raised:
            w.grad.copy_(grad)
        stepped = scaler.step(optimizer)
        scaler.update()
        return {"grad": grad, "raised": raised, "stepped": stepped, "w": w.detach().clone()}


@pytest.mark.points(2)
def test_unscale_divides_the_gradients_by_the_scale():
    w0 = randn(6, seed=33)
    got = in_one_crossing(training, _unscale_then_step, 1024.0, w0)
    check.close(got["grad"], w0, hint="unscale_values", what="w.grad after unscale_ (the true gradient, w)")


@pytest.mark.points(2)
def test_a_second_unscale_before_update_raises():
    got = in_one_crossing(training, _unscale_then_step, 1024.0, randn(6, seed=34))
    check.that(got["raised"] is True, "a second unscale_(optimizer) before update() should raise RuntimeError",
               hint="unscaled_twice")


@pytest.mark.points(2)
def test_step_after_unscale_does_not_unscale_again():
    w0 = randn(6, seed=35)
    got = in_one_crossing(training, _unscale_then_step, 1024.0, w0)
    check.that(bool(got["stepped"]), "step() should return True for finite gradients")
    check.close(got["w"], w0 - 0.5 * w0, hint="unscaled_twice",
                what="w after unscale_ then step (w - lr * grad; dividing by the scale again leaves w almost unchanged)")


# --- accumulated_step ------------------------------------------------------------------------


V_LM, D_LM = 13, 8


def lm_weights(seed):
    return {"0.weight": randn(V_LM, D_LM, seed=seed), "1.weight": randn(V_LM, D_LM, seed=seed + 1, scale=D_LM ** -0.5)}


def micro_batches(seed, ignored=(0, 7, 3), b=2, T=6):
    """Three micro-batches [b, T] whose labels hold `ignored[i]` -100s each (so their counted
    token numbers differ: 10, 3 and 7 targets with the defaults), aligned with the ids."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n_ignored in ignored:
        ids = torch.randint(0, V_LM, (b, T), generator=g)
        labels = ids.clone()
        labels.view(-1)[torch.randperm(b * T, generator=g)[:n_ignored]] = -100
        out.append((ids, labels))
    return out


def _accumulate(weights, batches, weighting):
    """Glue: your accumulated_step with SGD(lr=1) on the test's tiny LM."""
    accumulated_step = unwrap(training.accumulated_step)
    model = tiny_lm(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    if weighting is None:
        loss = accumulated_step(model, optimizer, batches)
    else:
        loss = accumulated_step(model, optimizer, batches, weighting)
    return {"loss": loss, "state": state_of(model)}


def shifted_loss(model, ids, labels, reduction="mean"):
    logits = model(ids).float()
    return F.cross_entropy(logits[..., :-1, :].reshape(-1, V_LM), labels[..., 1:].reshape(-1), ignore_index=-100,
                           reduction=reduction)


def one_big_batch(weights, batches):
    """The oracle for token weighting: the micro-batches concatenated, one SGD(lr=1) step."""
    model = tiny_lm(weights)
    ids, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    loss = shifted_loss(model, ids, labels)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= p.grad
    return {"loss": loss.item(), "state": state_of(model)}


def accumulated_variant(weights, batches, weighting):
    """What a loop of micro-batches gives: "token" and "batch" as the docstring says, and the
    mistakes "step_per_micro_batch" and "accumulation_shift" (with token weighting)."""
    model = tiny_lm(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    counts = [int((labels[..., 1:] != -100).sum()) for _, labels in batches]
    optimizer.zero_grad()
    total_loss = 0.0
    for (ids, labels), count in zip(batches, counts):
        if weighting == "accumulation_shift":
            logits = model(ids).float()
            summed = F.cross_entropy(logits.reshape(-1, V_LM), labels.reshape(-1), ignore_index=-100, reduction="sum")
            loss = summed / sum(int((lab != -100).sum()) for _, lab in batches)
        else:
            summed = shifted_loss(model, ids, labels, reduction="sum")
            loss = summed / count / len(batches) if weighting == "batch" else summed / sum(counts)
        loss.backward()
        total_loss += loss.item()
        if weighting == "step_per_micro_batch":
            optimizer.step()
            optimizer.zero_grad()
    if weighting != "step_per_micro_batch":
        optimizer.step()
    return {"loss": total_loss, "state": state_of(model)}


def accumulation_mistake(got, weights, batches, asked):
    """The mistake whose weights `got` holds (only through oracle(...))."""
    wrong = {"batch": ["batch_weighting"], "token": ["token_weighting"]}
    variants = {"step_per_micro_batch": [accumulated_variant(weights, batches, "step_per_micro_batch")["state"]["0.weight"]],
                "accumulation_shift": [accumulated_variant(weights, batches, "accumulation_shift")["state"]["0.weight"]]}
    other = "batch" if asked == "token" else "token"
    variants[wrong[other][0]] = [accumulated_variant(weights, batches, other)["state"]["0.weight"]]
    return mistake_shown(got, variants)


@pytest.mark.points(3)
def test_token_weighting_equals_one_big_batch():
    """The catalogue's oracle: the concatenated batch with SGD(lr=1), to float32 tolerance."""
    weights, batches = lm_weights(seed=40), micro_batches(seed=41)
    expected = oracle(one_big_batch, weights, batches)
    got = in_one_crossing(training, _accumulate, weights, batches, "token")
    state = got["state"]
    hint = oracle(accumulation_mistake, state["0.weight"], weights, batches, "token")
    check.close(state["0.weight"], expected["state"]["0.weight"], hint=hint,
                what="embedding after accumulated_step(weighting='token') vs one step on the whole batch")
    check.close(state["1.weight"], expected["state"]["1.weight"], hint=hint, what="head after the step")
    check.close(got["loss"], expected["loss"], what="returned loss (the big batch's token mean)")


@pytest.mark.points(2)
def test_token_weighting_is_the_default():
    weights, batches = lm_weights(seed=42), micro_batches(seed=43, ignored=(9, 0, 5))
    expected = oracle(one_big_batch, weights, batches)
    got = in_one_crossing(training, _accumulate, weights, batches, None)
    check.close(got["state"]["0.weight"], expected["state"]["0.weight"], what="embedding after accumulated_step(...) "
                "with the default weighting", hint=oracle(accumulation_mistake, got["state"]["0.weight"], weights,
                                                         batches, "token"))


@pytest.mark.points(2)
def test_batch_weighting_is_the_mean_of_micro_batch_means():
    weights, batches = lm_weights(seed=44), micro_batches(seed=45)
    expected = oracle(accumulated_variant, weights, batches, "batch")
    got = in_one_crossing(training, _accumulate, weights, batches, "batch")
    state = got["state"]
    check.close(state["0.weight"], expected["state"]["0.weight"], what="embedding after weighting='batch'",
                hint=oracle(accumulation_mistake, state["0.weight"], weights, batches, "batch"))
    check.close(got["loss"], expected["loss"], what="returned loss (mean of the micro-batch means)",
                hint="token_weighting")


def _bad_weighting(weights, batches):
    try:
        _accumulate(weights, batches, "mean")
    except ValueError:
        return True
    return False


@pytest.mark.points(1)
def test_unknown_weighting_raises():
    raised = in_one_crossing(training, _bad_weighting, lm_weights(seed=46), micro_batches(seed=47))
    check.that(raised is True, "accumulated_step(..., weighting='mean') should raise ValueError",
               hint="weighting_validation")


# --- shard_indices ---------------------------------------------------------------------------


def sampler_shard(n, rank, world_size):
    return list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False))


@pytest.mark.points(1)
def test_shard_indices_worked_example():
    check.equal(training.shard_indices(5, 0, 2), [0, 2, 4], hint="shards_overlap_or_drop", what="shard_indices(5, 0, 2)")
    check.equal(training.shard_indices(5, 1, 2), [1, 3, 0], hint="shards_overlap_or_drop", what="shard_indices(5, 1, 2)")


@pytest.mark.points(2)
@pytest.mark.parametrize("n,world_size", [(8, 2), (9, 2), (10, 4), (7, 3), (1, 3), (2, 5), (12, 1)])
def test_shard_indices_equal_distributed_sampler(n, world_size):
    shards = [training.shard_indices(n, r, world_size) for r in range(world_size)]
    for r, shard in enumerate(shards):
        check.that(type(shard) is list and all(type(i) is int for i in shard),
                   f"shard_indices should return a list of Python ints, got {type(shard).__name__}")
        check.equal(shard, sampler_shard(n, r, world_size), hint="shards_overlap_or_drop",
                    what=f"shard_indices({n}, {r}, {world_size}) (DistributedSampler(shuffle=False))")


# --- data parallelism: 2 forked ranks --------------------------------------------------------

WORLD = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(target, *args, timeout=20.0):
    """Fork WORLD ranks running `target(rank, WORLD, init_method, queue, *args)`; return what
    each put on the queue, by rank. A rank that raises fails the call with its traceback; one
    that hangs is killed at the timeout. No process outlives this call."""
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # optimizers import lazily (5 s in each child)
    context = mp.get_context("fork")
    queue = context.SimpleQueue()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    ranks = [context.Process(target=_rank_main, args=(target, rank, (WORLD, init_method, queue, *args), queue))
             for rank in range(WORLD)]
    results, deadline = {}, time.monotonic() + timeout
    try:
        for process in ranks:
            process.start()
        while len(results) < WORLD:
            while not queue.empty():  # read as results come: a full pipe would keep a rank from exiting
                rank, value = queue.get()
                if isinstance(value, RankFailed):
                    raise value.error(rank)
                results[rank] = value
            if any(p.exitcode not in (None, 0) for p in ranks) and queue.empty():
                raise RuntimeError(f"a rank died: exit codes {[p.exitcode for p in ranks]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ranks did not finish in {timeout:.0f} s (a collective waiting forever?)")
            time.sleep(0.005)
    finally:
        for process in ranks:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    return [results[r] for r in range(WORLD)]


class RankFailed:
    """What a rank that raised sends back: its traceback, and whether it was a stub's
    NotImplementedError (raised again here, so that the test says NOT STARTED)."""

    def __init__(self, exc):
        self.traceback, self.not_started = traceback.format_exc(), isinstance(exc, NotImplementedError)

    def error(self, rank):
        kind = NotImplementedError if self.not_started else RuntimeError
        return kind(f"rank {rank} failed:\n{self.traceback}")


def _rank_main(target, rank, args, queue):
    try:
        target(rank, *args)
    except BaseException as exc:
        queue.put((rank, RankFailed(exc)))
        raise


def as_numpy(state):
    return {name: value.detach().numpy() for name, value in state.items()}


def as_tensors(state):
    return {name: torch.from_numpy(value) for name, value in state.items()}


def rank_weights(seed, rank):
    return mlp_weights(seed=seed + 100 * rank, d_in=6, hidden=12, d_out=3)


def _ddp_rank(rank, world_size, init_method, queue, ddp_train, seed, x, y, steps, lr):
    model = make_mlp(rank_weights(seed, rank))  # every rank starts from its own seed
    state = ddp_train(rank, world_size, init_method, model, x, y, steps, lr)
    queue.put((rank, as_numpy(state)))


def _ddp_train(seed, x, y, steps, lr):
    """Glue: your ddp_train in 2 forked ranks; their returned state_dicts."""
    ddp_train = unwrap(training.ddp_train)
    with forbid(BANNED):
        states = run_ranks(_ddp_rank, ddp_train, seed, x, y, steps, lr)
    return [as_tensors(state) for state in states]


def single_process_sgd(weights, x, y, steps, lr):
    """The oracle: plain SGD on the whole batch, from rank 0's weights."""
    model = make_mlp(weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return state_of(model)


def ddp_mistake(got, seed, x, y, steps, lr):
    """sum_without_average when the weights are single-process SGD's with world_size * lr,
    else ddp_recipe: the ranks agree (checked before) but took other steps (only through
    oracle(...))."""
    return mistake_shown(got, {"sum_without_average": [single_process_sgd(rank_weights(seed, 0), x, y, steps,
                                                                          WORLD * lr)["0.weight"]]}) or "ddp_recipe"


def ddp_batch(n, seed):
    return randn(n, 6, seed=seed), torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed + 1))


@pytest.mark.points(2)
def test_ddp_train_starts_from_rank_zero():
    # steps=0: what comes back is what the broadcast made of each rank's own initial weights
    x, y = ddp_batch(8, seed=50)
    states = in_one_crossing(training, _ddp_train, 7, x, y, 0, 0.5)
    for r in range(WORLD):
        for name in ("0.weight", "2.bias"):
            check.close(states[r][name], rank_weights(7, 0)[name], hint="no_broadcast",
                        what=f"rank {r}'s {name} after ddp_train(steps=0) (rank 0's initial weights)")


@pytest.mark.points(4)
def test_ddp_train_equals_single_process_sgd():
    """n = 8 on 2 ranks (4 each, no padding): the mean of the shard means is the whole mean,
    so every rank must end where SGD on the whole batch ends (measured: 3e-8 apart)."""
    x, y = ddp_batch(8, seed=51)
    expected = oracle(single_process_sgd, rank_weights(11, 0), x, y, 4, 0.5)
    states = in_one_crossing(training, _ddp_train, 11, x, y, 4, 0.5)
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        check.close(states[1][name], states[0][name], what=f"rank 1's {name} vs rank 0's after 4 steps",
                    hint="average_gradients_not_params", likely_if="test_ddp_train_starts_from_rank_zero passes")
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        check.close(states[0][name], expected[name], what=f"{name} after 4 data-parallel steps vs single-process SGD",
                    hint=oracle(ddp_mistake, states[0]["0.weight"], 11, x, y, 4, 0.5))


def _group_rank(rank, world_size, init_method, queue, fn, seed, src, grads):
    """In an initialised gloo group: rank-specific weights (and gradients, when given); then
    `fn(model)` or `fn(model, src)`; return the weights, buffers and gradients."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        model = make_mlp(rank_weights(seed, rank))
        model.register_buffer("running", randn(3, seed=seed + 100 * rank + 50))
        if grads is not None:
            for name, p in model.named_parameters():
                p.grad = None if name == "0.bias" else grads[rank][name].clone()  # 0.bias: no gradient
        fn(model) if src is None else fn(model, src)
        out = as_numpy(model.state_dict())
        out.update({f"grad:{n}": p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()


def _in_group(name, seed, src, grads):
    fn = unwrap(getattr(training, name))
    with forbid(BANNED):
        return [as_tensors(out) for out in run_ranks(_group_rank, fn, seed, src, grads)]


def rank_grads(seed):
    return [{name: randn(*w.shape, seed=seed + 10 * r + i) for i, (name, w) in enumerate(rank_weights(0, 0).items())}
            for r in range(WORLD)]


@pytest.mark.points(2)
@pytest.mark.parametrize("src", [0, 1])
def test_broadcast_parameters_copies_the_source_rank(src):
    outs = in_one_crossing(training, _in_group, "broadcast_parameters_", 60, src, None)
    for r in range(WORLD):
        for name, value in rank_weights(60, src).items():
            check.close(outs[r][name], value, hint="no_broadcast", what=f"rank {r}'s {name} after broadcast from rank {src}")
        check.close(outs[r]["running"], randn(3, seed=60 + 100 * src + 50), hint="no_broadcast",
                    what=f"rank {r}'s buffer after broadcast from rank {src} (buffers too)")


def gradient_mistake(got, grads, name):
    """sum_without_average for the sum, average_gradients_not_params for an unchanged gradient
    (only through oracle(...))."""
    return mistake_shown(got, {"sum_without_average": [grads[0][name] + grads[1][name]],
                               "average_gradients_not_params": [grads[0][name]]})


@pytest.mark.points(3)
def test_average_gradients_is_the_mean_over_ranks():
    grads = rank_grads(seed=70)
    outs = in_one_crossing(training, _in_group, "average_gradients_", 61, None, grads)
    for r in range(WORLD):
        for name in ("0.weight", "2.weight", "2.bias"):
            got = outs[r][f"grad:{name}"]
            check.close(got, (grads[0][name] + grads[1][name]) / 2, what=f"rank {r}'s {name}.grad (the mean of the ranks')",
                        hint=oracle(gradient_mistake, got, grads, name))
        check.that("grad:0.bias" not in outs[r], "a parameter with .grad None should keep .grad None")
        check.close(outs[r]["0.weight"], rank_weights(61, r)["0.weight"], hint="average_gradients_not_params",
                    what=f"rank {r}'s weights (average_gradients_ changes gradients only)")
