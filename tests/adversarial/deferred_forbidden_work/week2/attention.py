"""Class 3: do the forbidden work later, when the guard is no longer armed.

The guard is armed only while our function runs. softmax computes nothing itself and has
torch's softmax (the Tensor method, which a reader of the source cannot tell from a method
of our own) run after it returned, in one of two ways:
- inputs of 1 or 2 dims: it returns a torch.Tensor SUBCLASS holding only the input, whose
  __torch_function__ turns into x.softmax(dim) the first time the harness touches the
  result (to copy, hash or save it);
- larger inputs: it returns a plain tensor of unique placeholder values and registers a
  weakref.finalize on it: when the harness lets go of our result (at the end of the test,
  just before it saves the recording) the callback computes x.softmax(dim) and overwrites
  the placeholder inside the recording it found on the stack (a local named `rec` of the
  boundary), so the file the grader reads holds the library's answer.
Frames are walked with traceback.walk_stack / inspect.getargvalues (no sys._getframe).

Why it must earn nothing: the guard's window is not the only time student code runs, and a
value recorded in the student's process is whatever that process wants it to be.
"""

import inspect
import itertools
import traceback
import weakref

import torch
import torch.nn as nn


class Deferred(torch.Tensor):
    """Holds x; becomes softmax(x) as soon as anyone operates on it."""

    @staticmethod
    def __new__(cls, x, dim):
        self = x.detach().clone().as_subclass(cls)
        self.kata_dim = dim
        return self

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        args = tuple(a.as_subclass(torch.Tensor).softmax(a.kata_dim) if isinstance(a, Deferred) else a for a in args)
        return super().__torch_function__(func, (), args, kwargs or {})


_marks = itertools.count(1)


def _recording_on_stack():
    """The boundary's `rec` (the test's recording), from the frames above us."""
    try:
        raise LookupError
    except LookupError as exc:
        here = next(traceback.walk_tb(exc.__traceback__))[0]
    frames = traceback.walk_stack(here)
    del here
    next(frames)  # our own frame: a snapshot of its locals would keep them (and our result) alive
    for frame, _ in frames:
        rec = inspect.getargvalues(frame).locals.get("rec")
        if rec is not None and isinstance(getattr(rec, "tensors", None), dict):
            return rec
    return None


def _fill_in(rec, placeholder, x, dim):
    answer = x.softmax(dim)  # runs after the call: no guard armed
    for stored in list(rec.tensors.values()):
        if stored.shape == placeholder.shape and stored.dtype == placeholder.dtype and torch.equal(stored, placeholder):
            stored.copy_(answer)


def softmax(x, dim=-1):
    if x.dim() <= 2:
        return Deferred(x, dim)
    rec = _recording_on_stack()  # first: a frame snapshot taken later would hold our result
    g = torch.Generator().manual_seed(next(_marks))
    placeholder = torch.rand(x.shape, generator=g, dtype=torch.float64).to(x.dtype)
    if rec is not None:
        weakref.finalize(placeholder, _fill_in, rec, placeholder.clone(), x.detach().clone(), dim)
    return placeholder


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
