"""DPO written differently: a loop over the batch in float64 for sequence_logps (logsumexp by
hand), softplus forms of the losses, explicit detaches at the end."""
import torch
import torch.nn.functional as F


def sequence_logps(logits, labels, loss_mask):
    B, T, _ = logits.shape
    out = []
    for b in range(B):
        total = torch.zeros((), dtype=torch.float64, device=logits.device)
        for t in range(1, T):
            if bool(loss_mask[b, t]):
                row = logits[b, t - 1].double()
                total = total + row[int(labels[b, t])] - torch.logsumexp(row, dim=0)
        out.append(total)
    return torch.stack(out).to(logits.dtype)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta=0.1, label_smoothing=0.0):
    ref_margin = (ref_chosen_logps - ref_rejected_logps).detach()
    z = policy_chosen_logps - policy_rejected_logps - ref_margin
    # -log sigmoid(x) == softplus(-x)
    losses = (1 - label_smoothing) * F.softplus(-beta * z) + label_smoothing * F.softplus(beta * z)
    chosen = beta * (policy_chosen_logps.detach() - ref_chosen_logps.detach())
    rejected = beta * (policy_rejected_logps.detach() - ref_rejected_logps.detach())
    return losses.mean(), chosen, rejected


def ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    z = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps).detach()
    target = 1.0 / (2.0 * beta)
    return torch.mean((z - target) * (z - target))


def simpo_loss(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, beta, gamma):
    x = beta * (policy_chosen_logps / chosen_lengths) - beta * (policy_rejected_logps / rejected_lengths) - gamma
    return F.softplus(-x).mean()
