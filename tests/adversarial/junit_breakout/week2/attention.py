"""Class 7: failure messages that break out of the JUnit XML and the terminal.

- softmax: `]]></failure></testcase><testcase classname="week2/attention"
  name="injected_pass"/>...` (a CDATA end, then tags: a report that pastes text into XML
  unescaped, or inside CDATA, gains a passing test);
- causal_mask: ANSI escapes (clear screen, green "ALL TESTS PASSED 999/999", cursor up to
  overwrite earlier lines), a carriage return, and rich markup "[bold green]...[/]";
- scaled_dot_product_attention: characters XML 1.0 does not allow at all (NUL, ESC, \x0b),
  which make a naively escaped report unparsable;
- attention_numpy: one 2 MB line.
Every function fails with such a message; nothing else happens.

Why the report must stay honest: every format must parse and show student text as text:
no extra test cases, no control characters, no markup interpreted.
"""

import torch.nn as nn

XML = ('</failure></testcase>]]></failure></testcase>'
       '<testcase classname="week2/attention" name="injected_pass"/>'
       '<testcase classname="week2/attention" name="more"><failure message="')
TERMINAL = ("\x1b[2J\x1b[H\x1b[1;32mALL TESTS PASSED 999/999\x1b[0m\r\x1b[1A\x1b[2K"
            "[bold green]week2/attention 999 / 999[/bold green] [link=https://example.com]details[/link]")
ILLEGAL_XML = "nul:\x00 esc:\x1b vt:\x0b ff:\x0c del:\x7f bom:\ufeff nonchar:\uffff"


def softmax(x, dim=-1):
    raise ValueError(XML)


def causal_mask(q_len, k_len=None, device=None):
    raise ValueError(TERMINAL)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise ValueError(ILLEGAL_XML)


def attention_numpy(q, k, v, mask=None):
    raise ValueError("A" * (2 * 2**20))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise ValueError(XML + TERMINAL + ILLEGAL_XML)
