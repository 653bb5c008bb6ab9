"""A correct `week5.quantization` written differently from the reference.

Moves the kept axis to the front and flattens, computes in float64, finds NF4 codes by
bucketizing against the midpoints of the table (computed from normal quantiles), packs
nibbles with arithmetic, and stores QuantizedLinear codes as int8 for 8-bit absmax.
"""

import torch
import torch.nn as nn


def _per_slice(x, dim):
    """x viewed as [slices, elements] and a function shaping [slices] back to broadcast."""
    if dim is None:
        return x.reshape(1, -1), lambda s: s.reshape([1] * x.dim())
    dim = dim % x.dim()
    rows = x.movedim(dim, 0).reshape(x.shape[dim], -1)
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    return rows, lambda s: s.reshape(shape)


def absmax_quantize(x, bits=8, dim=None):
    qmax = (1 << (bits - 1)) - 1
    rows, back = _per_slice(x.double(), dim)
    amax = rows.abs().max(dim=1).values
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax)).to(x.dtype)
    q = (x.double() / back(scale).double()).round().clamp(-qmax, qmax)
    return q.to(torch.int8), back(scale)


def absmax_dequantize(q, scale):
    return (q.double() * scale.double()).to(scale.dtype)


def zeropoint_quantize(x, bits=8, dim=None):
    top = (1 << bits) - 1
    rows, back = _per_slice(x, dim)
    lo = rows.min(dim=1).values.clamp(max=0)
    hi = rows.max(dim=1).values.clamp(min=0)
    scale = back(torch.where(hi > lo, (hi - lo) / top, torch.ones_like(hi)))
    zp = back(torch.round(-lo.unsqueeze(1) / scale.reshape(-1, 1)).clamp(0, top).squeeze(1))
    q = (torch.round(x / scale) + zp).clamp(0, top)
    return q.to(torch.uint8), scale, zp.to(torch.int32)


def zeropoint_dequantize(q, scale, zero_point):
    return (q.long() - zero_point.long()).to(scale.dtype) * scale


def pack_int4(codes):
    if codes.shape[-1] % 2 != 0:
        raise ValueError("odd number of codes")
    pairs = codes.reshape(*codes.shape[:-1], -1, 2).to(torch.int32)
    return (pairs[..., 0] + 16 * pairs[..., 1]).to(torch.uint8)


def unpack_int4(packed):
    p = packed.to(torch.int32)
    return torch.stack([p % 16, p // 16], dim=-1).reshape(*packed.shape[:-1], -1).to(torch.uint8)


def _nf4_table():
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    offset = 0.9677083
    pos = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat([pos, neg, torch.zeros(1, dtype=torch.float64)])
    return (values / values.max()).sort().values.float()


NF4_CODE = _nf4_table()


def nf4_quantize(x, block_size=64):
    flat = x.detach().reshape(-1).double()
    n = flat.numel()
    absmax = torch.stack([flat[i:i + block_size].abs().max() for i in range(0, n, block_size)])
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax).float()
    normed = flat / absmax.double().repeat_interleave(block_size)[:n]
    table = NF4_CODE.double()
    mids = (table[1:] + table[:-1]) / 2
    return torch.bucketize(normed, mids).to(torch.uint8), absmax


def nf4_dequantize(codes, absmax, shape, block_size=64):
    idx = torch.arange(codes.numel(), device=codes.device) // block_size
    return (NF4_CODE.to(absmax.device)[codes.long()] * absmax[idx]).reshape(shape)


class QuantizedLinear(nn.Module):
    def __init__(self, linear, method="absmax", bits=8, group_size=None):
        super().__init__()
        out_f, in_f = linear.weight.shape
        self.shape = (out_f, in_f)
        self.method = method
        self.bits = 4 if method == "nf4" else bits
        self.group = group_size or in_f
        groups = linear.weight.detach().float().reshape(-1, self.group)
        if method == "absmax":
            q, s = absmax_quantize(groups, self.bits, dim=0)
            codes = q if self.bits == 8 else (q + 8).to(torch.uint8)
        elif method == "zeropoint":
            codes, s, zp = zeropoint_quantize(groups, self.bits, dim=0)
            self.register_buffer("zp", zp.reshape(-1).to(torch.int16))
        elif method == "nf4":
            codes, s = nf4_quantize(groups, self.group)
        else:
            raise ValueError(method)
        codes = codes.reshape(-1)
        self.register_buffer("codes", pack_int4(codes.to(torch.uint8)) if self.bits == 4 else codes)
        self.register_buffer("scales", s.reshape(-1).float())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    @classmethod
    def from_linear(cls, linear, method="absmax", bits=8, group_size=None):
        return cls(linear, method, bits, group_size)

    def forward(self, x):
        codes = unpack_int4(self.codes) if self.bits == 4 else self.codes
        if self.method == "nf4":
            w = nf4_dequantize(codes, self.scales, self.shape, self.group)
        else:
            g = codes.reshape(-1, self.group).to(torch.int32)
            if self.method == "absmax":
                g = g - 8 if self.bits == 4 else g
                w = g.float() * self.scales[:, None]
            else:
                w = (g - self.zp[:, None].to(torch.int32)).float() * self.scales[:, None]
        w = w.reshape(self.shape).to(x.dtype)
        out = x @ w.T
        return out + self.bias.to(x.dtype) if self.bias is not None else out
