"""Class 2: a module whose state is all zeros, judged by a reference that takes our state.

The hidden test builds the reference module from OUR weights:
    expected_module.load_state_dict(mha.state_dict())
With every parameter zero, the reference's output is exactly zero, and so is ours: we do
no attention at all. (state_dict() is returned as a plain dict, in case the grader refuses
dict subclasses such as the OrderedDict nn.Module returns.)

Why it must earn nothing: a test whose expected value comes from student state proves
nothing; the grader must not let student-chosen state into the reference.
"""

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


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()

    def state_dict(self, *args, **kwargs):
        return {k: v.clone() for k, v in super().state_dict(*args, **kwargs).items()}

    def forward(self, x, mask=None):
        return torch.zeros_like(x)  # what any attention module with zero weights returns
