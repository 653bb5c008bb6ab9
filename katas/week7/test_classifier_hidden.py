"""Hidden tests for week7/classifier: fresh seeded inputs, expected values from the reference,
and a second fine-tuning run (trained left-padded, tested right-padded)."""

import pytest
import torch
import torch.nn.functional as F

from graders import check, in_one_crossing, oracle, reference, student, unwrap
from graders.testing import FLOAT32_REDUCTION, randn

from .test_classifier import EOS, accuracy, load_backbone, padded, spam_data

pytestmark = pytest.mark.hidden

classifier = student("week7.classifier")
model = reference("week7.classifier")



def random_sequences(n, seed, max_len=12, vocab=(1, 512)):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g).tolist()
    return [torch.randint(*vocab, (k,), generator=g).tolist() for k in lengths]


@pytest.mark.points(2)
@pytest.mark.parametrize("side,seed", [("right", 40), ("left", 41)])
def test_pad_batch_and_positions_on_fresh_sequences(side, seed):
    sequences = random_sequences(7, seed, vocab=(509, 512))
    ids, mask = classifier.pad_batch(sequences, EOS, side)
    want = model.pad_batch(sequences, EOS, side)
    check.equal(ids, want[0], hint="pad_side", what=f"ids ({side})")
    check.equal(mask, want[1], hint="pad_side", what=f"mask ({side})")
    mixed = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    for m in (mixed, mixed.bool()):
        check.equal(classifier.position_ids_from_mask(m), model.position_ids_from_mask(m), hint="position_ids_rule",
                    what=f"position ids of a {m.dtype} mask with pads on both sides")


@pytest.mark.points(2)
def test_last_token_pool_on_rows_padded_differently():
    # each row has its own left and right padding
    g = torch.Generator().manual_seed(42)
    rows = []
    for _ in range(6):
        left, real = int(torch.randint(0, 4, (), generator=g)), int(torch.randint(1, 5, (), generator=g))
        rows.append([0] * left + [1] * real + [0] * (8 - left - real))
    mask = torch.tensor(rows)
    hidden = randn(6, 8, 5, seed=43, dtype=torch.float64)
    check.close(classifier.last_token_pool(hidden, mask), model.last_token_pool(hidden, mask),
                what="pooled states of rows with pads on both sides")


@pytest.mark.points(2)
@pytest.mark.parametrize("side", ["right", "left"])
def test_classifier_on_fresh_token_ids(side):
    """Random ids (eos among them) padded with eos: the student's model against the reference's,
    both with the test's score weights."""
    sequences = random_sequences(6, 44 if side == "right" else 45, max_len=20)
    ids, mask = padded(sequences, EOS, side)
    weight = randn(4, 96, seed=46, scale=0.3)
    mine = classifier.LMClassifier(load_backbone(), 4)
    mine.score.load_state_dict({"weight": weight})
    theirs = model.LMClassifier(load_backbone(), 4)
    theirs.score.load_state_dict({"weight": weight})
    check.close(mine(ids, mask), theirs(ids, mask), **FLOAT32_REDUCTION, what=f"logits ({side} padding)")


@pytest.mark.points(2)
@pytest.mark.parametrize("n_classes,seed", [(2, 50), (4, 51), (6, 52)])
def test_metrics_on_fresh_labels(n_classes, seed):
    g = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, n_classes - 1, (50,), generator=g)  # the last class never true
    y_pred = torch.randint(0, n_classes, (50,), generator=g)
    check.equal(classifier.confusion_matrix(y_true, y_pred, n_classes), model.confusion_matrix(y_true, y_pred, n_classes),
                hint="confusion_transposed")
    for average in (None, "macro", "micro"):
        got = classifier.precision_recall_f1(y_true, y_pred, n_classes, average=average)
        want = model.precision_recall_f1(y_true, y_pred, n_classes, average=average)
        for i, name in enumerate(("precision", "recall", "f1")):
            check.close(got[i], want[i], what=f"{name} (average={average!r})")


def _finetune_left_padded(train, test, seed):
    """One epoch, left-padded training batches; predictions on the right-padded test set."""
    torch.manual_seed(seed)
    net = unwrap(classifier.LMClassifier)(load_backbone(), 2)
    with torch.no_grad():
        net.score.weight.zero_()
    unwrap(classifier.freeze_for_finetuning_)(net, 1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    (x_train, y_train), (x_test, _) = train, test
    y_train = torch.tensor(y_train)
    g = torch.Generator().manual_seed(seed)
    net.train()
    order = torch.randperm(len(x_train), generator=g).tolist()
    for i in range(0, len(order), 16):
        batch = order[i:i + 16]
        ids, mask = padded([x_train[j] for j in batch], EOS, "left")
        loss = F.cross_entropy(net(ids, mask), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        ids, mask = padded(x_test, EOS, "right")
        return net(ids, mask).argmax(-1).tolist()


@pytest.mark.points(3)
def test_finetuned_on_left_padded_batches_beats_the_bar():
    """The public run mirrored: trained on left-padded batches, tested right-padded (seed 12).
    Measured with the reference over seeds 10-19: 0.965-1.000 -> floor 0.95."""
    data = spam_data()
    predictions = in_one_crossing(classifier, _finetune_left_padded, data["train"], data["test"], 12)
    acc = oracle(accuracy, predictions, data["test"][1])
    check.that(acc >= 0.95, f"test accuracy after fine-tuning on left-padded batches is {acc:.3f}; the bar is 0.95")
