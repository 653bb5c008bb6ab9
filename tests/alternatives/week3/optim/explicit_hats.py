"""A correct week3/optim written differently: explicit m_hat / v_hat, moments kept in
float64, step count stored as a tensor; cosine_lr through a cosine of the remaining
fraction; clip_grad_norm_ through one concatenated vector."""

import math

import torch


class AdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        with torch.no_grad():
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if len(st) == 0:
                        st["t"] = torch.tensor(0.0, dtype=torch.float64)
                        st["m"] = torch.zeros(p.shape, dtype=torch.float64, device=p.device)
                        st["v"] = torch.zeros(p.shape, dtype=torch.float64, device=p.device)
                    st["t"] += 1
                    g = p.grad.double()
                    st["m"] = b1 * st["m"] + (1 - b1) * g
                    st["v"] = b2 * st["v"] + (1 - b2) * g * g
                    m_hat = st["m"] / (1 - b1 ** st["t"])
                    v_hat = st["v"] / (1 - b2 ** st["t"])
                    new = p.double() * (1 - group["lr"] * group["weight_decay"])
                    new = new - group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
                    p.copy_(new)
        return loss


def cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    if step + 1 <= warmup_steps:
        return (step + 1) / warmup_steps * max_lr
    if step > total_steps:
        return min_lr
    remaining = (total_steps - step) / (total_steps - warmup_steps)  # 1 -> 0
    return min_lr + (max_lr - min_lr) * (1 - math.cos(math.pi * remaining)) / 2


def clip_grad_norm_(parameters, max_norm):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in list(parameters) if p.grad is not None]
    if len(grads) == 0:
        return torch.tensor(0.0)
    total = torch.cat([g.reshape(-1) for g in grads]).norm()
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g.mul_(scale)
    return total
