"""RL losses written differently: GAE as a discounted cumulative sum by a matrix of
cut-aware discount products (no Python recursion over A), ratios clipped with where,
softplus for Bradley-Terry, per-row mean/var by hand for GRPO."""
import torch
import torch.nn.functional as F


def reward_model_loss(chosen_rewards, rejected_rewards):
    return F.softplus(rejected_rewards - chosen_rewards).mean()


def compute_gae(rewards, values, dones, gamma, lam):
    T = rewards.shape[0]
    nd = 1.0 - dones.double()
    v = values.double()
    deltas = rewards.double() + gamma * v[1:] * nd - v[:T]
    # A_t = sum_{k>=t} (gamma*lam)^(k-t) * prod_{t<=j<k} nd_j * delta_k
    coef = torch.zeros(T, T, dtype=torch.float64)
    for t in range(T):
        running = 1.0
        for k in range(t, T):
            coef[t, k] = running
            running = running * gamma * lam * float(nd[k])
    adv = (coef @ deltas).to(rewards.dtype)
    return adv, adv + values[:T]


def _clip(ratio, eps):
    return torch.where(ratio > 1 + eps, torch.full_like(ratio, 1 + eps),
                       torch.where(ratio < 1 - eps, torch.full_like(ratio, 1 - eps), ratio))


def ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps=0.2):
    ratio = (logprobs - old_logprobs).exp()
    per_token = torch.maximum(-ratio * advantages, -_clip(ratio, clip_eps) * advantages)
    m = mask.bool()
    return per_token[m].sum() / m.sum()


def ppo_value_loss(values, old_values, returns, mask, clip=0.2):
    v_clip = torch.minimum(torch.maximum(values, old_values - clip), old_values + clip)
    per_token = 0.5 * torch.maximum((values - returns).square(), (v_clip - returns).square())
    m = mask.bool()
    return per_token[m].mean()


def kl_penalty(logprobs, ref_logprobs, kind="k1"):
    log_ratio = logprobs - ref_logprobs  # log pi - log pi_ref = -r
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio * log_ratio
    if kind == "k3":
        return torch.exp(-log_ratio) - 1 + log_ratio
    raise ValueError(kind)


def grpo_advantages(rewards, eps=1e-6):
    n = rewards.shape[-1]
    mean = rewards.sum(-1, keepdim=True) / n
    var = ((rewards - mean) ** 2).sum(-1, keepdim=True) / (n - 1)
    return (rewards - mean) / (var.sqrt() + eps)


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps=0.2, beta=0.04):
    out = []
    for b in range(logprobs.shape[0]):
        m = mask[b].bool()
        lp, old, ref = logprobs[b][m], old_logprobs[b][m], ref_logprobs[b][m]
        ratio = torch.exp(lp - old)
        a = advantages[b]
        surrogate = torch.minimum(ratio * a, _clip(ratio, clip_eps) * a)
        out.append((-surrogate + beta * kl_penalty(lp, ref, "k3")).mean())
    return torch.stack(out).mean()
