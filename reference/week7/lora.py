"""LoRA and QLoRA: low-rank adapters on a frozen base layer (reference solution)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _add_adapter(module: nn.Module, in_features: int, out_features: int, r: int, alpha: float,
                 dropout: float, like: torch.Tensor) -> None:
    if r <= 0:
        raise ValueError(f"r must be positive, got {r}")
    module.r = r
    module.alpha = alpha
    module.scaling = alpha / r
    module.A = nn.Parameter(torch.empty(r, in_features, dtype=like.dtype, device=like.device))
    module.B = nn.Parameter(torch.zeros(out_features, r, dtype=like.dtype, device=like.device))
    nn.init.kaiming_uniform_(module.A, a=math.sqrt(5))
    module.dropout = nn.Dropout(dropout)


def _adapter_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module.scaling * (module.dropout(x) @ module.A.T @ module.B.T)


class LoRALinear(nn.Module):
    """`base(x) + (alpha / r) * dropout(x) @ A.T @ B.T` with `base` frozen."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        _add_adapter(self, base.in_features, base.out_features, r, alpha, dropout, base.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + _adapter_output(self, x)

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        base = self.base
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        merged.weight.copy_(base.weight + self.scaling * (self.B @ self.A))
        if base.bias is not None:
            merged.bias.copy_(base.bias)
        return merged


def inject_lora(model: nn.Module, target_modules: list[str], r: int, alpha: float) -> nn.Module:
    """Swap every matching nn.Linear for a LoRALinear, in place; freeze everything else."""
    model.requires_grad_(False)
    targets = [name for name, module in model.named_modules()
               if isinstance(module, nn.Linear)
               and any(name == t or name.endswith("." + t) for t in target_modules)]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class QLoRALinear(nn.Module):
    """LoRA over a base weight stored as week-5 NF4 codes, dequantized in forward."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0,
                 block_size: int = 64):
        super().__init__()
        # Imported here so that LoRALinear works even without a week-5 solution.
        from ..week5.quantization import nf4_quantize

        w = base.weight.detach()
        codes, absmax = nf4_quantize(w, block_size=block_size)
        self.register_buffer("codes", codes)
        self.register_buffer("absmax", absmax)
        self.weight_shape = tuple(w.shape)
        self.block_size = block_size
        self.compute_dtype = w.dtype
        bias = None if base.bias is None else base.bias.detach().clone()
        self.register_buffer("bias", bias)
        _add_adapter(self, base.in_features, base.out_features, r, alpha, dropout, w)

    def dequantized_weight(self) -> torch.Tensor:
        from ..week5.quantization import nf4_dequantize

        w = nf4_dequantize(self.codes, self.absmax, self.weight_shape, block_size=self.block_size)
        return w.to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias) + _adapter_output(self, x)
