"""LoRA written differently: einsum with float64 adapter math, merge via F.linear on an
identity, inject_lora by a recursive walk over named_children, counts via a dict of ids."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        for p in base.parameters():
            p.requires_grad = False
        self.base = base
        self.r, self.alpha = r, alpha
        w = base.weight
        A = torch.empty(r, base.in_features, dtype=w.dtype, device=w.device)
        bound = 1.0 / math.sqrt(base.in_features)  # what kaiming_uniform_(a=sqrt(5)) gives
        with torch.no_grad():
            A.uniform_(-bound, bound)
        self.A = nn.Parameter(A)
        self.B = nn.Parameter(w.new_zeros(base.out_features, r))
        self.p = dropout

    def forward(self, x):
        h = F.dropout(x, self.p, self.training)
        low = torch.einsum("...i,ri->...r", h.double(), self.A.double())
        up = torch.einsum("...r,or->...o", low, self.B.double())
        return self.base(x) + (up * (self.alpha / self.r)).to(x.dtype)

    def merge(self):
        with torch.no_grad():
            eye = torch.eye(self.base.in_features, dtype=torch.float64, device=self.A.device)
            delta = F.linear(F.linear(eye, self.A.double()), self.B.double()).T  # [out, in] = B @ A
            new = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
            new = new.to(device=self.base.weight.device, dtype=self.base.weight.dtype)
            new.weight.data = (self.base.weight.double() + delta * self.alpha / self.r).to(self.base.weight.dtype)
            if self.base.bias is not None:
                new.bias.data = self.base.bias.detach().clone()
        return new


def _matches(name, targets):
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(model, target_modules, r, alpha):
    for p in model.parameters():
        p.requires_grad = False

    def walk(module, prefix):
        for child_name, child in list(module.named_children()):
            full = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, nn.Linear) and _matches(full, target_modules):
                module.add_module(child_name, LoRALinear(child, r, alpha))
            else:
                walk(child, full)

    walk(model, "")
    return model


def trainable_parameters(model):
    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    trainable = sum(p.numel() for p in unique.values() if p.requires_grad)
    return trainable, total


class QLoRALinear(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, block_size=64):
        super().__init__()
        from ..week5 import quantization as q

        self._q = q
        self.shape = tuple(base.weight.shape)
        self.block_size = block_size
        self.dtype = base.weight.dtype
        codes, absmax = q.nf4_quantize(base.weight.detach(), block_size=block_size)
        self.register_buffer("codes", codes)
        self.register_buffer("absmax", absmax)
        self.register_buffer("bias", None if base.bias is None else base.bias.detach().clone())
        w = base.weight
        self.A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        self.scale = alpha / r
        self.p = dropout

    def forward(self, x):
        w = self._q.nf4_dequantize(self.codes, self.absmax, self.shape, self.block_size).to(x.dtype)
        h = F.dropout(x, self.p, self.training)
        out = x @ w.T + torch.einsum("...r,or->...o", h @ self.A.T, self.B) * self.scale
        return out if self.bias is None else out + self.bias
