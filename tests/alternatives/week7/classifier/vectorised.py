"""week7/classifier with torch idioms: pad_sequence, gather, one-hot products."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence


def pad_batch(sequences, pad_id, side="right"):
    if side not in {"left", "right"}:
        raise ValueError(side)
    if not sequences or not all(sequences):
        raise ValueError("need non-empty sequences")
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    ids = pad_sequence(tensors, batch_first=True, padding_value=pad_id, padding_side=side)
    mask = pad_sequence([torch.ones_like(t) for t in tensors], batch_first=True, padding_value=0, padding_side=side)
    return ids, mask


def position_ids_from_mask(mask):
    real = mask.bool()
    return torch.where(real, real.long().cumsum(-1) - 1, torch.ones_like(real, dtype=torch.long))


def last_token_pool(hidden, mask):
    T = mask.shape[-1]
    last = T - 1 - mask.bool().flip(-1).long().argmax(-1)
    index = last.to(hidden.device)[:, None, None].expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)


class LMClassifier(nn.Module):
    def __init__(self, backbone, n_classes):
        super().__init__()
        self.backbone = backbone
        self.score = nn.Linear(backbone.config.n_embd, n_classes, bias=False)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from_mask(attention_mask))[0]
        return self.score(last_token_pool(hidden, attention_mask))


def freeze_for_finetuning_(model, n_trainable_blocks):
    blocks = model.backbone.h
    if n_trainable_blocks not in range(len(blocks) + 1):
        raise ValueError(n_trainable_blocks)
    for p in model.parameters():
        p.requires_grad_(False)
    keep = list(blocks)[len(blocks) - n_trainable_blocks:] + [model.backbone.ln_f, model.score]
    for module in keep:
        for p in module.parameters():
            p.requires_grad_(True)


def confusion_matrix(y_true, y_pred, n_classes):
    y_true, y_pred = torch.as_tensor(y_true, dtype=torch.long), torch.as_tensor(y_pred, dtype=torch.long)
    both = torch.cat([y_true, y_pred])
    if bool(((both < 0) | (both >= n_classes)).any()):
        raise ValueError("label out of range")
    return F.one_hot(y_true, n_classes).T @ F.one_hot(y_pred, n_classes)


def precision_recall_f1(y_true, y_pred, n_classes, average=None):
    if average is not None and average not in ("macro", "micro"):
        raise ValueError(average)
    cm = confusion_matrix(y_true, y_pred, n_classes).to(torch.float64)
    tp = torch.diag(cm)
    predicted, actual = cm.sum(dim=0), cm.sum(dim=1)
    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
    precision = torch.nan_to_num(tp / predicted, nan=0.0)
    recall = torch.nan_to_num(tp / actual, nan=0.0)
    f1 = torch.nan_to_num(2 * tp / (predicted + actual), nan=0.0)
    if average is None:
        return precision, recall, f1
    return float(precision.mean()), float(recall.mean()), float(f1.mean())
