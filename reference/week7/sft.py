"""Supervised fine-tuning data: masked labels, shifted loss, leak-free packing (reference)."""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def build_example(prompt_ids: list[int], response_ids: list[int], max_len: int,
                  eos_id: int) -> tuple[list[int], list[int]]:
    input_ids = list(prompt_ids) + list(response_ids) + [eos_id]
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(response_ids) + [eos_id]
    return input_ids[:max_len], labels[:max_len]


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = logits[..., :-1, :]
    targets = labels[..., 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def pack(examples: list[tuple[list[int], list[int]]], max_len: int) -> list[dict[str, torch.Tensor]]:
    groups, current, used = [], [], 0
    for ids, labels in examples:
        if len(ids) != len(labels):
            raise ValueError("input_ids and labels must have the same length")
        if not 0 < len(ids) <= max_len:
            raise ValueError(f"example of length {len(ids)} does not fit max_len={max_len}")
        if used + len(ids) > max_len:
            groups.append(current)
            current, used = [], 0
        current.append((ids, labels))
        used += len(ids)
    if current:
        groups.append(current)
    return [_pack_one(group) for group in groups]


def _pack_one(group):
    input_ids, labels, position_ids, segment = [], [], [], []
    for i, (ids, labs) in enumerate(group):
        input_ids += ids
        # The last token of the previous example must not be trained to predict this one.
        labels += [IGNORE_INDEX] + list(labs[1:])
        position_ids += range(len(ids))
        segment += [i] * len(ids)
    seg = torch.tensor(segment)
    n = len(segment)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    return {
        "input_ids": torch.tensor(input_ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(position_ids, dtype=torch.long),
        "attention_mask": causal & (seg[:, None] == seg[None, :]),
    }
