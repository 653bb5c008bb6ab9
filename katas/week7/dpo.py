"""Week 7 — Direct Preference Optimization (and IPO, SimPO).

DPO (Rafailov et al., 2023) fine-tunes a policy pi on pairs (prompt, chosen y_w, rejected
y_l) without a reward model or RL. With a frozen reference model pi_ref (the SFT model), the
implicit reward of a response is beta * log(pi(y|x) / pi_ref(y|x)), and the loss is the
Bradley-Terry loss on the difference of the two rewards:

    z    = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))
    loss = -log sigmoid(beta * z)                       (mean over the batch)

Every log pi(y|x) here is the log-probability of the WHOLE response: a SUM over its tokens
of log p(token | everything before it), computed from a causal LM's logits.

Must catch (the tests fail on each):
- no shift between logits and labels (the logits at t predict the token at t + 1);
- sign flipped (rejected minus chosen);
- beta outside the sigmoid (beta * -log sigmoid(z) instead of -log sigmoid(beta * z));
- rewards not detached (they are for logging, not for the graph);
- mean over tokens instead of sum in `sequence_logps`.

Run time: `pytest katas/week7/test_dpo.py` takes about 7 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import torch
import torch.nn.functional as F


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of the masked tokens of each sequence.

    Args:
        logits:    [B, T, V] a causal LM's output for the input ids.
        labels:    [B, T] int64, ALIGNED with the input ids (usually the input ids).
        loss_mask: [B, T] bool (or 0/1), True where the token counts (the response).
    Returns:
        [B], in the logits' dtype:  sum over t >= 1 with loss_mask[b, t] of
            log_softmax(logits[b, t - 1])[labels[b, t]]
        Position 0 never counts (nothing predicts it).

    Pitfalls: where loss_mask is False, labels may hold anything, including -100 (the
    ignore index): do not index with those values (replace them by 0 before `gather`, then
    zero their contribution). Use `log_softmax`, not `log(softmax)`. SUM, do not average:
    DPO compares the probabilities of whole responses.

    Worked example, T = 3, loss_mask [F, T, T]:
        logps = log_softmax(logits[0])[labels[1]] + log_softmax(logits[1])[labels[2]]
    """
    raise NotImplementedError


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO with label smoothing (conservative DPO). All four inputs are [B].

    With z = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) and eps =
    label_smoothing (the probability that a preference label is flipped):

        losses = -(1 - eps) * logsigmoid(beta * z) - eps * logsigmoid(-beta * z)

    Returns (losses.mean(), chosen_rewards, rejected_rewards), with the rewards

        chosen_rewards   = beta * (policy_chosen - ref_chosen)      [B], DETACHED
        rejected_rewards = beta * (policy_rejected - ref_rejected)  [B], DETACHED

    Gradients flow only into the policy log-probs: the reference is a constant (detach the
    ref inputs too, so a caller's ref tensor never gets a gradient). Use `F.logsigmoid`,
    which stays finite for large |beta * z|; log(sigmoid(.)) underflows to -inf.
    """
    raise NotImplementedError


def ipo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> torch.Tensor:
    """IPO (Azar et al., 2023): regress z to a finite margin instead of pushing it to infinity.

    With z as in `dpo_loss` (reference inputs detached): mean over the batch of

        (z - 1 / (2 * beta)) ** 2
    """
    raise NotImplementedError


def simpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
               chosen_lengths: torch.Tensor, rejected_lengths: torch.Tensor,
               beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al., 2024): no reference model; the reward is the LENGTH-NORMALISED
    log-probability, and gamma is a target reward margin. Lengths are [B] token counts.

        mean over the batch of  -logsigmoid(beta * pc / |c| - beta * pr / |r| - gamma)

    (gamma is used as it is, not divided by beta.)
    """
    raise NotImplementedError
