"""Week 5 — quantization, from absmax int8 to QLoRA's NF4.

Storing weights in 8 or 4 bits instead of 16/32 cuts memory and memory bandwidth (the
bottleneck of decoding). Every scheme here maps a float x to an integer code q and back:

    x  ~  q * scale                      (symmetric, absmax)
    x  ~  (q - zero_point) * scale       (asymmetric, zero-point)
    x  ~  NF4_CODE[q] * absmax           (NormalFloat4, a non-uniform 16-value table)

`scale` is always the step size. `dim` is the axis *kept*, like torch's per-channel
`axis`: one scale per index along `dim`, reduced over every other axis, shaped to broadcast
against x (keepdim). dim=None: one scale for the whole tensor, shaped [1, 1, ...] (x.dim()
ones). Example: x of shape [out, in], dim=0 -> scale [out, 1] (one per row). A slice that is
all zeros gets scale 1 (not 0, which would divide by zero).

Rounding is `torch.round` (round half to even), never truncation.

Run time: `pytest katas/week5/test_quantization.py` takes about 8 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import torch
import torch.nn as nn


def absmax_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization: returns (q int8, scale in x's dtype).

        qmax  = 2**(bits - 1) - 1                 (127 for 8 bits, 7 for 4 bits)
        scale = max|x| / qmax                     (max over the slice; all-zero slice -> 1)
        q     = clamp(round(x / scale), -qmax, qmax)

    The range is symmetric: -127..127, not -128..127 (no code for -128, so that q and -q
    are both representable). The largest |x| maps to exactly +-qmax.
    Example: x = [-1.0, 0.5, 2.54], bits 8 -> scale 0.02, q = [-50, 25, 127].
    Pitfall: a scale from the mean |x| clips every large value.
    """
    raise NotImplementedError


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q * scale, in scale's dtype."""
    raise NotImplementedError


def zeropoint_quantize(
    x: torch.Tensor, bits: int = 8, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric quantization: returns (q uint8, scale in x's dtype, zero_point int32).

        lo, hi     = min(min(x), 0), max(max(x), 0)       (range widened to include 0)
        scale      = (hi - lo) / (2**bits - 1)              (hi == lo -> 1)
        zero_point = clamp(round(-lo / scale), 0, 2**bits - 1)
        q          = clamp(round(x / scale) + zero_point, 0, 2**bits - 1)

    zero_point has the same shape as scale. Because zero_point is an integer code, x = 0
    maps to q = zero_point and back to exactly 0.0 — padding and ReLU zeros stay exact.
    Same codes as `torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)`.
    """
    raise NotImplementedError


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """(q - zero_point) * scale, in scale's dtype.

    Pitfall: q is uint8 — `q - zero_point` in uint8 wraps around below zero. Widen first.
    """
    raise NotImplementedError


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes two per byte: uint8 [..., 2n] (values 0..15) -> uint8 [..., n].

    Element 2i goes in the low nibble, element 2i+1 in the high nibble:
        packed[..., i] = codes[..., 2i] | (codes[..., 2i+1] << 4)
    Example: [1, 2, 15, 0] -> [0x21, 0x0F] = [33, 15]. An odd last axis is a ValueError.
    """
    raise NotImplementedError


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int4`: uint8 [..., n] -> uint8 [..., 2n]."""
    raise NotImplementedError


# QLoRA's NormalFloat4 table: 16 float32 values in [-1, 1], sorted, with an exact 0.
# Built from quantiles of N(0, 1) (Dettmers et al. 2023, "QLoRA", appendix; bitsandbytes'
# `create_normal_map`): with offset 0.9677083,
#   8 positive values  Phi^-1(linspace(offset, 0.5, 9)[:-1]),
#   7 negative values -Phi^-1(linspace(offset, 0.5, 8)[:-1]),
#   and 0, all divided by the largest, so the ends are exactly -1 and 1.
# Replace None with the float32 tensor (compute it with torch.distributions.Normal(0, 1).icdf,
# or copy the paper's table).
NF4_CODE: torch.Tensor | None = None


def nf4_quantize(x: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise NF4: returns (codes uint8 [x.numel()], absmax float32 [n_blocks]).

    Flatten x (row-major), cut it into blocks of `block_size` (the last block may be
    short), and for each block: absmax = max|x| over the block (all-zero block -> 1);
    code = index of the NF4_CODE value nearest to x / absmax. Codes are not packed here.
    """
    raise NotImplementedError


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, shape, block_size: int = 64) -> torch.Tensor:
    """NF4_CODE[codes] * absmax of each element's block, reshaped to `shape` (float32).

    Pass the `block_size` used to quantize: it cannot be recovered from the sizes alone
    (150 codes in 3 blocks may be blocks of 50, or of 64, 64 and 22).
    """
    raise NotImplementedError


class QuantizedLinear(nn.Module):
    """A Linear layer whose weight is stored quantized and dequantized on the fly.

    `QuantizedLinear(linear, method="absmax", bits=8, group_size=None)` quantizes the weight
    of an `nn.Linear` (`QuantizedLinear.from_linear(...)` is the same, already written):
      - method "absmax" (bits 8 or 4), "zeropoint" (bits 8 or 4) or "nf4" (always 4 bits);
      - group_size=None: one scale per output row; otherwise one scale per run of
        `group_size` consecutive weights within a row (it must divide in_features);
        for "nf4" the NF4 block is the row (or the group);
      - 4-bit codes are stored packed, two per byte (`pack_int4`). Absmax codes are signed:
        store them offset (q + 2**(bits-1)) or as two's-complement nibbles, your choice.

    Memory contract: everything the layer stores lives in its `state_dict()` (register codes,
    scales and zero points as buffers) and there is no float copy of the weight: codes take
    out*in bytes at 8 bits, out*in/2 at 4 bits, plus the scales (and zero points) and bias.

    `forward(x: [..., in]) -> [..., out]` = x @ W_hat.T + bias, with W_hat the dequantized
    weight, in x's dtype. Keep the bias in float.
    """

    def __init__(self, linear: nn.Linear, method: str = "absmax", bits: int = 8, group_size: int | None = None):
        super().__init__()
        raise NotImplementedError

    @classmethod
    def from_linear(cls, linear: nn.Linear, method: str = "absmax", bits: int = 8,
                    group_size: int | None = None) -> "QuantizedLinear":
        return cls(linear, method, bits, group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
