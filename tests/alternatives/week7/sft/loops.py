"""SFT data written differently: explicit loops, log_softmax + NLL by hand for the loss,
packing planned first as index lists and the mask built from segment ids by loops."""
import torch


def build_example(prompt_ids, response_ids, max_len, eos_id):
    input_ids, labels = [], []
    for tok in prompt_ids:
        input_ids.append(int(tok))
        labels.append(-100)
    for tok in list(response_ids) + [eos_id]:
        input_ids.append(int(tok))
        labels.append(int(tok))
    while len(input_ids) > max_len:
        input_ids.pop()
        labels.pop()
    return input_ids, labels


def sft_loss(logits, labels):
    V = logits.shape[-1]
    logp = torch.log_softmax(logits.double(), dim=-1)[..., :-1, :].reshape(-1, V)
    target = labels[..., 1:].reshape(-1)
    keep = target != -100
    picked = logp[keep].gather(1, target[keep].unsqueeze(1)).squeeze(1)
    return (-picked.sum() / keep.sum()).to(logits.dtype)


def pack(examples, max_len):
    plans, row, length = [], [], 0
    for i, (ids, labels) in enumerate(examples):
        n = len(ids)
        if n == 0 or n > max_len or n != len(labels):
            raise ValueError("bad example")
        if row and length + n > max_len:
            plans.append(row)
            row, length = [], 0
        row.append(i)
        length += n
    if row:
        plans.append(row)
    out = []
    for plan in plans:
        ids, labs, pos, seg = [], [], [], []
        for k, i in enumerate(plan):
            e_ids, e_labs = examples[i]
            for t in range(len(e_ids)):
                ids.append(e_ids[t])
                labs.append(-100 if t == 0 else e_labs[t])
                pos.append(t)
                seg.append(k)
        L = len(ids)
        mask = torch.zeros(L, L, dtype=torch.bool)
        for i in range(L):
            for j in range(i + 1):
                mask[i, j] = seg[i] == seg[j]
        out.append({"input_ids": torch.tensor(ids, dtype=torch.long),
                    "labels": torch.tensor(labs, dtype=torch.long),
                    "position_ids": torch.tensor(pos, dtype=torch.long),
                    "attention_mask": mask})
    return out
