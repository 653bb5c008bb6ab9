"""A spam classifier from a pretrained tiny LM: padding, pooling, freezing, metrics (reference)."""

import torch
import torch.nn as nn


def pad_batch(sequences: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if not sequences or any(len(seq) == 0 for seq in sequences):
        raise ValueError("pad_batch needs at least one sequence, and no empty ones")
    length = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, seq in enumerate(sequences):
        start = 0 if side == "right" else length - len(seq)
        ids[row, start:start + len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, start:start + len(seq)] = 1
    return ids, mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    mask = mask.long()
    positions = mask.cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    T = mask.shape[-1]
    # The largest index whose mask is 1: index * mask peaks there, whichever side was padded.
    last = (torch.arange(T, device=mask.device) * (mask != 0)).argmax(-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class LMClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.score = nn.Linear(backbone.config.n_embd, n_classes, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from_mask(attention_mask)).last_hidden_state
        return self.score(last_token_pool(hidden, attention_mask))


def freeze_for_finetuning_(model: nn.Module, n_trainable_blocks: int) -> None:
    blocks = model.backbone.h
    if not 0 <= n_trainable_blocks <= len(blocks):
        raise ValueError(f"n_trainable_blocks must be in 0..{len(blocks)}, got {n_trainable_blocks}")
    model.requires_grad_(False)
    trainable = [blocks[i] for i in range(len(blocks) - n_trainable_blocks, len(blocks))]
    for module in trainable + [model.backbone.ln_f, model.score]:
        module.requires_grad_(True)


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    y_true, y_pred = torch.as_tensor(y_true).long(), torch.as_tensor(y_pred).long()
    for labels in (y_true, y_pred):
        if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    counts = torch.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.view(n_classes, n_classes)


def precision_recall_f1(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int,
                        average: str | None = None):
    if average not in (None, "macro", "micro"):
        raise ValueError(f"average must be None, 'macro' or 'micro', got {average!r}")
    cm = confusion_matrix(y_true, y_pred, n_classes).double()
    tp = cm.diagonal()
    fp = cm.sum(0) - tp          # predicted as the class, truly another
    fn = cm.sum(1) - tp          # truly the class, predicted as another
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision = _safe_divide(tp, tp + fp)
    recall = _safe_divide(tp, tp + fn)
    f1 = _safe_divide(2 * tp, 2 * tp + fp + fn)
    if average is None:
        return precision, recall, f1
    return precision.mean().item(), recall.mean().item(), f1.mean().item()


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den is 0 (sklearn's zero_division=0)."""
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))
