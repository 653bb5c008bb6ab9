"""Quantization, from absmax int8 to QLoRA's NF4 (reference solution)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def _reduce_dims(x: torch.Tensor, dim: int | None) -> list[int]:
    """Every axis except the kept one (all axes when dim is None)."""
    if dim is None:
        return list(range(x.dim()))
    dim = dim % x.dim()
    return [d for d in range(x.dim()) if d != dim]


def _amax(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    if dim is None:
        return x.abs().amax().reshape([1] * x.dim())
    return x.abs().amax(dim=_reduce_dims(x, dim), keepdim=True)


def absmax_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    qmax = 2 ** (bits - 1) - 1
    amax = _amax(x, dim)
    scale = amax / qmax
    scale = torch.where(amax == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(x / scale), -qmax, qmax).to(torch.int8)
    return q, scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.to(scale.dtype) * scale


def zeropoint_quantize(
    x: torch.Tensor, bits: int = 8, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    levels = 2**bits - 1
    if dim is None:
        lo, hi = x.amin().reshape([1] * x.dim()), x.amax().reshape([1] * x.dim())
    else:
        lo = x.amin(dim=_reduce_dims(x, dim), keepdim=True)
        hi = x.amax(dim=_reduce_dims(x, dim), keepdim=True)
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = (hi - lo) / levels
    scale = torch.where(hi == lo, torch.ones_like(scale), scale)
    zero_point = torch.clamp(torch.round(-lo / scale), 0, levels).to(torch.int32)
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, levels).to(torch.uint8)
    return q, scale, zero_point


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    return (q.to(torch.int32) - zero_point.to(torch.int32)).to(scale.dtype) * scale


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    if codes.shape[-1] % 2:
        raise ValueError("pack_int4 needs an even number of codes on the last axis")
    low, high = codes[..., 0::2], codes[..., 1::2]
    return (low & 0xF) | ((high & 0xF) << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low, high = packed & 0xF, packed >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)


# QLoRA's NormalFloat4 table (Dettmers et al. 2023, appendix E; bitsandbytes' create_normal_map):
# 8 positive quantiles of N(0, 1) at linspace(0.9677083, 0.5, 9)[:-1], 7 negative ones at
# linspace(0.9677083, 0.5, 8)[:-1], an exact zero, all divided by the largest.
NF4_CODE = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=torch.float32,
)


def nf4_quantize(x: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.detach().flatten().to(torch.float32)
    n = flat.numel()
    n_blocks = (n + block_size - 1) // block_size
    padded = F.pad(flat, (0, n_blocks * block_size - n)).view(n_blocks, block_size)
    absmax = padded.abs().amax(dim=1)
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    normed = (padded / absmax[:, None]).flatten()[:n]
    code = NF4_CODE.to(flat.device)
    codes = (normed[:, None] - code).abs().argmin(dim=1).to(torch.uint8)
    return codes, absmax


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape, block_size: int = 64) -> torch.Tensor:
    n = codes.numel()
    values = NF4_CODE.to(absmax.device)[codes.long()]
    scales = absmax.repeat_interleave(block_size)[:n]
    return (values * scales).reshape(shape)


class QuantizedLinear(nn.Module):
    """A Linear whose weight is stored quantized and dequantized on the fly in forward."""

    def __init__(self, linear: nn.Linear, method: str = "absmax", bits: int = 8, group_size: int | None = None):
        super().__init__()
        if method not in ("absmax", "zeropoint", "nf4"):
            raise ValueError(f"unknown method {method!r}")
        bits = 4 if method == "nf4" else bits
        if bits not in (4, 8):
            raise ValueError("bits must be 4 or 8")
        out_f, in_f = linear.weight.shape
        group = group_size or in_f
        if in_f % group:
            raise ValueError("group_size must divide in_features")
        self.in_features, self.out_features = in_f, out_f
        self.method, self.bits, self.group_size = method, bits, group
        w = linear.weight.detach().to(torch.float32)
        groups = w.reshape(-1, group)  # one row per scale
        if method == "absmax":
            q, scale = absmax_quantize(groups, bits, dim=0)
            codes = (q.to(torch.int16) + 2 ** (bits - 1)).to(torch.uint8)  # offset to unsigned
        elif method == "zeropoint":
            codes, scale, zero_point = zeropoint_quantize(groups, bits, dim=0)
            self.register_buffer("zero_point", zero_point.flatten())
        else:
            codes, scale = nf4_quantize(groups, block_size=group)
        codes = codes.flatten()
        if bits == 4:
            codes = pack_int4(codes)
        self.register_buffer("qweight", codes)
        self.register_buffer("scale", scale.flatten())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, method: str = "absmax", bits: int = 8,
                    group_size: int | None = None) -> "QuantizedLinear":
        return cls(linear, method, bits, group_size)

    def dequantized_weight(self) -> torch.Tensor:
        codes = unpack_int4(self.qweight) if self.bits == 4 else self.qweight
        if self.method == "nf4":
            return nf4_dequantize(codes, self.scale, (self.out_features, self.in_features), self.group_size)
        groups = codes.view(-1, self.group_size)
        scale = self.scale[:, None]
        if self.method == "absmax":
            w = absmax_dequantize(groups.to(torch.int16) - 2 ** (self.bits - 1), scale)
        else:
            w = zeropoint_dequantize(groups, scale, self.zero_point[:, None])
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight().to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, bias)
