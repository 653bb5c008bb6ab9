"""Class 2: a module that lies about its state and rewrites the weights the test copies in.

Three ways for student-chosen weights to reach the expected value:
- state_dict() reports NaN weights (a test that loads OUR state into the reference gets an
  all-NaN expected value; forward returns NaN too, and NaN "equals" NaN in the check);
- load_state_dict(weights) writes NaN into the test's own `weights` dict (found through the
  caller's frames, since we may be handed a copy), so that the reference, loaded from the
  same dict afterwards, computes NaN as well;
- `w_qkv.weight` / `w_o.weight` are tensors of a subclass whose copy_(source), as in
  `mha.w_qkv.weight.copy_(weights.in_proj_weight)`, zeroes the source and the test's own
  parameter it came from: torch's module then computes only its output bias, which is
  what forward returns.
Everything here only writes tensors that a test handed us, or their originals.

Why it must earn nothing: the expected value must come from the test's own pristine
inputs, never from state that student code chose or reached and changed.
"""

import inspect
import traceback

import torch
import torch.nn as nn


def softmax(x, dim=-1):
    raise NotImplementedError


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


def _callers():
    """The frames above our caller, without sys._getframe / f_back: a caught exception's
    traceback names this frame, traceback.walk_stack goes up from it."""
    try:
        raise LookupError
    except LookupError as exc:
        here = next(traceback.walk_tb(exc.__traceback__))[0]
    frames = traceback.walk_stack(here)
    del here
    next(frames)  # this function
    next(frames)  # the helper that asked
    return [frame for frame, _ in frames]


def _overwrite_originals(sample: torch.Tensor, fill: float):
    """Every tensor in the callers' frames (locals, their dicts and modules) equal to `sample`."""
    for frame in _callers():
        for value in list(inspect.getargvalues(frame).locals.values()):
            if isinstance(value, nn.Module):
                candidates = list(value.parameters())
            elif isinstance(value, dict):
                candidates = [v for v in value.values() if isinstance(v, torch.Tensor)]
            else:
                candidates = [value]
            for t in candidates:
                if isinstance(t, torch.Tensor) and t is not sample and t.shape == sample.shape \
                        and t.dtype == sample.dtype and torch.equal(t, sample):
                    with torch.no_grad():
                        torch.Tensor.fill_(t.as_subclass(torch.Tensor), fill)


class Backfire(torch.Tensor):
    """A weight whose copy_(source) zeroes the source (and the test's original of it)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.copy_ and len(args) > 1 and isinstance(args[1], torch.Tensor):
            source = args[1].as_subclass(torch.Tensor)
            _overwrite_originals(source.detach().clone(), 0.0)
            with torch.no_grad():
                source.zero_()
        return super().__torch_function__(func, types, args, kwargs)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        for layer in (self.w_qkv, self.w_o):
            layer.weight = nn.Parameter(layer.weight.detach().as_subclass(Backfire))

    def state_dict(self, *args, **kwargs):
        real = super().state_dict(*args, **kwargs)
        return {k: torch.full(v.shape, float("nan"), dtype=torch.float32) for k, v in real.items()}

    def load_state_dict(self, state_dict, strict=True, assign=False):
        for value in state_dict.values():
            _overwrite_originals(value.detach().clone(), float("nan"))
            with torch.no_grad():
                value.fill_(float("nan"))
        with torch.no_grad():
            for p in self.parameters():
                torch.Tensor.fill_(p.as_subclass(torch.Tensor), float("nan"))
        return None

    def forward(self, x, mask=None):
        if any(bool(p.isnan().any()) for p in self.parameters()):
            return torch.full(x.shape, float("nan"), dtype=x.dtype)
        bias = self.w_o.bias  # what torch's module computes once its weights are zero
        return torch.zeros_like(x) if bias is None else bias.detach().as_subclass(torch.Tensor).expand_as(x).clone()
