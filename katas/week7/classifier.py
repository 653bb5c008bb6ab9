"""Week 7 — a spam classifier from a pretrained tiny LM.

A causal LM reads left to right, so its LAST real token has seen the whole message: put a
linear "score" head on that token's hidden state and fine-tune, and the LM becomes a
classifier (GPT-2's `GPT2ForSequenceClassification`, Raschka's spam classifier). The
pieces, in the order the tests check them:

1. `pad_batch` makes a rectangular batch: ids plus an attention mask (1 = real token).
   Training pads on the right; batched generation pads on the left, and a classifier must
   give the same answer either way.
2. `position_ids_from_mask` numbers the real tokens 0, 1, 2, ... whatever the padding.
   Transformers' GPT-2 does NOT derive positions from the mask: under left padding it would
   number the pads 0..k-1 and shift every real token by k unless you pass position ids.
3. `last_token_pool` picks, per row, the hidden state at the rightmost position with mask 1.
4. `LMClassifier` = backbone (a transformers `GPT2Model`) + `score` head.
5. `freeze_for_finetuning_` trains only the top of the network, which is cheap and keeps
   the pretrained features.
6. `confusion_matrix` and `precision_recall_f1` say how good it is: accuracy alone hides a
   classifier that never says "spam" when 72% of messages are ham.

The data (`fixtures/corpus/spam.jsonl`, written by `fixtures/corpus/make_spam.py`): 600 text
messages, 400 train and 200 test, 28% spam (label 1), ham 0. The backbone is
`checkpoints/gpt2-tiny-trained`, whose `<|endoftext|>` (id 511) is bos, eos AND pad.

Must catch (the tests fail on each):
- pooling the last column under right padding, or `mask.sum() - 1` under left padding;
- no position ids under left padding (logits move by ~0.2 from the sequence alone);
- pooling by pad id (`input_ids != pad_id`) instead of by the mask: here pad = eos = 511;
- `wte`/`wpe` trainable or `ln_f` frozen;
- a confusion matrix transposed (rows must be the TRUE class);
- macro averages over the present classes only; micro as the mean of per-class F1.

Run time: `pytest katas/week7/test_classifier.py` takes about 10 s with a correct solution on
a 2-core laptop CPU (4 s of it importing transformers and loading the checkpoint, 1.5 s one
short fine-tuning run). Much longer means something in
your code is slow (see the hints); a test that runs past its limit fails with TIMEOUT,
naming your function, and the kata's other tests of that function are skipped.
"""

import torch
import torch.nn as nn


def pad_batch(sequences: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists to one length: (input_ids, attention_mask), both int64 [B, L].

    L is the longest sequence's length. `side="right"` puts the pads after the tokens,
    `side="left"` before them; the mask is 1 on real tokens and 0 on pads (int64, as
    Hugging Face tokenizers return it). Worked example, pad_id 0:

        pad_batch([[5, 6, 7], [8]], 0)          -> ids  [[5, 6, 7], [8, 0, 0]]
                                                   mask [[1, 1, 1], [1, 0, 0]]
        pad_batch([[5, 6, 7], [8]], 0, "left")  -> ids  [[5, 6, 7], [0, 0, 8]]
                                                   mask [[1, 1, 1], [0, 0, 1]]

    A sequence may contain pad_id itself (here eos = pad = 511): the mask, not the id,
    says what is padding. `ValueError` for a side other than "right"/"left", for no
    sequences, or for an empty sequence (it would have no last token to classify).
    """
    raise NotImplementedError


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a padded batch: int64, the shape of `mask` ([B, T], or any [..., T]).

    Real tokens (mask 1) count 0, 1, 2, ... from the first real token of their row; pads
    get 1 (any valid position works, since nothing attends to a pad; 1 is what
    transformers' `generate` writes: `mask.cumsum(-1) - 1`, then pads set to 1). Worked
    example:

        mask [[0, 0, 1, 1, 1],      -> [[1, 1, 0, 1, 2],
              [1, 1, 1, 0, 0]]           [0, 1, 2, 1, 1]]

    `mask` is int64 (1/0) or bool. A left-padded row must get the very positions the same
    tokens get alone; `torch.arange(T)` does not (and `cumsum - 1` alone gives pads -1,
    an invalid index into `wpe`).
    """
    raise NotImplementedError


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden[B, T, d], mask[B, T] -> Tensor[B, d]: each row's state at its last real token.

    "Last real token" = the RIGHTMOST position whose mask is 1, for either padding side
    (rows of one batch may even differ). Worked example:

        mask [[0, 0, 1, 1],     -> positions 3 and 2
              [1, 1, 1, 0]]

    Two tempting shortcuts are each right for one side only: `hidden[:, -1]` (the last
    column: a pad under right padding) and `mask.sum(-1) - 1` (the count of real tokens
    minus one: a pad or an early token under left padding). Use the mask, never
    `ids != pad_id`: in gpt2-tiny-trained pad = eos = 511, and a message that ends with eos
    would be pooled one token early. Keeps hidden's dtype and device; `mask` is int64 or bool,
    with at least one 1 per row.
    """
    raise NotImplementedError


class LMClassifier(nn.Module):
    """A pretrained GPT-2 body with a linear head on the last real token.

    Attributes (the tests read and load them by these names, as in transformers'
    `GPT2ForSequenceClassification`):
        backbone: the `transformers.GPT2Model` given (kept as it is, not copied)
        score:    nn.Linear(backbone.config.n_embd, n_classes, bias=False)

    `forward(input_ids[B, T], attention_mask[B, T]) -> logits[B, n_classes]`:
        hidden = backbone(input_ids=..., attention_mask=..., position_ids=...).last_hidden_state
        logits = score(last_token_pool(hidden, attention_mask))
    with `position_ids = position_ids_from_mask(attention_mask)`. Both are needed for
    padding to be invisible: the mask keeps real tokens from attending to pads (left
    padding), the position ids keep them at their own positions. The logits of a row then
    equal (to float rounding) the logits of that sequence alone, for either padding side.
    """

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def freeze_for_finetuning_(model: nn.Module, n_trainable_blocks: int) -> None:
    """Freeze everything except the top of an `LMClassifier`, in place (requires_grad).

    Trainable afterwards: the LAST `n_trainable_blocks` blocks of `model.backbone.h`, the
    final layer norm `model.backbone.ln_f`, and `model.score`. Everything else is frozen:
    the token and position embeddings `wte`/`wpe` and the lower blocks. ln_f trains because
    it sits between the trained blocks (or the frozen body) and the new head.

        3 blocks, n_trainable_blocks=1 -> h.2, ln_f, score train; wte, wpe, h.0, h.1 frozen
        n_trainable_blocks=0           -> only ln_f and score
        n_trainable_blocks=3           -> every block, ln_f, score (embeddings still frozen)

    Mind `blocks[-n:]` with n = 0: that is every block. `ValueError` unless
    0 <= n_trainable_blocks <= len(model.backbone.h). Returns None.
    """
    raise NotImplementedError


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts int64 [n_classes, n_classes]: entry [i, j] = how many samples of TRUE class i
    were PREDICTED as class j (rows true, columns predicted: sklearn's convention).

        y_true [0, 0, 1, 1, 1], y_pred [0, 1, 1, 1, 0], 2 classes -> [[1, 1],
                                                                      [1, 2]]
        (row 0: of the two true 0s, one predicted 0 and one 1; the transpose would read
        "one true 1 predicted 0" for the off-diagonal entry at [1, 0]: a different claim)

    y_true and y_pred are 1-D int64 tensors of one length (may be empty: all zeros); a label
    outside 0..n_classes-1 raises `ValueError`. Classes that never occur keep zero rows and
    columns.
    """
    raise NotImplementedError


def precision_recall_f1(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int,
                        average: str | None = None):
    """(precision, recall, f1) over the classes 0..n_classes-1.

    Per class c, from the confusion matrix: tp = [c, c], fp = column c minus tp (predicted
    c, truly another), fn = row c minus tp:
        precision = tp / (tp + fp),  recall = tp / (tp + fn),  f1 = 2 tp / (2 tp + fp + fn)
    and 0 wherever a denominator is 0 (sklearn's `zero_division=0`: no nan, no warning).

    average=None:    three float64 tensors [n_classes], one entry per class.
    average="macro": three Python floats: the UNWEIGHTED mean of the per-class values over
                     ALL n_classes classes -- a class that is never true nor predicted
                     counts, with 0 -- and f1 is the mean of the per-class f1s (not the
                     harmonic mean of the macro precision and recall).
    average="micro": three Python floats from the GLOBAL counts: sum tp, fp and fn over the
                     classes first, then the formulas (not the mean of per-class f1s).
                     With one label per sample this equals the accuracy.
    Anything else: `ValueError`.

    Worked example, 3 classes, y_true [0, 0, 0, 1], y_pred [0, 0, 1, 1] (class 2 absent):
        per class: precision [1, 0.5, 0], recall [2/3, 1, 0], f1 [0.8, 2/3, 0]
        macro f1 = (0.8 + 2/3 + 0) / 3 = 0.489  (over the 2 present classes: 0.733)
        micro f1 = 3/4 = 0.75                    (the mean of per-class f1s is macro's)
    """
    raise NotImplementedError
