"""Public tests for week7/classifier.

Oracles: transformers' `GPT2ForSequenceClassification` on the same `gpt2-tiny-trained`
weights with the same score head (given position ids; its pad id 0 never occurs in text,
so it pools the last real token of a batch padded with 0), and each sequence run alone;
sklearn's `confusion_matrix` and `precision_recall_fscore_support(labels=range(n),
zero_division=0)`; the documented rules, computed here. The last test fine-tunes your
classifier on the spam data (`fixtures/corpus/spam.jsonl`) and holds it to a measured bar.
"""

import copy
import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, strategies as st

from graders import check, in_one_crossing, oracle, student, unwrap
from graders.testing import FLOAT32_REDUCTION, hinted, mistake_shown, randn

classifier = student("week7.classifier")

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "gpt2-tiny-trained"
SPAM = ROOT / "fixtures" / "corpus" / "spam.jsonl"
EOS = 511  # gpt2-tiny-trained's <|endoftext|>: bos, eos and pad


@functools.cache
def _pretrained():
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2Model.from_pretrained(CHECKPOINT).eval()


def load_backbone():
    """A fresh copy of the pretrained GPT-2 body (student code may change it)."""
    return copy.deepcopy(_pretrained())


@functools.cache
def spam_data():
    """{"train": (token lists, labels), "test": (...)}: the messages tokenized with the course tokenizer."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(CHECKPOINT / "tokenizer.json"))
    rows = [json.loads(line) for line in SPAM.read_text(encoding="utf-8").splitlines()]
    return {split: ([tokenizer(r["text"])["input_ids"] for r in rows if r["split"] == split],
                    [r["label"] for r in rows if r["split"] == split])
            for split in ("train", "test")}


def messages(indices, eos=False):
    """Some test-split messages as token lists (each ending with eos if asked)."""
    tokens = spam_data()["test"][0]
    return [tokens[i] + [EOS] * eos for i in indices]


def padded(sequences, pad_id, side):
    """The test's own padding: (ids, mask), int64 [B, L]."""
    L = max(map(len, sequences))
    ids = torch.full((len(sequences), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), L, dtype=torch.long)
    for row, seq in enumerate(sequences):
        start = 0 if side == "right" else L - len(seq)
        ids[row, start:start + len(seq)] = torch.tensor(seq)
        mask[row, start:start + len(seq)] = 1
    return ids, mask


def padding_rule(sequences, pad_id, side):
    """What pad_batch should return (only through oracle(...))."""
    return padded(sequences, pad_id, side)


def positions(mask):
    """mask.cumsum(-1) - 1 with pads at 1 (the rule, written here)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


def score_weight(n_classes, seed):
    return randn(n_classes, 96, seed=seed, scale=0.3)


# --- pad_batch -----------------------------------------------------------------------------


@pytest.mark.points(1)
def test_pad_batch_right_worked_example():
    ids, mask = classifier.pad_batch([[5, 6, 7], [8]], 0)
    check.equal(ids, torch.tensor([[5, 6, 7], [8, 0, 0]]), what="ids (side='right', the default)", hint="pad_side")
    check.equal(mask, torch.tensor([[1, 1, 1], [1, 0, 0]]), what="mask (side='right', the default)", hint="pad_side")


@pytest.mark.points(1)
def test_pad_batch_left_worked_example():
    ids, mask = classifier.pad_batch([[5, 6, 7], [8]], 0, "left")
    check.equal(ids, torch.tensor([[5, 6, 7], [0, 0, 8]]), what="ids (side='left')", hint="pad_side")
    check.equal(mask, torch.tensor([[1, 1, 1], [0, 0, 1]]), what="mask (side='left')", hint="pad_side")


@pytest.mark.points(2)
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5), side=st.sampled_from(["right", "left"]),
       seed=st.integers(0, 1000))
def test_pad_batch_pads_with_the_mask_not_the_id(lengths, side, seed):
    # the sequences contain pad_id (= eos = 511) themselves: only the mask tells pads apart
    g = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(509, 512, (n,), generator=g).tolist() for n in lengths]
    ids, mask = classifier.pad_batch(sequences, EOS, side=side)
    want = oracle(padding_rule, sequences, EOS, side)
    check.equal(ids, want[0], what=f"ids (side={side!r})", hint="pad_side")
    check.equal(mask, want[1], what=f"mask (side={side!r})", hint="pad_side")


@pytest.mark.points(1)
@pytest.mark.parametrize("sequences,side", [([[1, 2]], "center"), ([], "right"), ([[1, 2], []], "left")],
                         ids=["bad-side", "no-sequences", "empty-sequence"])
def test_pad_batch_rejects_bad_input(sequences, side):
    with check.raises(ValueError, hint="pad_validation"):
        classifier.pad_batch(sequences, 0, side)


# --- position_ids_from_mask ----------------------------------------------------------------


@pytest.mark.points(1)
def test_position_ids_worked_example():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    check.equal(classifier.position_ids_from_mask(mask), torch.tensor([[1, 1, 0, 1, 2], [0, 1, 2, 1, 1]]),
                hint="position_ids_rule")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.long, torch.bool], ids=["int64", "bool"])
def test_position_ids_count_real_tokens_from_zero(dtype):
    # rows padded left, right, both at once, and not at all; a 3-D batch of them
    lengths = [(3, 4, 0), (0, 5, 2), (2, 3, 2), (0, 7, 0)]
    mask = torch.tensor([[0] * a + [1] * b + [0] * c for a, b, c in lengths]).to(dtype)
    for m in (mask, mask.view(2, 2, 7)):
        check.equal(classifier.position_ids_from_mask(m), positions(m), hint="position_ids_rule",
                    what=f"position ids of a {dtype} mask of shape {list(m.shape)}")


# --- last_token_pool -----------------------------------------------------------------------


def pool_mistake(out, hidden, mask):
    """The pooling mistake `out` shows, or None (called only through oracle(...))."""
    rows = torch.arange(hidden.shape[0])
    return mistake_shown(out, {"pool_last_column": [hidden[:, -1]],
                               "pool_mask_sum": [hidden[rows, mask.long().sum(-1) - 1]]})


def pooled(hidden, mask):
    """hidden at each row's rightmost mask-1 position (the rule, written here)."""
    last = [max(i for i, m in enumerate(row) if m) for row in mask.tolist()]
    return hidden[torch.arange(hidden.shape[0]), torch.tensor(last)]


@pytest.mark.points(1)
def test_last_token_pool_worked_example():
    hidden = randn(2, 4, 3, seed=1)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    out = classifier.last_token_pool(hidden, mask)
    check.close(out, hidden[[0, 1], [3, 2]], hint=oracle(pool_mistake, out, hidden, mask))


@pytest.mark.points(2)
@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_pool_for_either_side(side):
    lengths = [3, 7, 1, 5, 7]
    _, mask = padded([[1] * n for n in lengths], 0, side)
    hidden = randn(5, 7, 6, seed=2)
    out = classifier.last_token_pool(hidden, mask)
    check.close(out, pooled(hidden, mask), hint=oracle(pool_mistake, out, hidden, mask),
                what=f"pooled states ({side} padding)")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["float64", "bfloat16"])
def test_last_token_pool_keeps_dtype_and_takes_bool_masks(dtype):
    _, mask = padded([[1] * n for n in (2, 5, 4)], 0, "left")
    hidden = randn(3, 5, 4, seed=3, dtype=dtype)
    out = classifier.last_token_pool(hidden, mask.bool())
    check.close(out, pooled(hidden, mask), hint=oracle(pool_mistake, out, hidden, mask),
                what=f"pooled {dtype} states with a bool mask")


# --- LMClassifier --------------------------------------------------------------------------


def _head_facts(n_classes):
    backbone = load_backbone()
    model = unwrap(classifier.LMClassifier)(backbone, n_classes)
    score = getattr(model, "score", None)
    return {"backbone_kept": getattr(model, "backbone", None) is backbone,
            "score": type(score).__name__,
            "shape": list(score.weight.shape) if isinstance(score, nn.Linear) else None,
            "bias": isinstance(score, nn.Linear) and score.bias is not None}


@pytest.mark.points(1)
@pytest.mark.parametrize("n_classes", [2, 5])
def test_classifier_has_backbone_and_a_bias_free_score_head(n_classes):
    facts = in_one_crossing(classifier, _head_facts, n_classes)
    check.that(facts["backbone_kept"], "model.backbone should be the GPT2Model given (not a copy)")
    check.equal(facts["score"], "Linear", what="type of model.score")
    check.equal(facts["shape"], [n_classes, 96], what="model.score.weight.shape ([n_classes, n_embd])")
    check.that(not facts["bias"], "model.score has no bias (nn.Linear(n_embd, n_classes, bias=False), "
               "as GPT2ForSequenceClassification)")


def hidden_states(ids, mask, position_ids):
    """The pretrained body's last hidden states (only through the oracles below)."""
    with torch.no_grad():
        return _pretrained()(input_ids=ids, attention_mask=mask, position_ids=position_ids).last_hidden_state


def classifier_mistake(out, ids, mask, weight, pad_id):
    """The mistake whose logits `out` reproduces, or None (called only through oracle(...))."""
    rows, T = torch.arange(ids.shape[0]), ids.shape[1]
    last = (torch.arange(T) * mask).argmax(-1)
    good = hidden_states(ids, mask, positions(mask))
    return mistake_shown(out, {
        "pool_last_column": [good[:, -1] @ weight.T],
        "pool_mask_sum": [good[rows, mask.sum(-1) - 1] @ weight.T],
        "pool_by_pad_id": [good[rows, (torch.arange(T) * (ids != pad_id)).argmax(-1)] @ weight.T],
        "no_position_ids": [hidden_states(ids, mask, None)[rows, last] @ weight.T],
        "mask_not_passed": [hidden_states(ids, None, positions(mask))[rows, last] @ weight.T],
    })


@functools.cache
def _hf_classifier(n_classes):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2ForSequenceClassification.from_pretrained(
        CHECKPOINT, num_labels=n_classes, pad_token_id=0).eval()


def hf_logits(ids, mask, weight):
    """GPT2ForSequenceClassification with the same head (only through oracle(...))."""
    model = _hf_classifier(weight.shape[0])
    with torch.no_grad():
        model.score.weight.copy_(weight)
        return model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits


def logits_alone(sequences, weight):
    """Each sequence run alone, no padding at all (only through oracle(...))."""
    return torch.cat([hf_logits(torch.tensor([seq]), torch.ones(1, len(seq), dtype=torch.long), weight)
                      for seq in sequences])


@pytest.mark.points(3)
@pytest.mark.parametrize("side", ["right", "left"])
def test_classifier_matches_transformers(side):
    """Padded with 0 (never in text), which GPT2ForSequenceClassification(pad_token_id=0) pools by;
    measured difference 0.0 for both sides."""
    ids, mask = padded(messages([0, 1, 2, 3, 4, 5]), 0, side)
    weight = score_weight(2, seed=10)
    expected = oracle(hf_logits, ids, mask, weight)
    model = classifier.LMClassifier(load_backbone(), 2)
    model.score.load_state_dict({"weight": weight})
    out = model(ids, mask)
    check.close(out, expected, **FLOAT32_REDUCTION, what=f"logits ({side} padding)",
                hint=oracle(classifier_mistake, out, ids, mask, weight, 0))


@pytest.mark.points(3)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_with_eos_is_invisible(side):
    """Messages ending with eos, padded with eos (= pad = 511): each row's logits are the
    sequence's logits alone (measured 2-4e-7 apart), whichever side is padded."""
    sequences = messages([6, 7, 8, 9, 10], eos=True)
    ids, mask = padded(sequences, EOS, side)
    weight = score_weight(3, seed=11)
    expected = oracle(logits_alone, sequences, weight)
    model = classifier.LMClassifier(load_backbone(), 3)
    model.score.load_state_dict({"weight": weight})
    out = model(ids, mask)
    check.close(out, expected, **FLOAT32_REDUCTION, what=f"logits of eos-padded rows ({side} padding) vs alone",
                hint=oracle(classifier_mistake, out, ids, mask, weight, EOS))


# --- freeze_for_finetuning_ ----------------------------------------------------------------


class Holder(nn.Module):
    """What freeze_for_finetuning_ needs of a model: `backbone` (GPT2Model) and `score`."""

    def __init__(self, n_classes=2):
        super().__init__()
        self.backbone = load_backbone()
        self.score = nn.Linear(96, n_classes, bias=False)


def _trainable_after_freeze(n_trainable_blocks):
    model = Holder()
    unwrap(classifier.freeze_for_finetuning_)(model, n_trainable_blocks)
    return sorted(name for name, p in model.named_parameters() if p.requires_grad)


def trainable_names(n_trainable_blocks, first=False, zero_means_all=False, ln_f=True, embeddings=False):
    """The parameter names a freeze rule leaves trainable (only through oracle(...))."""
    names = [name for name, _ in Holder().named_parameters()]
    n_blocks = 3
    blocks = range(n_blocks) if zero_means_all and n_trainable_blocks == 0 else (
        range(n_trainable_blocks) if first else range(n_blocks - n_trainable_blocks, n_blocks))
    keep = [f"backbone.h.{i}." for i in blocks] + ["score."] + ["backbone.ln_f."] * ln_f
    keep += ["backbone.wte.", "backbone.wpe."] * embeddings
    return sorted(n for n in names if any(n.startswith(k) for k in keep))


def freeze_mistake(got, n):
    """Which freezing mistake `got` (trainable names) shows (only through oracle(...))."""
    if any(name.startswith(("backbone.wte.", "backbone.wpe.")) for name in got):
        return "embeddings_trainable"
    if not any(name.startswith("backbone.ln_f.") for name in got):
        return "ln_f_frozen"
    return mistake_shown(got, {"zero_blocks": [trainable_names(n, zero_means_all=True)],
                               "wrong_blocks": [trainable_names(n, first=True)]})


@pytest.mark.points(2)
@pytest.mark.parametrize("n", [1, 0, 2, 3])
def test_freeze_trains_the_last_blocks_ln_f_and_score(n):
    got = in_one_crossing(classifier, _trainable_after_freeze, n)
    check.equal(got, oracle(trainable_names, n), what=f"trainable parameters after freeze_for_finetuning_(model, {n})",
                hint=oracle(freeze_mistake, got, n))


@pytest.mark.points(1)
@pytest.mark.parametrize("n", [-1, 4])
def test_freeze_rejects_a_block_count_out_of_range(n):
    with check.raises(ValueError, hint="freeze_validation"):
        classifier.freeze_for_finetuning_(Holder(), n)


# --- metrics -------------------------------------------------------------------------------


def sk_confusion(y_true, y_pred, n):
    from sklearn.metrics import confusion_matrix
    return torch.from_numpy(confusion_matrix(y_true.numpy(), y_pred.numpy(), labels=list(range(n)))).long()


def sk_prf(y_true, y_pred, n, average):
    """sklearn's precision, recall, f1 (only through oracle(...))."""
    return sklearn_scores(y_true, y_pred, n, average)


def sklearn_scores(y_true, y_pred, n, average):
    """sklearn's precision, recall, f1 (tensors per class; floats when averaged)."""
    from sklearn.metrics import precision_recall_fscore_support
    p, r, f, _ = precision_recall_fscore_support(y_true.numpy(), y_pred.numpy(), labels=list(range(n)),
                                                 average=average, zero_division=0)
    if average is None:
        return torch.from_numpy(p).double(), torch.from_numpy(r).double(), torch.from_numpy(f).double()
    return float(p), float(r), float(f)


def transposed_or_none(out, y_true, y_pred, n):
    return mistake_shown(out, {"confusion_transposed": [sk_confusion(y_true, y_pred, n).T]})


def labels(n_samples, n_classes, seed):
    return torch.randint(0, n_classes, (n_samples,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.points(1)
def test_confusion_matrix_worked_example():
    y_true, y_pred = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 1, 1, 1, 0])
    out = classifier.confusion_matrix(y_true, y_pred, 2)
    check.equal(out, torch.tensor([[1, 1], [1, 2]]), hint=oracle(transposed_or_none, out, y_true, y_pred, 2))
    empty = torch.tensor([], dtype=torch.long)
    check.equal(classifier.confusion_matrix(empty, empty, 3), torch.zeros(3, 3, dtype=torch.long),
                what="confusion matrix of no samples")


@pytest.mark.points(2)
@pytest.mark.parametrize("n_samples,n_classes", [(40, 3), (25, 5), (12, 2)])
def test_confusion_matrix_matches_sklearn(n_samples, n_classes):
    # class n_classes - 1 never occurs (labels drawn below it): its row and column stay 0
    y_true, y_pred = labels(n_samples, n_classes - 1, seed=20), labels(n_samples, n_classes - 1, seed=21)
    out = classifier.confusion_matrix(y_true, y_pred, n_classes)
    check.equal(out, oracle(sk_confusion, y_true, y_pred, n_classes),
                hint=oracle(transposed_or_none, out, y_true, y_pred, n_classes))


@pytest.mark.points(1)
@pytest.mark.parametrize("y_true,y_pred", [([0, 1, 2], [0, 1, 1]), ([0, 1, 1], [0, 3, 1]), ([0, -1], [0, 0])],
                         ids=["true-too-big", "pred-too-big", "negative"])
def test_confusion_matrix_rejects_labels_out_of_range(y_true, y_pred):
    # a label of 2 or more lands in bincount's bins past n * n: a mistake may raise another error
    with check.raises(ValueError, hint="label_range"):
        hinted("label_range", classifier.confusion_matrix, torch.tensor(y_true), torch.tensor(y_pred), 2)


@pytest.mark.points(1)
def test_per_class_scores_are_float64_tensors_and_averages_floats():
    y_true, y_pred = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1])
    per_class = classifier.precision_recall_f1(y_true, y_pred, 3)
    kinds = [(type(v).__name__, str(getattr(v, "dtype", "")), list(getattr(v, "shape", []))) for v in per_class]
    check.equal(kinds, [("Tensor", "torch.float64", [3])] * 3, hint="metric_types",
                what="(type, dtype, shape) of precision, recall, f1 with average=None")
    for average in ("macro", "micro"):
        scores = classifier.precision_recall_f1(y_true, y_pred, 3, average=average)
        kinds = [type(v).__name__ for v in scores]
        check.equal(kinds, ["float"] * 3, hint="metric_types", what=f"types of the three {average} scores")


def nan_or(out, hint):
    """"zero_division" if any score is nan, else `hint` (only through oracle(...))."""
    values = torch.cat([torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in out])
    return "zero_division" if bool(values.isnan().any()) else hint


@pytest.mark.points(2)
def test_per_class_scores_match_sklearn_with_zero_division():
    # class 2 is never predicted (precision 0/0) and class 3 never true nor predicted (all 0/0)
    y_true = torch.tensor([0, 1, 2, 2, 0, 1, 1, 2, 0, 0])
    y_pred = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1, 1, 0])
    out = classifier.precision_recall_f1(y_true, y_pred, 4)
    want = oracle(sk_prf, y_true, y_pred, 4, None)
    for i, name in enumerate(("precision", "recall", "f1")):
        check.close(out[i], want[i], what=f"per-class {name}", hint=oracle(nan_or, out, None))


def macro_variants(y_true, y_pred, n):
    """What the macro mistakes return (only through oracle(...))."""
    p, r, f = sklearn_scores(y_true, y_pred, n, None)
    present = torch.zeros(n, dtype=torch.bool)
    present[y_true] = True
    present[y_pred] = True
    means = p.mean().item(), r.mean().item()
    return {"macro_present_only": [(p[present].mean().item(), r[present].mean().item(), f[present].mean().item())],
            "macro_f1_of_means": [(means[0], means[1], 2 * means[0] * means[1] / (means[0] + means[1]))]}


def macro_mistake(out, y_true, y_pred, n):
    return mistake_shown(tuple(out), macro_variants(y_true, y_pred, n)) or nan_or(out, None)


@pytest.mark.points(2)
def test_macro_averages_over_all_classes():
    """The docstring's worked example: class 2 is never true nor predicted and counts with 0."""
    y_true, y_pred = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1])
    out = classifier.precision_recall_f1(y_true, y_pred, 3, average="macro")
    want = oracle(sk_prf, y_true, y_pred, 3, "macro")
    for i, name in enumerate(("precision", "recall", "f1")):
        check.close(out[i], want[i], what=f"macro {name}", hint=oracle(macro_mistake, out, y_true, y_pred, 3))


def micro_mistake(out, y_true, y_pred, n):
    return mistake_shown(tuple(out), {"micro_mean_of_f1": [sklearn_scores(y_true, y_pred, n, "macro")]})


@pytest.mark.points(2)
def test_micro_uses_global_counts():
    y_true, y_pred = labels(30, 3, seed=30), labels(30, 3, seed=31)
    out = classifier.precision_recall_f1(y_true, y_pred, 3, average="micro")
    want = oracle(sk_prf, y_true, y_pred, 3, "micro")
    for i, name in enumerate(("precision", "recall", "f1")):
        check.close(out[i], want[i], what=f"micro {name}", hint=oracle(micro_mistake, out, y_true, y_pred, 3))


@pytest.mark.points(1)
def test_unknown_average_raises():
    with check.raises(ValueError):
        classifier.precision_recall_f1(torch.tensor([0, 1]), torch.tensor([0, 1]), 2, average="weighted")


@pytest.mark.points(2)
@given(n_classes=st.integers(2, 5), n_samples=st.integers(1, 30), seed=st.integers(0, 10_000),
       average=st.sampled_from([None, "macro", "micro"]))
def test_scores_match_sklearn_on_random_labels(n_classes, n_samples, seed, average):
    y_true, y_pred = labels(n_samples, n_classes, seed), labels(n_samples, n_classes, seed + 1)
    out = classifier.precision_recall_f1(y_true, y_pred, n_classes, average=average)
    want = oracle(sk_prf, y_true, y_pred, n_classes, average)
    for i, name in enumerate(("precision", "recall", "f1")):
        check.close(out[i], want[i], what=f"{name} (average={average!r})")


# --- fine-tuning ---------------------------------------------------------------------------

FROZEN = ("backbone.wte.", "backbone.wpe.", "backbone.h.0.", "backbone.h.1.")


def _finetune(train, test, seed, epochs, lr, train_side, test_side):
    """Fine-tune the student's LMClassifier with the student's freezing, the test's own padding and
    loop; return test predictions and the parameters that must not move."""
    torch.manual_seed(seed)
    model = unwrap(classifier.LMClassifier)(load_backbone(), 2)
    with torch.no_grad():
        model.score.weight.zero_()  # the same start for every implementation
    unwrap(classifier.freeze_for_finetuning_)(model, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    (x_train, y_train), (x_test, _) = train, test
    y_train = torch.tensor(y_train)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=g).tolist()
        for i in range(0, len(order), 16):
            batch = order[i:i + 16]
            ids, mask = padded([x_train[j] for j in batch], EOS, train_side)
            loss = F.cross_entropy(model(ids, mask), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        ids, mask = padded(x_test, EOS, test_side)
        predictions = model(ids, mask).argmax(-1).tolist()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if name.startswith(FROZEN)}
    return {"predictions": predictions, "frozen": frozen}


def pretrained_parameter(name):
    """The checkpoint's value of `backbone.<name>` (only through oracle(...))."""
    return dict(_pretrained().named_parameters())[name.removeprefix("backbone.")].detach().clone()


def accuracy(predictions, labels):
    """The fraction of right predictions (only through oracle(...))."""
    return sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


@pytest.mark.points(4)
def test_finetuned_classifier_beats_the_bar():
    """n_trainable_blocks=1, score head from zero, AdamW lr 2e-3, batch 16, ONE epoch on the 400
    right-padded training messages, then the 200 test messages left-padded. Measured with the
    reference over 10 seeds: test accuracy 0.965-0.995 (1.2-2.3 s on a busy 2-core machine);
    floor 0.95 (the catalogue's bar, measured there at 3 epochs, lr 1e-3: 1.000). Pooling or
    positions wrong under left padding score far lower; frozen parameters must not move at all."""
    data = spam_data()
    got = in_one_crossing(classifier, _finetune, data["train"], data["test"], 0, 1, 2e-3, "right", "left")
    for name in sorted(got["frozen"]):
        check.equal(got["frozen"][name], oracle(pretrained_parameter, name), hint="embeddings_trainable",
                    what=f"{name} after fine-tuning (frozen: bitwise unchanged)")
    acc = oracle(accuracy, got["predictions"], data["test"][1])
    check.that(acc >= 0.95, f"test accuracy after fine-tuning is {acc:.3f}; the bar is 0.95 "
               "(the reference scores 0.965-0.995 over 10 seeds)")
