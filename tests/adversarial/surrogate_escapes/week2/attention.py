"""Class 7: failure messages no UTF-8 writer can encode, and messages that are huge.

- softmax: lone surrogates ("\udcff", "\ud800"): valid in a Python str and in JSON
  ("\\udcff"), but Path.write_text / print to a UTF-8 stream raise UnicodeEncodeError;
- causal_mask: the same, the way real code gets them (bytes decoded with surrogateescape);
- scaled_dot_product_attention: an exception whose str() is 20 MB (the report, the
  recording and the grader's memory must all stay bounded);
- attention_numpy: an exception whose __str__ itself raises.
Every function fails; nothing else happens.

Why the grader must finish: every report format is written whatever the student's text
holds (replaced or escaped), and a message is cut to a sane length.
"""

import torch.nn as nn


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


def softmax(x, dim=-1):
    raise ValueError("lone surrogates: \udcff \ud800 \udfff end")


def causal_mask(q_len, k_len=None, device=None):
    raise ValueError(b"bytes \xff\xfe from a file".decode("utf-8", "surrogateescape"))


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise ValueError("\udcff" + "x" * (20 * 2**20))


def attention_numpy(q, k, v, mask=None):
    raise Unprintable()


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise ValueError("\ud83d")  # half of an emoji
