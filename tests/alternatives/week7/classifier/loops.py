"""week7/classifier written with plain Python loops and per-class counting."""

import torch
import torch.nn as nn


def pad_batch(sequences, pad_id, side="right"):
    if side not in ("right", "left") or len(sequences) == 0 or min(len(s) for s in sequences) == 0:
        raise ValueError("bad input")
    width = max(len(s) for s in sequences)
    ids, mask = [], []
    for seq in sequences:
        pads = width - len(seq)
        if side == "right":
            ids.append(list(seq) + [pad_id] * pads)
            mask.append([1] * len(seq) + [0] * pads)
        else:
            ids.append([pad_id] * pads + list(seq))
            mask.append([0] * pads + [1] * len(seq))
    return torch.tensor(ids, dtype=torch.int64), torch.tensor(mask, dtype=torch.int64)


def position_ids_from_mask(mask):
    flat = mask.reshape(-1, mask.shape[-1]).tolist()
    out = []
    for row in flat:
        count, positions = 0, []
        for m in row:
            if m:
                positions.append(count)
                count += 1
            else:
                positions.append(1)
        out.append(positions)
    return torch.tensor(out, dtype=torch.int64).reshape(mask.shape)


def last_token_pool(hidden, mask):
    rows = []
    for b, row in enumerate(mask.tolist()):
        last = max(t for t, m in enumerate(row) if m)
        rows.append(hidden[b, last])
    return torch.stack(rows)


class LMClassifier(nn.Module):
    def __init__(self, backbone, n_classes):
        super().__init__()
        self.backbone = backbone
        self.score = nn.Linear(backbone.config.hidden_size, n_classes, bias=False)

    def forward(self, input_ids, attention_mask):
        out = self.backbone(input_ids, attention_mask=attention_mask,
                            position_ids=position_ids_from_mask(attention_mask))
        return self.score(last_token_pool(out[0], attention_mask))


def freeze_for_finetuning_(model, n_trainable_blocks):
    n_layers = len(model.backbone.h)
    if n_trainable_blocks < 0 or n_trainable_blocks > n_layers:
        raise ValueError("n_trainable_blocks out of range")
    trained = tuple(f"backbone.h.{i}." for i in range(n_layers - n_trainable_blocks, n_layers))
    trained += ("backbone.ln_f.", "score.")
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(trained)


def confusion_matrix(y_true, y_pred, n_classes):
    counts = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(torch.as_tensor(y_true).tolist(), torch.as_tensor(y_pred).tolist()):
        if not (0 <= t < n_classes and 0 <= p < n_classes):
            raise ValueError("label out of range")
        counts[t][p] += 1
    return torch.tensor(counts, dtype=torch.int64).reshape(n_classes, n_classes)


def _ratio(a, b):
    return a / b if b else 0.0


def precision_recall_f1(y_true, y_pred, n_classes, average=None):
    if average not in (None, "macro", "micro"):
        raise ValueError("unknown average")
    cm = confusion_matrix(y_true, y_pred, n_classes).tolist()
    tps = [cm[c][c] for c in range(n_classes)]
    fps = [sum(cm[r][c] for r in range(n_classes)) - cm[c][c] for c in range(n_classes)]
    fns = [sum(cm[c]) - cm[c][c] for c in range(n_classes)]
    if average == "micro":
        tp, fp, fn = sum(tps), sum(fps), sum(fns)
        return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
    p = [_ratio(tp, tp + fp) for tp, fp in zip(tps, fps)]
    r = [_ratio(tp, tp + fn) for tp, fn in zip(tps, fns)]
    f = [_ratio(2 * tp, 2 * tp + fp + fn) for tp, fp, fn in zip(tps, fps, fns)]
    if average == "macro":
        return sum(p) / n_classes, sum(r) / n_classes, sum(f) / n_classes
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)
    return as_tensor(p), as_tensor(r), as_tensor(f)
