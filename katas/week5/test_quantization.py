"""Public tests for week5/quantization.

Oracles: torch's own quantizer (`torch.quantize_per_tensor` / `quantize_per_channel`, which
round half to even like `torch.round`), the closed-form formulas of the stub, the NF4 table
rebuilt here from normal quantiles, golden fixtures from the reference, and a float GPT-2.
"""

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student
from graders.testing import FLOAT32_REDUCTION, hinted, randn

quant = student("week5.quantization")

ROOT = Path(__file__).resolve().parents[2]


def keep_dims(x, dim):
    """The axes a per-`dim` statistic reduces over (all of them for dim=None)."""
    return list(range(x.dim())) if dim is None else [d for d in range(x.dim()) if d != dim % x.dim()]


def torch_quantize(x, scale, zero_point, dim, dtype):
    """Codes from torch's reference quantizer (deprecated API: silence its warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dim is None:
            q = torch.quantize_per_tensor(x, float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]), dtype)
        else:
            q = torch.quantize_per_channel(x, scale.reshape(-1).double(), zero_point.reshape(-1).long(),
                                           dim % x.dim(), dtype)
    return q.int_repr()


def nf4_table_from_quantiles():
    """QLoRA's NF4 construction (bitsandbytes `create_normal_map`), in float64."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    offset = 0.9677083  # (1 - 1/(2*15) + 1 - 1/(2*16)) / 2: the paper's quantile for the extremes
    positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive])
    return (values / values.abs().max()).sort().values


def absmax_oracle(x, dim):
    """(scale, codes) of 8-bit absmax: the closed-form scale and torch's quantizer (only through oracle(...))."""
    scale = x.abs().amax(dim=keep_dims(x, dim), keepdim=True) / 127
    return scale, torch_quantize(x, scale, torch.zeros_like(scale, dtype=torch.long), dim, torch.qint8)


def student_nf4_code():
    code = quant.NF4_CODE
    check.that(code is not None, "NOT STARTED: NF4_CODE is still None in week5/quantization.py", hint="nf4_table")
    return code


# --- absmax ------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_absmax_int8_matches_torch_quantizer(dim):
    x = randn(6, 9, seed=1, scale=2.0)
    expected = oracle(absmax_oracle, x, dim)  # (scale, codes)
    q, scale = quant.absmax_quantize(x, bits=8, dim=dim)
    check.close(scale, expected[0], hint="scale_from_mean", what="scale")
    check.equal(q, expected[1], hint="truncation", what="codes")


@pytest.mark.points(1)
def test_absmax_worked_example():
    q, scale = quant.absmax_quantize(torch.tensor([-1.0, 0.5, 2.54]))
    check.close(scale, torch.tensor([2.54 / 127]), what="scale", hint="scale_from_mean")
    check.equal(q, torch.tensor([-50, 25, 127], dtype=torch.int8), hint="truncation", what="codes")


@pytest.mark.points(2)
@pytest.mark.parametrize("bits", [8, 4])
def test_absmax_symmetric_range(bits):
    # The largest magnitude is negative: it must map to -qmax, never to -qmax - 1.
    qmax = {8: 127, 4: 7}[bits]  # 2 ** (bits - 1) - 1
    x = randn(5, 16, seed=2)
    x[:, 3] = -4.0 - torch.arange(5.0)
    q, scale = quant.absmax_quantize(x, bits=bits, dim=0)
    check.that(int(q.min()) >= -qmax and int(q.max()) <= qmax,
               f"{bits}-bit absmax codes must lie in [-{qmax}, {qmax}], got [{int(q.min())}, {int(q.max())}]",
               hint="wrong_clamp_range", about=q)
    check.equal(q[:, 3], torch.full((5,), -qmax, dtype=torch.int8), hint="wrong_clamp_range",
                what="codes of each row's largest magnitude")
    check.close(scale, x.abs().amax(dim=1, keepdim=True) / qmax, hint="wrong_clamp_range", what="scale")


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), bits=st.sampled_from([8, 4]), dim=st.sampled_from([None, 0, 1]),
       magnitude=st.sampled_from([1e-3, 1.0, 50.0]))
def test_absmax_round_trip_within_half_a_step(seed, bits, dim, magnitude):
    x = randn(4, 11, seed=seed, scale=magnitude)
    q, scale = quant.absmax_quantize(x, bits=bits, dim=dim)
    err = (quant.absmax_dequantize(q, scale) - x).abs()
    worst = oracle(lambda: float((err / (x.abs().amax(dim=keep_dims(x, dim), keepdim=True) / (2 ** (bits - 1) - 1))).max()))
    check.that(worst <= 0.5 + 1e-4, f"round-trip error must be at most half a step, got {worst:.3f} steps",
               hint="truncation", about=q)


@pytest.mark.points(1)
def test_absmax_all_zero_slice_gets_scale_one():
    x = randn(3, 5, seed=3)
    x[1] = 0.0
    q, scale = quant.absmax_quantize(x, dim=0)
    check.close(scale[1], torch.ones(1), what="scale of the all-zero row", hint="zero_slice_scale")
    check.equal(q[1], torch.zeros(5, dtype=torch.int8), what="codes of the all-zero row", hint="zero_slice_scale")


# --- zero-point --------------------------------------------------------------------------


def zeropoint_oracle(x, bits, dim):
    """(scale, zero_point) in closed form (called only through oracle(...))."""
    levels = 2**bits - 1
    lo = x.amin(dim=keep_dims(x, dim), keepdim=True).clamp(max=0)
    hi = x.amax(dim=keep_dims(x, dim), keepdim=True).clamp(min=0)
    scale = (hi - lo) / levels
    zero_point = torch.round(-lo / scale).clamp(0, levels).to(torch.int32)
    return scale, zero_point


@pytest.mark.points(2)
@pytest.mark.parametrize("dim", [None, 0, 1])
@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_zeropoint_uint8_matches_torch_quantizer(dim, shift):
    x = randn(5, 8, seed=4, scale=2.0) + shift  # shift 1.5: mostly positive rows
    expected = oracle(zeropoint_oracle, x, 8, dim)  # (scale, zero_point)
    q, scale, zero_point = quant.zeropoint_quantize(x, bits=8, dim=dim)
    check.close(scale, expected[0], what="scale", hint="zero_point_exact")
    check.equal(zero_point, expected[1], what="zero_point", hint="zero_point_exact")
    check.equal(q, torch_quantize(x, expected[0], expected[1], dim, torch.quint8), what="codes", hint="truncation")


@pytest.mark.points(2)
def test_zeropoint_positive_data_widens_range_to_zero():
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(5)) * 3 + 1  # all in [1, 4]
    q, scale, zero_point = quant.zeropoint_quantize(x, dim=0)
    check.equal(zero_point, torch.zeros(4, 1, dtype=torch.int32), what="zero_point", hint="zero_point_exact")
    check.close(scale, x.amax(dim=1, keepdim=True) / 255, what="scale", hint="zero_point_exact")


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), bits=st.sampled_from([8, 4]), dim=st.sampled_from([None, 0, 1]))
def test_zeropoint_zero_is_exact_and_error_within_half_a_step(seed, bits, dim):
    x = randn(6, 7, seed=seed, scale=3.0) + 0.5
    x[::2, ::3] = 0.0
    q, scale, zero_point = quant.zeropoint_quantize(x, bits=bits, dim=dim)
    back = quant.zeropoint_dequantize(q, scale, zero_point)
    check.equal(back[x == 0], torch.zeros(int((x == 0).sum())), what="dequantized zeros", hint="zero_point_exact")
    worst = oracle(lambda: float(((back - x).abs() / zeropoint_oracle(x, bits, dim)[0]).max()))
    check.that(worst <= 0.5 + 1e-4, f"round-trip error must be at most half a step, got {worst:.3f} steps",
               hint="truncation", about=q)


@pytest.mark.points(1)
def test_zeropoint_dequantize_does_not_wrap_uint8():
    q = torch.tensor([0, 3, 255], dtype=torch.uint8)
    scale, zero_point = torch.tensor([0.5]), torch.tensor([10], dtype=torch.int32)
    check.close(quant.zeropoint_dequantize(q, scale, zero_point), torch.tensor([-5.0, -3.5, 122.5]),
                hint="zero_point_exact")


# --- properties shared by both schemes ---------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("bits,dim,seed", [(8, None, 20), (8, 0, 21), (4, 1, 22), (4, None, 23), (8, 1, 24)])
def test_quantize_is_idempotent(seed, bits, dim):
    x = randn(5, 6, seed=seed)
    q, s = quant.absmax_quantize(x, bits=bits, dim=dim)
    q2, s2 = quant.absmax_quantize(quant.absmax_dequantize(q, s), bits=bits, dim=dim)
    check.equal(q2, q, what="absmax codes after a second round trip", hint="truncation")
    check.close(s2, s, what="absmax scale after a second round trip", hint="scale_from_mean")
    q, s, z = quant.zeropoint_quantize(x, bits=bits, dim=dim)
    once = quant.zeropoint_dequantize(q, s, z)
    q2, s2, z2 = quant.zeropoint_quantize(once, bits=bits, dim=dim)
    check.close(quant.zeropoint_dequantize(q2, s2, z2), once, what="zero-point round trip of a round trip",
                hint="truncation")


def per_channel_scale(x, dim):
    """absmax / 127 of each index of `dim`, shaped to broadcast (called only through oracle(...))."""
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    return torch.stack([x.select(dim, i).abs().max() for i in range(x.shape[dim])]).reshape(shape) / 127


@pytest.mark.points(2)
def test_per_channel_scales_one_per_index_of_dim():
    x = randn(2, 3, 4, seed=6)
    for dim in (0, 1, 2, -1):
        _, scale = quant.absmax_quantize(x, dim=dim)
        check.close(scale, oracle(per_channel_scale, x, dim), what=f"scale for dim={dim}", hint="per_channel_axis")
    _, scale = quant.absmax_quantize(x, dim=None)
    check.close(scale, (x.abs().max() / 127).reshape(1, 1, 1), what="scale for dim=None", hint="per_channel_axis")


@pytest.mark.points(2)
def test_per_channel_beats_per_tensor_with_outlier_rows():
    w = randn(16, 64, seed=7) * 0.02
    w[3] *= 100.0  # one outlier row sets the per-tensor scale for everyone
    w[11] *= 30.0
    errors = {}
    for dim in (None, 0):
        q, s = quant.absmax_quantize(w, bits=8, dim=dim)
        errors[dim] = float((quant.absmax_dequantize(q, s) - w).pow(2).mean())
    check.that(errors[0] < 0.2 * errors[None],
               f"per-row scales should cut the error of per-tensor absmax by 5x on these weights: "
               f"mse {errors[0]:.3g} (dim=0) vs {errors[None]:.3g} (dim=None)", hint="per_channel_axis")


# --- int4 packing ------------------------------------------------------------------------


@pytest.mark.points(1)
def test_pack_int4_worked_example():
    packed = quant.pack_int4(torch.tensor([1, 2, 15, 0], dtype=torch.uint8))
    check.equal(packed, torch.tensor([1 + 16 * 2, 15], dtype=torch.uint8), hint="nibble_order")


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), lead=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 6))
def test_pack_int4_layout_and_round_trip(seed, lead, n):
    codes = torch.randint(0, 16, (*lead, 2 * n), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    packed = quant.pack_int4(codes)
    check.equal(packed, (codes[..., 0::2].int() + 16 * codes[..., 1::2].int()).to(torch.uint8), hint="nibble_order")
    check.equal(quant.unpack_int4(packed), codes, what="unpack_int4(pack_int4(codes))", hint="nibble_order")


@pytest.mark.points(1)
def test_pack_int4_rejects_odd_length():
    with check.raises(ValueError, hint="pack_odd_length"):
        quant.pack_int4(torch.zeros(3, dtype=torch.uint8))


# --- NF4 ---------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_nf4_table_is_qloras():
    code = student_nf4_code()
    check.close(code.double(), nf4_table_from_quantiles(), hint="nf4_table", rtol=0.0, atol=1e-6,
                reason="the QLoRA table is published as float32 values of the float64 quantiles")
    check.that(bool((code == 0).any()) and float(code.min()) == -1.0 and float(code.max()) == 1.0,
               "NF4_CODE must contain an exact 0 and end at exactly -1 and 1", hint="nf4_table")


@pytest.mark.points(1)
def test_nf4_table_is_sixteen_float32_values():
    code = student_nf4_code()
    check.that(isinstance(code, torch.Tensor), f"NF4_CODE should be a torch.Tensor, got {type(code).__name__}",
               hint="nf4_table")
    layout = [str(code.dtype), list(code.shape)]
    check.equal(layout, ["torch.float32", [16]], what="NF4_CODE's dtype and shape", hint="nf4_table")


def nf4_oracle(x, block_size, table):
    """(codes, absmax per block) by the definition (called only through oracle(...))."""
    flat = x.flatten().double()
    absmax = torch.stack([flat[i:i + block_size].abs().max() for i in range(0, flat.numel(), block_size)])
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)  # an all-zero block gets absmax 1
    scales = torch.cat([a.expand(min(block_size, flat.numel() - i * block_size)) for i, a in enumerate(absmax)])
    codes = (flat[:, None] / scales[:, None] - table[None, :]).abs().argmin(dim=1)
    return codes.to(torch.uint8), absmax.float()


@pytest.mark.points(2)
@pytest.mark.parametrize("shape,block_size", [((4, 32), 64), ((3, 50), 64), ((7, 9), 16), ((5,), 2)])
def test_nf4_blocks_and_nearest_codes(shape, block_size):
    x = randn(*shape, seed=8, scale=0.1)
    x.view(-1)[::13] *= 8.0  # a few large values, so blocks have different absmax
    expected = oracle(nf4_oracle, x, block_size, nf4_table_from_quantiles())  # (codes, absmax)
    codes, absmax = quant.nf4_quantize(x, block_size=block_size)
    check.close(absmax, expected[1], what="absmax per block", hint="nf4_blocks")
    check.equal(codes, expected[0], what="codes", hint="nf4_blocks")
    back = quant.nf4_dequantize(codes, absmax, x.shape, block_size=block_size)
    check.close(back, (nf4_table_from_quantiles()[expected[0].long()] * torch.cat(
        [a.expand(min(block_size, x.numel() - i * block_size)) for i, a in enumerate(expected[1].double())]
    )).float().reshape(x.shape), what="nf4_dequantize", hint="nf4_blocks")


@pytest.mark.points(1)
def test_nf4_default_block_size_is_64():
    """Without block_size, nf4_quantize and nf4_dequantize cut blocks of 64 (the signatures'
    default): 150 values are blocks of 64, 64 and 22."""
    x = randn(3, 50, seed=40, scale=0.1)
    x.view(-1)[::13] *= 8.0
    expected = oracle(nf4_oracle, x, 64, nf4_table_from_quantiles())  # (codes, absmax)
    codes, absmax = quant.nf4_quantize(x)
    check.close(absmax, expected[1], what="absmax per block of nf4_quantize(x)", hint="nf4_default_block_size")
    check.equal(codes, expected[0], what="codes of nf4_quantize(x)", hint="nf4_default_block_size")
    back = quant.nf4_dequantize(codes, absmax, x.shape)
    check.close(back, (nf4_table_from_quantiles()[expected[0].long()] * torch.cat(
        [a.expand(min(64, x.numel() - i * 64)) for i, a in enumerate(expected[1].double())]
    )).float().reshape(x.shape), what="nf4_dequantize(codes, absmax, shape)", hint="nf4_default_block_size")


@pytest.mark.points(1)
def test_nf4_matches_golden_fixture():
    data = fixtures.load("week5/quantization")
    codes, absmax = quant.nf4_quantize(data["nf4_x"], block_size=data["nf4_block_size"])
    check.equal(codes, data["nf4_codes"], hint="nf4_blocks")
    check.close(absmax, data["nf4_absmax"], hint="nf4_blocks")
    check.close(quant.nf4_dequantize(codes, absmax, data["nf4_x"].shape, block_size=data["nf4_block_size"]), data["nf4_back"], hint="nf4_table")


# --- QuantizedLinear ---------------------------------------------------------------------


def fake_quantized_weight(w, method, bits, group_size):
    """W_hat, the dequantized weight, by the closed-form formulas (one scale per group).
    Called only through oracle(...) (directly or from another oracle)."""
    out_f, in_f = w.shape
    g = w.double().reshape(-1, group_size or in_f)
    if method == "absmax":
        qmax = 2 ** (bits - 1) - 1
        s = g.abs().amax(dim=1, keepdim=True) / qmax
        hat = torch.round(g / s).clamp(-qmax, qmax) * s
    elif method == "zeropoint":
        levels = 2**bits - 1
        lo, hi = g.amin(dim=1, keepdim=True).clamp(max=0), g.amax(dim=1, keepdim=True).clamp(min=0)
        s = (hi - lo) / levels
        zp = torch.round(-lo / s).clamp(0, levels)
        hat = (torch.round(g / s) + zp).clamp(0, levels).sub(zp) * s
    else:
        table = nf4_table_from_quantiles()
        a = g.abs().amax(dim=1, keepdim=True)
        hat = table[(g[..., None] / a[..., None] - table).abs().argmin(-1)] * a
    return hat.reshape(out_f, in_f)


CONFIGS = [("absmax", 8, None), ("absmax", 4, 16), ("zeropoint", 8, None), ("zeropoint", 4, 8),
           ("nf4", 4, None), ("nf4", 4, 16)]


def quantized_linear_oracle(linear, x, method, bits, group_size):
    """x @ W_hat.T + b in float64 (called only through oracle(...))."""
    with torch.no_grad():
        return (x.double() @ fake_quantized_weight(linear.weight, method, bits, group_size).T
                + linear.bias.double()).float()


@pytest.mark.points(3)
@pytest.mark.parametrize("method,bits,group_size", CONFIGS)
def test_quantized_linear_is_linear_with_dequantized_weight(method, bits, group_size):
    torch.manual_seed(9)
    linear = nn.Linear(32, 12)
    layer = quant.QuantizedLinear(linear, method=method, bits=bits, group_size=group_size)
    x = randn(3, 5, 32, seed=10)
    expected = oracle(quantized_linear_oracle, linear, x, method, bits, group_size)
    with torch.no_grad():
        out = layer(x)
    check.close(out, expected, hint="quantized_linear_output", **FLOAT32_REDUCTION)  # the codes are exact


@pytest.mark.points(2)
@pytest.mark.parametrize("method,bits,group_size", CONFIGS)
def test_quantized_linear_stores_packed_codes(method, bits, group_size):
    out_f, in_f = 24, 64
    torch.manual_seed(11)
    layer = quant.QuantizedLinear(nn.Linear(in_f, out_f), method=method, bits=bits,
                                              group_size=group_size)
    state = layer.state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    size = oracle(storage_bounds, out_f, in_f, bits, group_size)  # (bytes of codes, most bytes in all)
    check.that(size[0] <= nbytes <= size[1],
               f"a {bits}-bit {method} QuantizedLinear({in_f} -> {out_f}, group_size={group_size}) should store "
               f"{size[0]} bytes of codes plus scales and bias (at most {size[1]} bytes in its state_dict); "
               f"it stores {nbytes}: {({k: (tuple(v.shape), str(v.dtype)) for k, v in state.items()})}",
               hint="packed_memory")


def storage_bounds(out_f, in_f, bits, group_size):
    """(bytes of packed codes, codes + float32 scale and int32 zero point per group + bias): only through oracle(...)."""
    codes = out_f * in_f * bits // 8
    groups = out_f * in_f // (group_size or in_f)
    return codes, codes + groups * 8 + out_f * 4


TOKENIZER = ROOT / "checkpoints" / "tokenizer" / "tokenizer.json"
TRAINED = ROOT / "checkpoints" / "gpt2-tiny-trained"


def corpus_ids(n_tokens):
    import tiktoken

    data = json.loads(TOKENIZER.read_text(encoding="utf-8"))
    merges = [bytes.fromhex(a) + bytes.fromhex(b) for a, b in data["merges"]]
    ranks = {bytes([i]): i for i in range(256)} | {m: 256 + r for r, m in enumerate(merges)}
    enc = tiktoken.Encoding(name="llm-katas-512", pat_str=data["pattern"], mergeable_ranks=ranks,
                            special_tokens=data["special_tokens"])
    text = (ROOT / "fixtures" / "corpus" / "corpus.txt").read_text(encoding="utf-8")
    return enc.encode(text[:20000], allowed_special="all")[:n_tokens]


class ThroughStudent(nn.Module):
    """Stands in for a GPT-2 Conv1D and calls the student's layer through the harness."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer  # a harness proxy, kept as a plain attribute

    def forward(self, x):
        return self.layer(x)


def top1(model, ids):
    """The float model's next-token argmax (called only through oracle(...))."""
    with torch.no_grad():
        return model(ids).logits.argmax(-1)


def top1_with_quantized_layers(model, ids, method, bits):
    """Put the student's QuantizedLinear in place of every Conv1D of `model`; its next-token argmax."""
    with torch.no_grad():
        for block in model.transformer.h:
            for parent, name in ((block.attn, "c_attn"), (block.attn, "c_proj"), (block.mlp, "c_fc"),
                                 (block.mlp, "c_proj")):
                conv = getattr(parent, name)  # Conv1D: weight [in, out]
                linear = nn.Linear(*conv.weight.shape)
                linear.weight.copy_(conv.weight.T)
                linear.bias.copy_(conv.bias)
                layer = quant.QuantizedLinear(linear, method=method, bits=bits)
                setattr(parent, name, ThroughStudent(layer))
        return model(ids).logits.argmax(-1)  # withhold: input (the student's layers compute it)


@pytest.mark.points(3)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method,bits,min_agreement", [("absmax", 8, 0.97), ("nf4", 4, 0.88)])
def test_quantized_tiny_gpt2_keeps_its_top1_predictions(method, bits, min_agreement):
    if not TRAINED.is_dir():
        pytest.skip("checkpoints/gpt2-tiny-trained is not built")
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(TRAINED).eval()
    ids = torch.tensor(corpus_ids(4 * 96)).reshape(4, 96)
    float_top1 = oracle(top1, model, ids)  # before the student's layers go in
    quant_top1 = top1_with_quantized_layers(model, ids, method, bits)
    agreement = oracle(lambda: float((quant_top1 == float_top1).double().mean()))
    check.that(agreement >= min_agreement,
               f"{method} ({bits}-bit, per-row) GPT-2 should agree with the float model's next-token argmax "
               f"on at least {min_agreement:.0%} of positions; it agrees on {agreement:.1%}",
               hint="quantized_linear_output")


# --- GPU throughput ----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.throughput
@pytest.mark.points(1)
@pytest.mark.parametrize("method,bits", [("absmax", 8), ("nf4", 4)])
def test_quantized_linear_gpu_throughput(method, bits):
    torch.manual_seed(12)
    linear = nn.Linear(2048, 2048).cuda().half()
    layer = quant.QuantizedLinear(linear, method=method, bits=bits)
    x = torch.randn(64, 2048, device="cuda", dtype=torch.float16)
    from graders import throughput

    with torch.no_grad():
        # dequantize-then-matmul reads 2-4x fewer weight bytes but does extra elementwise work;
        # a vectorised layer stays within 10x of cuBLAS, a Python loop over rows does not.
        throughput.assert_within(lambda: layer(x), lambda: linear(x), factor=10.0,
                                 what=f"QuantizedLinear({method}) forward", hint="quantized_linear_output")


# --- every rule of the docstring: ties, zero slices, extreme rows, dtypes, arguments, shapes ---


@pytest.mark.points(1)
def test_rounding_is_half_to_even():
    # absmax 127 -> scale exactly 1: the codes are round(x) itself
    q, _ = quant.absmax_quantize(torch.tensor([127.0, 0.5, 1.5, 2.5, -2.5, -0.5, 3.5]))
    check.equal(q, torch.tensor([127, 0, 2, 2, -2, 0, 4], dtype=torch.int8), hint="round_half_even",
                what="absmax codes of exact halves")
    # lo = -2.5, hi = 252.5 -> scale exactly 1 and zero_point = round(2.5) = 2
    q, _, zero_point = quant.zeropoint_quantize(torch.tensor([-2.5, 252.5, 0.5, 1.5, 10.5]))
    check.equal(zero_point, torch.tensor([2], dtype=torch.int32), hint="round_half_even", what="zero_point")
    check.equal(q, torch.tensor([0, 254, 2, 4, 12], dtype=torch.uint8), hint="round_half_even",
                what="zero-point codes of exact halves")


@pytest.mark.points(1)
def test_all_zero_slices_and_blocks_get_scale_one():
    x = randn(3, 8, seed=30)
    x[1] = 0.0
    q, scale, zero_point = quant.zeropoint_quantize(x, dim=0)
    check.close(scale[1], torch.ones(1), what="zero-point scale of the all-zero row", hint="zero_slice_scale")
    check.equal(zero_point[1], torch.zeros(1, dtype=torch.int32), what="zero_point of the all-zero row",
                hint="zero_slice_scale")
    check.equal(q[1], torch.zeros(8, dtype=torch.uint8), what="codes of the all-zero row", hint="zero_slice_scale")
    codes, absmax = quant.nf4_quantize(x, block_size=8)
    check.close(absmax, torch.cat([x[0].abs().max()[None], torch.ones(1), x[2].abs().max()[None]]),
                what="NF4 absmax per block (the middle block is all zeros)", hint="zero_slice_scale")
    back = quant.nf4_dequantize(codes, absmax, x.shape, block_size=8)
    check.equal(back[1], torch.zeros(8), what="NF4 round trip of the all-zero block", hint="zero_slice_scale")


def extreme_rows(dtype):
    """Rows of magnitude 1e30 and 1e-30, an all-zero row, a row with one outlier, a row of 1e-9 (inputs)."""
    x = randn(6, 16, seed=31, dtype=torch.float64)
    x[0] *= 1e30
    x[1] *= 1e-30
    x[2] = 0.0
    x[3, 5] = 1e4
    x[4] *= 1e-9
    return x.to(dtype)


def absmax_extreme_oracle(x):
    """(scale per row, codes) of 8-bit absmax in x's dtype; codes from float64 (only through oracle(...))."""
    amax = x.abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax == 0, torch.ones_like(amax), amax / 127)
    return scale, torch.round(x.double() / scale.double()).clamp(-127, 127).to(torch.int8)


def zeropoint_extreme_oracle(x):
    """(scale, zero_point, codes) of 8-bit zero-point per row, all-zero rows included (only through oracle(...))."""
    lo, hi = x.amin(dim=1, keepdim=True).clamp(max=0), x.amax(dim=1, keepdim=True).clamp(min=0)
    scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / 255)
    zero_point = torch.round(-lo.double() / scale.double()).clamp(0, 255)
    codes = (torch.round(x.double() / scale.double()) + zero_point).clamp(0, 255)
    return scale, zero_point.to(torch.int32), codes.to(torch.uint8)


EXACT_SCALE = {"rtol": 1e-6, "atol": 0.0,
               "reason": "scales down to 1e-32: only a relative tolerance tells them apart (the dtype table's atol "
                         "would accept any tiny number); max|x| / qmax is one correctly rounded division"}


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_with_huge_tiny_zero_and_outlier_magnitudes(dtype):
    x = extreme_rows(dtype)
    expected = oracle(absmax_extreme_oracle, x)  # (scale, codes)
    q, scale = quant.absmax_quantize(x, dim=0)
    check.close(scale[[0, 1, 4]], expected[0][[0, 1, 4]], hint="scale_epsilon", what="absmax scales of the "
                "rows of magnitude 1e30, 1e-30 and 1e-9", **EXACT_SCALE)
    check.close(scale, expected[0], hint="scale_from_mean", what="absmax scales", **EXACT_SCALE)
    check.equal(q, expected[1], hint="truncation", what="absmax codes")
    expected = oracle(zeropoint_extreme_oracle, x)  # (scale, zero_point, codes)
    q, scale, zero_point = quant.zeropoint_quantize(x, dim=0)
    check.close(scale[[0, 1, 4]], expected[0][[0, 1, 4]], hint="scale_epsilon", what="zero-point scales of the "
                "rows of magnitude 1e30, 1e-30 and 1e-9", **EXACT_SCALE)
    check.close(scale, expected[0], hint="zero_point_exact", what="zero-point scales", **EXACT_SCALE)
    check.equal(zero_point, expected[1], hint="zero_point_exact", what="zero points")
    check.equal(q, expected[2], hint="truncation", what="zero-point codes")
    want = oracle(nf4_oracle, x, 16, nf4_table_from_quantiles())  # (codes, absmax): one block per row
    codes, absmax = quant.nf4_quantize(x, block_size=16)
    check.close(absmax, want[1], hint="scale_epsilon", what="NF4 absmax per block", **EXACT_SCALE)
    check.equal(codes, want[0], hint="nf4_blocks", what="NF4 codes")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_quantizers_keep_the_dtype(dtype):
    """scale in x's dtype, dequantized in scale's dtype; codes within one of the float64 codes
    (x / scale rounded in float16 or bfloat16 may land on the other side of a half)."""
    x = randn(4, 12, seed=32, scale=3.0, dtype=dtype)
    expected = oracle(absmax_extreme_oracle, x)  # (scale, codes)
    q, scale = quant.absmax_quantize(x, dim=0)
    back = quant.absmax_dequantize(q, scale)
    dtypes = [str(scale.dtype), str(back.dtype)]
    check.equal(dtypes, [str(dtype)] * 2, hint="dtype_changed", what="dtypes of absmax (scale, dequantized)")
    check.close(scale, expected[0], hint="scale_from_mean", what="absmax scale")
    worst = oracle(lambda: int((q.int() - expected[1].int()).abs().max()))
    check.that(worst <= (0 if dtype == torch.float64 else 1), f"absmax codes are off by up to {worst}",
               hint="truncation", about=q)
    expected = oracle(zeropoint_extreme_oracle, x)  # (scale, zero_point, codes)
    q, scale, zero_point = quant.zeropoint_quantize(x, dim=0)
    back = quant.zeropoint_dequantize(q, scale, zero_point)
    dtypes = [str(scale.dtype), str(zero_point.dtype), str(back.dtype)]
    check.equal(dtypes, [str(dtype), "torch.int32", str(dtype)], hint="dtype_changed",
                what="dtypes of zero-point (scale, zero_point, dequantized)")
    check.close(scale, expected[0], hint="zero_point_exact", what="zero-point scale")
    codes, absmax = quant.nf4_quantize(x, block_size=16)
    back = quant.nf4_dequantize(codes, absmax, x.shape, block_size=16)
    dtypes = [str(codes.dtype), str(absmax.dtype), str(back.dtype)]
    check.equal(dtypes, ["torch.uint8", "torch.float32", "torch.float32"], hint="dtype_changed",
                what="dtypes of NF4 (codes, absmax, dequantized): always uint8 and float32")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dequantize_returns_the_scales_dtype(dtype):
    q = torch.tensor([[-127, 3, 64], [5, -8, 127]], dtype=torch.int8)
    scale = torch.tensor([[0.5], [0.125]], dtype=dtype)
    check.close(quant.absmax_dequantize(q, scale), (q.double() * scale.double()).to(dtype), hint="dtype_changed",
                what="absmax_dequantize")
    qz, zp = torch.tensor([[0, 10, 255], [7, 200, 3]], dtype=torch.uint8), torch.tensor([[10], [3]], dtype=torch.int32)
    check.close(quant.zeropoint_dequantize(qz, scale, zp), ((qz.double() - zp.double()) * scale.double()).to(dtype),
                hint="dtype_changed", what="zeropoint_dequantize")


@pytest.mark.points(1)
@pytest.mark.parametrize("scheme,bits", [("absmax", 4), ("absmax", 6), ("zeropoint", 4), ("zeropoint", 6)])
def test_bits_is_used(scheme, bits):
    x = randn(3, 10, seed=33, scale=2.0)
    if scheme == "absmax":
        q, scale = quant.absmax_quantize(x, bits=bits, dim=0)
        check.close(scale, x.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1), hint="ignored_argument",
                    what=f"{bits}-bit absmax scale")
    else:
        expected = oracle(zeropoint_oracle, x, bits, 0)  # (scale, zero_point)
        q, scale, zero_point = quant.zeropoint_quantize(x, bits=bits, dim=0)
        check.close(scale, expected[0], hint="ignored_argument", what=f"{bits}-bit zero-point scale")
        check.equal(zero_point, expected[1], hint="ignored_argument", what=f"{bits}-bit zero points")


def linear_with(weight, bias):
    """An nn.Linear holding the given (seeded) weight and bias."""
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


@pytest.mark.points(1)
@pytest.mark.parametrize("method,bits", [("absmax", 4), ("zeropoint", 8), ("nf4", 4)])
def test_quantized_linear_uses_group_size(method, bits):
    """Groups of 8 columns whose magnitudes differ by 1000x: one scale per row would round the small
    groups to zero."""
    weight = randn(6, 32, seed=34) * torch.tensor([1.0] * 8 + [1e-3] * 8 + [0.1] * 8 + [3.0] * 8)
    linear = linear_with(weight, randn(6, seed=35))
    layer = quant.QuantizedLinear(linear, method=method, bits=bits, group_size=8)
    x = randn(3, 32, seed=36)
    expected = oracle(quantized_linear_oracle, linear, x, method, bits, 8)
    with torch.no_grad():
        out = layer(x)
    check.close(out, expected, hint="ignored_argument", **FLOAT32_REDUCTION)


@pytest.mark.points(1)
@pytest.mark.parametrize("build", ["QuantizedLinear", "from_linear"])
def test_quantized_linear_defaults_are_absmax_8_bits_per_row(build):
    """QuantizedLinear(linear) and QuantizedLinear.from_linear(linear) with nothing else given:
    method="absmax", bits=8, group_size=None (one scale per output row), the signatures' defaults."""
    linear = linear_with(randn(5, 24, seed=41) * torch.linspace(0.01, 3.0, 24), randn(5, seed=42))
    layer = quant.QuantizedLinear(linear) if build == "QuantizedLinear" else quant.QuantizedLinear.from_linear(linear)
    x = randn(3, 24, seed=43)
    expected = oracle(quantized_linear_oracle, linear, x, "absmax", 8, None)
    with torch.no_grad():
        out = layer(x)
    check.close(out, expected, hint="quantized_linear_defaults", what=f"{build}(linear) output", **FLOAT32_REDUCTION)


@pytest.mark.points(1)
@pytest.mark.parametrize("method,bits", [("absmax", 8), ("zeropoint", 4)])
def test_quantized_linear_small_groups(method, bits):
    """group_size may be any divisor of in_features, even 2: one scale per pair of weights."""
    linear = linear_with(randn(4, 16, seed=37), randn(4, seed=38))
    layer = quant.QuantizedLinear(linear, method=method, bits=bits, group_size=2)
    x = randn(3, 16, seed=39)
    expected = oracle(quantized_linear_oracle, linear, x, method, bits, 2)
    with torch.no_grad():
        out = layer(x)
    check.close(out, expected, hint="ignored_argument", **FLOAT32_REDUCTION)


@pytest.mark.points(1)
@pytest.mark.parametrize("method,bits,group_size", [("absmax", 8, None), ("zeropoint", 4, 8), ("nf4", 4, 16)])
def test_square_quantized_linear(method, bits, group_size):
    """in_features == out_features: x @ W_hat (no transpose) runs here, and is wrong."""
    linear = linear_with(randn(32, 32, seed=37), randn(32, seed=38))
    layer = quant.QuantizedLinear(linear, method=method, bits=bits, group_size=group_size)
    x = randn(2, 3, 32, seed=39)
    expected = oracle(quantized_linear_oracle, linear, x, method, bits, group_size)
    with torch.no_grad():
        out = layer(x)
    check.close(out, expected, hint="quantized_linear_output", **FLOAT32_REDUCTION)


def quantized_linear_float64(linear, x, method, bits, group_size):
    """x @ W_hat.T + b, all in float64 (called only through oracle(...))."""
    with torch.no_grad():
        return x @ fake_quantized_weight(linear.weight, method, bits, group_size).T + linear.bias.double()


@pytest.mark.points(1)
@pytest.mark.parametrize("method,bits", [("absmax", 8), ("nf4", 4)])
def test_quantized_linear_output_in_the_inputs_dtype(method, bits):
    linear = linear_with(randn(12, 16, seed=40), randn(12, seed=41))
    layer = quant.QuantizedLinear(linear, method=method, bits=bits)
    x64 = randn(3, 16, seed=42, dtype=torch.float64)
    expected = oracle(quantized_linear_float64, linear, x64, method, bits, None)
    with torch.no_grad():
        out64 = hinted("dtype_changed", layer, x64)
        out16 = hinted("dtype_changed", layer, randn(3, 16, seed=42, dtype=torch.bfloat16))
    dtypes = [str(out64.dtype), str(out16.dtype)]
    check.equal(dtypes, ["torch.float64", "torch.bfloat16"], hint="dtype_changed",
                what="output dtypes for float64 and bfloat16 inputs")
    check.close(out64, expected, hint="quantized_linear_output", **FLOAT32_REDUCTION)  # W_hat is float32


@pytest.mark.points(1)
def test_nf4_layer_is_four_bit_whatever_bits_says():
    """method="nf4" is always 4 bits: with the default bits=8 the codes are still packed two per byte."""
    linear = linear_with(randn(8, 32, seed=43), randn(8, seed=44))
    layer = quant.QuantizedLinear(linear, method="nf4")
    state = layer.state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    size = oracle(storage_bounds, 8, 32, 4, None)  # (bytes of codes, most bytes in all)
    check.that(size[0] <= nbytes <= size[1],
               f"an nf4 QuantizedLinear(32 -> 8) with the default bits should store {size[0]} bytes of packed "
               f"codes (at most {size[1]} bytes in all); it stores {nbytes}", hint="packed_memory")
