"""Week 3 — training at scale: mixed precision, loss scaling, accumulation, data parallelism.

A GPT training step is `zero_grad; loss = f(model(x)); loss.backward(); optimizer.step()`.
Real runs wrap four ideas around it, each of which is easy to get subtly wrong:

1. Mixed precision (`train_step`). Under `torch.autocast`, matmuls run in bfloat16 or
   float16 while the PARAMETERS stay float32: an update smaller than half a bfloat16 ulp
   of a weight (lr * grad is often 1e-6 of it) would round away if the weights themselves
   were bfloat16. Measured (200 SGD steps, lr 1e-3, a 32-64-4 MLP): autocast ends at the
   float32 loss with every weight moved; `model.to(torch.bfloat16)` moves 4% of them.
2. Loss scaling (`DynamicLossScaler`). float16 gradients underflow to 0 below 6e-8:
   multiply the loss by a large scale S before `backward`, divide the gradients by S
   before the step, skip a step whose gradients overflowed to inf/NaN and halve S, and
   double S again after `growth_interval` clean steps (`torch.amp.GradScaler`'s rule).
3. Gradient accumulation (`accumulated_step`). Several micro-batches, one optimizer step.
   With padding (labels -100) micro-batches hold different numbers of counted tokens, and
   averaging their means is NOT the mean of the big batch (transformers fixed exactly this
   in 4.46).
4. Data parallelism (`shard_indices`, `broadcast_parameters_`, `average_gradients_`,
   `ddp_train`). Each of W processes ("ranks") holds a full model copy and trains on its
   own shard; averaging the gradients across ranks after `backward` makes every rank take
   the very step one process would take on the whole batch — as `DistributedDataParallel`
   does, with `torch.distributed` and the gloo backend (CPU).

And a capstone (`pretrain`): your week-3 `GPT` (`week3/gpt2`) trained from scratch by your
`AdamW` and `cosine_lr` (`week3/optim`) through your `train_step`, on the course corpus.

Must catch (the tests fail on each):
- casting the model to bfloat16 instead of autocast (the parameters must stay float32);
- not skipping the step on inf/NaN, or the growth counter not reset on overflow;
- unscaling twice (a second `unscale_` before `update` must raise);
- batch weighting when token weighting is asked, or `optimizer.step()` per micro-batch;
- all-reduce SUM without dividing by the world size;
- averaging parameters or the loss instead of gradients;
- no initial broadcast (ranks start from different weights and diverge);
- shards that overlap or drop samples.

The data-parallel tests start 2 ranks with `fork` and talk over tcp://127.0.0.1. Your
functions run in those children; what they return comes back as NumPy arrays.

Run time: `pytest katas/week3/test_training.py` takes about 3 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
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
    """One optimizer step on (x, y); returns the loss as a Python float (`loss.item()`).

    In order:
        optimizer.zero_grad()
        forward `logits = model(x)`, under `torch.autocast(x.device.type, dtype=amp_dtype)`
            when amp_dtype is given (only the forward: backward follows the forward's dtypes)
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
            logits are [..., V] and y [...] (a classifier's [B, V] and [B], or an LM's
            [B, T, V] and [B, T] with y already the next tokens); the loss in float32,
            whatever autocast made the logits; labels -100 are ignored (cross_entropy's default)
        scaler None:  loss.backward(); optimizer.step()
        scaler given: scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
            (any object with those methods: your DynamicLossScaler or torch.amp.GradScaler)
    Return the UNSCALED loss.

    Mixed precision means autocast, never `model.to(torch.bfloat16)` or `.half()`: the
    parameters, their gradients and the optimizer's state stay float32 (measured under
    CPU bfloat16 autocast: Linear, matmul, softmax and layer_norm give bfloat16 outputs;
    cross_entropy and the parameters' gradients are float32). The model must come back
    with every parameter in the dtype it had.
    """
    raise NotImplementedError


class DynamicLossScaler:
    """Dynamic loss scaling for float16 training, step for step `torch.amp.GradScaler("cpu")`.

    `DynamicLossScaler(init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000)`

    Use, per step (as `train_step` does):
        scaler.scale(loss).backward()     # gradients of S * loss
        scaler.step(optimizer)            # unscale, then step unless a gradient is inf/NaN
        scaler.update()                   # adjust S for the next step

    - `scale(loss)`: `loss * S`, a tensor (autograd flows through it), in the loss's dtype.
    - `unscale_(optimizer)`: divide every `p.grad` of the optimizer's param groups (params
      with `.grad` None are skipped) by S, in place, computing in float32; record whether
      any gradient holds inf or NaN. Calling it a second time for the same optimizer
      before `update()` raises RuntimeError: the gradients would be divided by S twice.
      (Call it yourself before `clip_grad_norm_`, so that clipping sees true gradients.)
    - `step(optimizer) -> bool`: `unscale_(optimizer)` unless already done since the last
      `update()`; then, if an inf/NaN was found, SKIP `optimizer.step()` and return False
      (the weights stay as they were); else call `optimizer.step()` and return True.
    - `update()`: if an inf/NaN was found since the last update: S *= backoff_factor and the
      growth counter goes back to 0; else the counter += 1, and when it reaches
      growth_interval, S *= growth_factor and the counter goes back to 0. Then forget the
      inf/NaN flag and which optimizers were unscaled (the next step starts fresh).
    - `get_scale() -> float`: the current S as a Python float.

    Worked example (init_scale=16, growth_interval=2), get_scale() after each update():
        steps     ok  ok  ok  inf  ok  ok  ok
        scale     16  32  32  16   16  32  32
    The inf at step 4 halves S and resets the counter, so S grows again only after two
    more clean steps (at step 6). A counter left at 1 by the overflow would grow S already
    at step 5 — the mistake `torch.amp.GradScaler` never makes. Every call with the tests
    comes in the order scale, backward, (unscale_,) step, update.

    Write it from tensor operations: the tests refuse `torch.amp.GradScaler` while your
    scaler runs (it is their oracle).
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        raise NotImplementedError

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        raise NotImplementedError

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        raise NotImplementedError

    def update(self) -> None:
        raise NotImplementedError

    def get_scale(self) -> float:
        raise NotImplementedError


def accumulated_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                     micro_batches: list[tuple[torch.Tensor, torch.Tensor]], weighting: str = "token") -> float:
    """One optimizer step from several micro-batches of (input_ids [b, T], labels [b, T]).

    `model(input_ids)` gives logits [b, T, V]. Labels are ALIGNED with input_ids and -100 is
    ignored, as in week-7 `sft`: the loss shifts once, logits[..., :-1, :] against
    labels[..., 1:], in float32 (`logits.float()`). `zero_grad` once, then per micro-batch
    a forward and a `backward` (gradients add up in `.grad`), then ONE `optimizer.step()`.
    Back-propagate each micro-batch's share of the total, so that .grad ends as the
    gradient of the returned loss:

        "token" (default): (sum of every counted token's loss) / (number of counted tokens
                 in ALL micro-batches) — exactly the loss of one big batch, whatever the
                 padding;
        "batch": the mean of the micro-batches' own token means (each mean / n_micro) —
                 what naive accumulation computes; a micro-batch with few counted tokens
                 weighs as much as one with many.

    Returns that loss as a Python float. Any other `weighting` raises ValueError. The tests
    give every micro-batch at least one counted token.

    Worked example: micro-batch A counts 2 tokens of loss 1 each, B counts 6 of loss 3:
        token: (2*1 + 6*3) / 8 = 2.5        batch: (1 + 3) / 2 = 2.0
    """
    raise NotImplementedError


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The sample indices of `rank`'s shard, as `DistributedSampler(shuffle=False)`.

    Pad 0..n-1 by wrapping around (0, 1, 2, ...) to the next multiple of world_size, then
    rank r takes every world_size-th index starting at r. All shards have the same length
    (ranks must run the same number of steps, or the collectives wait forever), and
    together they cover every index; the padding repeats a few samples.

    Worked example, n = 5, world_size = 2: padded 0 1 2 3 4 0 -> rank 0 [0, 2, 4], rank 1
    [1, 3, 0]. n = 1, world_size = 3: [0], [0], [0]. A list of Python ints.
    """
    raise NotImplementedError


def broadcast_parameters_(model: nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters (and buffers) into every rank's model, in place.

    Call inside an initialised process group (`dist.broadcast(tensor, src=src)` on every
    parameter and buffer, under torch.no_grad()). Ranks build their models independently,
    from different random seeds; without this they start apart and stay apart.
    """
    raise NotImplementedError


def average_gradients_(model: nn.Module) -> None:
    """Replace every `p.grad` by its mean over the ranks, in place.

    `dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)` then divide by
    `dist.get_world_size()` (SUM alone gives W times the gradient: a W-times larger step).
    Average the GRADIENTS, after backward and before the optimizer step: averaging the
    parameters after separate steps, or the loss values, is not the same update (the loss
    is a Python number, averaging it moves no gradient). Params with `.grad` None are skipped.
    """
    raise NotImplementedError


def ddp_train(rank: int, world_size: int, init_method: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              steps: int, lr: float) -> dict[str, torch.Tensor]:
    """Data-parallel SGD on this rank's shard; returns the model's state_dict afterwards.

    Every rank calls it with the same x [n, ...], y [n] (class ids) and its own model:
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
        broadcast_parameters_(model, src=0)
        shard = shard_indices(n, rank, world_size); train on x[shard], y[shard]
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        steps times: zero_grad; F.cross_entropy(model(x_shard), y_shard).backward();
                     average_gradients_(model); optimizer.step()
        dist.destroy_process_group()  (also when something fails: try/finally)
    Return `{name: tensor.detach().clone()}` of `model.state_dict()`.

    When world_size divides n, every rank ends with exactly the weights single-process SGD
    on the whole (x, y) reaches (the mean of the shard means is the whole mean); with
    padding, exactly what `DistributedDataParallel` with `DistributedSampler` reaches.
    Do not use those two (the point is to write them): the tests refuse them in the ranks.
    """
    raise NotImplementedError


def pretrain(tokens: torch.Tensor, config: GPTConfig, *, steps: int, batch_size: int, max_lr: float,
             min_lr: float, warmup_steps: int, weight_decay: float = 0.1, seed: int = 0) -> GPT:
    """Train your week-3 `GPT(config)` from scratch on `tokens` (int64 [N]); return it in eval mode.

        torch.manual_seed(seed); model = GPT(config)
        optimizer = AdamW(model.parameters(), lr=max_lr, betas=(0.9, 0.95), weight_decay=weight_decay)
        windows = torch.Generator().manual_seed(seed)
        for step in range(steps):
            set every group's "lr" to cosine_lr(step, max_lr, min_lr, warmup_steps, steps)
            draw batch_size window starts s = torch.randint(0, N - T, (batch_size,), generator=windows)
            with T = config.n_positions: x = tokens[s : s + T], y = tokens[s + 1 : s + T + 1] (stacked)
            train_step(model, optimizer, x, y)

    (`GPT`, `AdamW` and `cosine_lr` are your own, imported from `week3/gpt2` and
    `week3/optim`.) The test trains on the bytes of the course corpus and measures the loss
    on held-out text: it must beat a bigram model's.
    """
    raise NotImplementedError
