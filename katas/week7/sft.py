"""Week 7 — supervised fine-tuning data.

SFT trains a causal LM on (prompt, response) pairs, but only the RESPONSE is graded: the
model should learn to answer, not to reproduce prompts. Three pieces:

1. `build_example` turns a pair into `input_ids` and `labels`, where prompt positions carry
   the label -100 (the `ignore_index` of `F.cross_entropy` and of Hugging Face models).
2. `sft_loss` is the causal-LM loss: the logits at position t predict the token at t + 1,
   so logits and labels are shifted by one against each other -- once, in the loss.
3. `pack` concatenates short examples into one row up to `max_len` (no compute wasted on
   padding) without letting one example see or predict another.

Convention (as Hugging Face): `labels` is ALIGNED with `input_ids` (labels[t] is either
input_ids[t] or -100). The shift happens in the loss, never in the data.

Must catch (the tests fail on each):
- prompt not masked (prompt tokens trained on);
- labels shifted twice (shifted in `build_example` and again in the loss);
- no shift in the loss (logits at t scored against the token at t);
- EOS missing (the model never learns to stop);
- packing that leaks attention across examples (a plain causal mask over the whole row);
- packing that leaks the loss (the last token of one example trained to predict the first
  token of the next);
- packed position ids that do not restart at 0 for each example.

Run time: `pytest katas/week7/test_sft.py` takes about 3 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def build_example(prompt_ids: list[int], response_ids: list[int], max_len: int,
                  eos_id: int) -> tuple[list[int], list[int]]:
    """Return (input_ids, labels), two lists of the same length <= max_len.

    Rule:
        input_ids = prompt_ids + response_ids + [eos_id]
        labels    = [-100] * len(prompt_ids) + response_ids + [eos_id]
    then both are truncated to their first `max_len` entries (the end is cut off; a cut
    example therefore has no EOS, since its response did not really end there).

    Worked example, prompt [5, 6, 7], response [8, 9], eos 2:
        max_len = 10 -> input_ids [5, 6, 7, 8, 9, 2], labels [-100, -100, -100, 8, 9, 2]
        max_len = 4  -> input_ids [5, 6, 7, 8],       labels [-100, -100, -100, 8]
    Labels are NOT shifted here (`sft_loss` shifts). Return plain Python lists of ints.
    """
    raise NotImplementedError


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM cross-entropy: logits[..., T, V] and labels[..., T] (aligned) -> scalar.

    The logits at position t predict labels[t + 1]: drop the last logit and the first
    label, then take the mean cross-entropy over every position whose (shifted) label is
    not -100, across the whole batch (a token-level mean, as Hugging Face models do):

        F.cross_entropy(logits[..., :-1, :] flattened, labels[..., 1:] flattened,
                        ignore_index=-100)

    Returns a 0-dim tensor in the logits' dtype.
    """
    raise NotImplementedError


def pack(examples: list[tuple[list[int], list[int]]], max_len: int) -> list[dict[str, torch.Tensor]]:
    """Pack (input_ids, labels) examples into rows of at most `max_len` tokens.

    Packing is greedy and keeps the order: walk the examples, appending each to the current
    row while the row's length stays <= max_len; when the next example does not fit, close
    the row and start a new one with it. An example is never split; one longer than
    `max_len` (or empty, or with len(input_ids) != len(labels)) raises ValueError.

    Each row is a dict of tensors, with L = the row's length (no padding):
        "input_ids":      int64 [L]    the examples' input_ids, concatenated
        "labels":         int64 [L]    their labels, concatenated, EXCEPT that the first
                                       label of every example is set to -100
        "position_ids":   int64 [L]    0, 1, 2, ... restarting at 0 for every example
        "attention_mask": bool [L, L]  True = query i may attend to key j: j <= i AND
                                       i, j belong to the same example (block-diagonal
                                       causal)

    Why the first label: with the shift in the loss, the logits at the last token of
    example k would be scored against the first token of example k + 1 -- a prediction the
    model cannot make without seeing across examples.

    Worked example, max_len = 8, eos 0:
        examples = [([1, 2, 3, 0], [-100, -100, 3, 0]),
                    ([5, 6, 0],    [5, 6, 0]),
                    ([7, 8, 9, 1, 2, 0], [-100, -100, -100, 1, 2, 0])]
        row 0: input_ids    [1, 2, 3, 0, 5, 6, 0]
               labels       [-100, -100, 3, 0, -100, 6, 0]
               position_ids [0, 1, 2, 3, 0, 1, 2]
               attention_mask: lower triangle of the 4x4 block and of the 3x3 block
        row 1: input_ids [7, 8, 9, 1, 2, 0] (it did not fit in row 0: 7 + 6 > 8), ...
    A model given input_ids, position_ids and attention_mask of a row then computes, at
    every position, exactly what it computes on that example alone.
    """
    raise NotImplementedError
