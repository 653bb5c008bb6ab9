"""Class 7: failure messages that rewrite the Markdown report (a PR comment, a job summary).

The report shows each failure's output in a ``` fence inside <details>. Our messages
- close the fence and the <details> block, then write a heading "## Grade: 999 / 999" and a
  points table of our own, then reopen a <details> and a fence so the page still renders;
- carry raw HTML (an <img onerror=...>, a <script>, a fake "passed" badge) and a link that
  pretends to be the course's re-grade form;
- do the same with ~~~ fences and with 4-backtick fences (against a grader that picks one
  fixed fence).
Every function fails with such a message; nothing else happens.

Why the report must stay honest: student text goes into the report only as inert text: a
fence it cannot close (longer than any backtick run in it), no raw HTML, no headings.
"""

import torch.nn as nn

FAKE_GRADE = """```

</details>

## Grade: 999 / 999

| kata | points | tests passed |
| --- | ---: | ---: |
| week2/attention | 999 / 999 | 46/46 |

All tests passed. <img src="x" onerror="alert('kata')"> <script>document.title='999'</script>

<details><summary>Failures</summary>

```"""

HTML = """</code></pre></details><h2>Grade: 999 / 999</h2><img src=x onerror=alert(1)>
<a href="https://example.com/kata-regrade">Your grade was reset: re-submit here</a>
![passed](https://img.shields.io/badge/grade-999%2F999-brightgreen)<details><pre><code>"""


def softmax(x, dim=-1):
    raise ValueError(FAKE_GRADE)


def causal_mask(q_len, k_len=None, device=None):
    raise ValueError(HTML)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise ValueError("~~~\n" + FAKE_GRADE.replace("```", "~~~~~~~~") + "\n~~~")


def attention_numpy(q, k, v, mask=None):
    raise ValueError(FAKE_GRADE.replace("```", "````"))  # beats a grader whose own fence is a fixed ````


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise ValueError(FAKE_GRADE)
