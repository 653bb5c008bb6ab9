"""Class 3: results that are not plain values: lazy objects and builtin subclasses that lie.

- softmax returns an object that is not a tensor but says yes to everything: __eq__ is
  always True, __bool__ True, shape/dtype copied from x, and __array__ / __float__ compute
  the real answer with torch.softmax only when someone converts it (after the call, outside
  the guard);
- causal_mask returns a list subclass whose __eq__/__ne__ always agree;
- scaled_dot_product_attention returns a float subclass equal to everything;
- attention_numpy returns an ndarray subclass whose comparisons always say "equal".

Why it must earn nothing: results must be judged as plain data (a tensor, an array, a
number), never through methods the student defined, and never computed after the guard.
"""

import numpy as np
import torch
import torch.nn as nn

class Yes:
    def __init__(self, x, dim):
        self._x, self._dim = x.detach().clone(), dim
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device

    def __eq__(self, other):
        return True

    __ne__ = lambda self, other: False  # noqa: E731
    __hash__ = object.__hash__

    def __bool__(self):
        return True

    def __array__(self, dtype=None, copy=None):
        return self._x.softmax(self._dim).numpy()  # Tensor.softmax, after the call

    def __float__(self):
        return float(self._x.softmax(self._dim).sum())

    def __getattr__(self, name):  # .all(), .isfinite(), .detach(), ... all say yes
        return lambda *a, **k: self


class AgreeingList(list):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = None


class AgreeingFloat(float):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = float.__hash__


class AgreeingArray(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.broadcast_shapes(self.shape, np.shape(other)), dtype=bool)

    def __ne__(self, other):
        return np.zeros(np.broadcast_shapes(self.shape, np.shape(other)), dtype=bool)

    def __array_function__(self, func, types, args, kwargs):  # allclose, array_equal, ... agree
        return True if func.__name__ in ("allclose", "array_equal", "array_equiv", "isclose") else \
            super().__array_function__(func, types, args, kwargs)

    __hash__ = None


def softmax(x, dim=-1):
    return Yes(x, dim)


def causal_mask(q_len, k_len=None, device=None):
    return AgreeingList([[True] * (k_len or q_len)] * q_len)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    return AgreeingFloat(0.0)


def attention_numpy(q, k, v, mask=None):
    return np.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype).view(AgreeingArray)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
