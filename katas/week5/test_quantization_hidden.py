"""Hidden tests for week5/quantization: fresh seeded inputs, expected values from the reference."""

import pytest
import torch
import torch.nn as nn

from graders import check, reference, student
from graders.testing import FLOAT32_REDUCTION

pytestmark = pytest.mark.hidden

quant = student("week5.quantization")
model_solution = reference("week5.quantization")


def fresh(*shape, seed, scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.points(2)
@pytest.mark.parametrize("dim", [None, 0, 1, 2, -2])
@pytest.mark.parametrize("bits", [8, 4, 6])
def test_absmax_matches_reference(dim, bits):
    x = fresh(3, 5, 7, seed=201, scale=4.0)
    x[1, :, 2] = 0.0
    q, scale = quant.absmax_quantize(x, bits=bits, dim=dim)
    ref = model_solution.absmax_quantize(x, bits=bits, dim=dim)  # (codes, scale)
    check.close(scale, ref[1], what="scale", hint="scale_from_mean")
    check.equal(q, ref[0], what="codes", hint="truncation")
    check.close(quant.absmax_dequantize(q, scale), model_solution.absmax_dequantize(ref[0], ref[1]),
                what="dequantized", hint="truncation")


@pytest.mark.points(1)
def test_absmax_float64_input_keeps_dtype():
    x = fresh(4, 6, seed=202, dtype=torch.float64)
    q, scale = quant.absmax_quantize(x, dim=1)
    ref = model_solution.absmax_quantize(x, dim=1)
    check.close(scale, ref[1], what="scale", hint="per_channel_axis")
    check.equal(q, ref[0], what="codes", hint="truncation")


@pytest.mark.points(2)
@pytest.mark.parametrize("dim", [None, 0, -1])
@pytest.mark.parametrize("bits,shift", [(8, 0.0), (8, 2.0), (4, -1.0), (3, 0.3)])
def test_zeropoint_matches_reference(dim, bits, shift):
    x = fresh(6, 9, seed=203, scale=2.0) + shift
    q, scale, zp = quant.zeropoint_quantize(x, bits=bits, dim=dim)
    ref = model_solution.zeropoint_quantize(x, bits=bits, dim=dim)  # (codes, scale, zero point)
    check.close(scale, ref[1], what="scale", hint="zero_point_exact")
    check.equal(zp, ref[2], what="zero_point", hint="zero_point_exact")
    check.equal(q, ref[0], what="codes", hint="truncation")
    check.close(quant.zeropoint_dequantize(q, scale, zp), model_solution.zeropoint_dequantize(ref[0], ref[1], ref[2]),
                what="dequantized", hint="truncation")


@pytest.mark.points(1)
def test_pack_matches_reference():
    g = torch.Generator().manual_seed(204)
    codes = torch.randint(0, 16, (3, 2, 10), generator=g, dtype=torch.uint8)
    packed = torch.randint(0, 256, (4, 5), generator=g, dtype=torch.uint8)
    check.equal(quant.pack_int4(codes), model_solution.pack_int4(codes), hint="nibble_order")
    check.equal(quant.unpack_int4(packed), model_solution.unpack_int4(packed), hint="nibble_order")


@pytest.mark.points(1)
def test_nf4_table_matches_reference():
    code = quant.NF4_CODE
    check.that(code is not None, "NOT STARTED: NF4_CODE is still None in week5/quantization.py", hint="nf4_table")
    check.close(code.float(), model_solution.NF4_CODE, hint="nf4_table", rtol=0.0, atol=1e-6,
                reason="computed from float64 quantiles or copied from the paper's float32 table")


@pytest.mark.points(2)
@pytest.mark.parametrize("shape,block_size", [((10, 13), 64), ((257,), 32), ((4, 4, 4), 7)])
def test_nf4_matches_reference(shape, block_size):
    x = fresh(*shape, seed=205, scale=0.3)
    codes, absmax = quant.nf4_quantize(x, block_size=block_size)
    ref = model_solution.nf4_quantize(x, block_size=block_size)  # (codes, absmax)
    check.close(absmax, ref[1], what="absmax", hint="nf4_blocks")
    check.equal(codes, ref[0], what="codes", hint="nf4_blocks")
    check.close(quant.nf4_dequantize(codes, absmax, shape, block_size=block_size),
                model_solution.nf4_dequantize(ref[0], ref[1], shape, block_size=block_size),
                what="dequantized", hint="nf4_blocks")


@pytest.mark.points(2)
@pytest.mark.parametrize("method,bits,group_size", [("absmax", 8, 8), ("absmax", 4, None), ("zeropoint", 8, 16),
                                                    ("zeropoint", 4, None), ("nf4", 4, 8)])
def test_quantized_linear_matches_reference(method, bits, group_size):
    torch.manual_seed(206)
    linear = nn.Linear(48, 20, bias=method != "zeropoint")
    x = fresh(2, 7, 48, seed=207)
    layer = quant.QuantizedLinear(linear, method=method, bits=bits, group_size=group_size)
    expected_layer = model_solution.QuantizedLinear(linear, method=method, bits=bits,
                                                                group_size=group_size)
    with torch.no_grad():
        check.close(layer(x), expected_layer(x), hint="quantized_linear_output", **FLOAT32_REDUCTION)
