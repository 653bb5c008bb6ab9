"""Direct Preference Optimization and two relatives, IPO and SimPO (reference solution)."""

import torch
import torch.nn.functional as F


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    logits = logits[:, :-1, :]
    targets = labels[:, 1:]
    mask = loss_mask[:, 1:].bool()
    targets = torch.where(mask, targets, torch.zeros_like(targets))
    logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ref_chosen_logps = ref_chosen_logps.detach()
    ref_rejected_logps = ref_rejected_logps.detach()
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    z = chosen_logratios - rejected_logratios
    losses = (-(1 - label_smoothing) * F.logsigmoid(beta * z)
              - label_smoothing * F.logsigmoid(-beta * z))
    chosen_rewards = (beta * chosen_logratios).detach()
    rejected_rewards = (beta * rejected_logratios).detach()
    return losses.mean(), chosen_rewards, rejected_rewards


def ipo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> torch.Tensor:
    z = ((policy_chosen_logps - ref_chosen_logps.detach())
         - (policy_rejected_logps - ref_rejected_logps.detach()))
    return ((z - 1 / (2 * beta)) ** 2).mean()


def simpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
               chosen_lengths: torch.Tensor, rejected_lengths: torch.Tensor,
               beta: float, gamma: float) -> torch.Tensor:
    margin = (beta * policy_chosen_logps / chosen_lengths
              - beta * policy_rejected_logps / rejected_lengths - gamma)
    return -F.logsigmoid(margin).mean()
