"""Week 8 — reward models, PPO and GRPO.

RL from feedback in three steps, each a few lines of tensor arithmetic:

1. A reward model learns from human preference pairs (Bradley-Terry):
       P(chosen > rejected) = sigmoid(r_chosen - r_rejected)
2. PPO (Schulman et al., 2017) improves a policy with advantages from GAE and a clipped
   surrogate objective that keeps each update close to the policy that sampled the data,
   plus a clipped value loss and a KL penalty towards a reference model.
3. GRPO (Shao et al., 2024, DeepSeekMath) drops the value model: it samples a GROUP of
   answers per prompt and uses each answer's reward normalised within its group.

Shapes: token-level tensors are [B, T] with a mask [B, T] (True / 1 = a real response
token, False / 0 = padding). Keep the inputs' dtype.

Must catch (the tests fail on each):
- GAE not cut at episode ends;
- bootstrapping from the wrong value;
- clipping the ratio but taking max instead of min of the surrogates;
- mean over padded tokens;
- group normalisation over the whole batch instead of per group;
- KL estimator with the log-ratio's sign flipped.

Run time: `pytest katas/week8/test_rl.py` takes about 4 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import torch
import torch.nn.functional as F


def reward_model_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss, a scalar: mean over pairs of -logsigmoid(chosen - rejected).

    Use `F.logsigmoid` (finite for a margin of -100; log(sigmoid(.)) is not).
    """
    raise NotImplementedError


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation over one trajectory of T steps.

    Args:
        rewards: [T] the reward after step t.
        values:  [T + 1] V(s_t) for t < T, and values[T] = V of the state after the last
                 step (the bootstrap value when the trajectory was cut, not ended).
        dones:   [T] 1 (or True) if the episode ENDED with step t; a new episode starts at t+1.
    Returns:
        advantages [T], returns [T] = advantages + values[:T].

    Backwards over t = T-1, ..., 0:
        delta_t = r_t + gamma * V_{t+1} * (1 - d_t) - V_t
        A_t     = delta_t + gamma * lam * (1 - d_t) * A_{t+1}        (A_T = 0)

    Pitfalls: (1 - d_t) cuts BOTH the bootstrap and the recursion: nothing flows from the
    next episode into this one. V_{t+1} is values[t + 1] (values has T + 1 entries), and
    the last step bootstraps from values[T].

    Worked example, T = 2, gamma = lam = 1, rewards [1, 1], values [0, 0, 5]:
        dones [0, 0] -> A = [7, 6] (the episode goes on: bootstrap 5)
        dones [0, 1] -> A = [2, 1] (it ended: values[2] is a new episode's)
    """
    raise NotImplementedError


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate, as a loss (scalar). All inputs [B, T] (or any shape, same).

        ratio = exp(logprobs - old_logprobs)
        per token: -min(ratio * A, clamp(ratio, 1 - eps, 1 + eps) * A)
        loss = sum(per_token * mask) / sum(mask)       (mean over the real tokens only)

    Why MIN: the objective is pessimistic -- clipping removes the incentive to move the
    ratio beyond 1 +- eps, but never hides a change that made things worse. With A > 0 and
    ratio = 1.5, eps = 0.2: min(1.5A, 1.2A) = 1.2A (no extra credit); with A < 0 and
    ratio = 1.5: min(-1.5|A|, -1.2|A|) = -1.5|A| (the full penalty).
    """
    raise NotImplementedError


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss (scalar), inputs [B, T]:

        v_clipped = old_values + clamp(values - old_values, -clip, clip)
        per token: 0.5 * max((values - returns)**2, (v_clipped - returns)**2)
        loss = masked mean, as in `ppo_policy_loss`.
    """
    raise NotImplementedError


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimators of KL(pi || pi_ref) from samples of pi (same shape as inputs).

    With r = ref_logprobs - logprobs (log pi_ref(x) - log pi(x), x sampled from pi):
        "k1": -r                    unbiased, high variance, can be negative
        "k2": r**2 / 2              biased, low variance, >= 0
        "k3": exp(r) - 1 - r        unbiased AND >= 0 (Schulman's estimator; GRPO uses it)
    Any other kind raises ValueError. (`torch.expm1(r) - r` is the accurate k3 for small r.)
    """
    raise NotImplementedError


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages: rewards [n_prompts, group_size] -> same shape.

    Each ROW is the group of answers to one prompt; normalise within the row:

        (r - row mean) / (row std + eps)       std: torch's default (unbiased, n - 1)

    Worked example: [[1, 0], [10, 20]] -> about [[0.71, -0.71], [-0.71, 0.71]]: an answer
    is judged against the other answers to the same prompt, not against other prompts.
    """
    raise NotImplementedError


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2,
              beta: float = 0.04) -> torch.Tensor:
    """GRPO's loss (scalar). logprobs, old_logprobs, ref_logprobs, mask: [B, T]; advantages: [B]
    (one per sequence, broadcast over its tokens).

        ratio = exp(logprobs - old_logprobs)
        per token: -min(ratio * A, clamp(ratio, 1 - eps, 1 + eps) * A)
                   + beta * k3(logprobs, ref_logprobs)
        per sequence: mean over ITS masked tokens
        loss: mean over the sequences

    (As the paper: each sequence weighs the same whatever its length -- unlike the
    token-level mean of `ppo_policy_loss`.)
    """
    raise NotImplementedError
