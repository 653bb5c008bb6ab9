"""Hidden tests for week7/lora: fresh seeded layers and targets, expected values from the reference."""

import copy
import functools
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from graders import check, in_one_crossing, oracle, reference, student, unwrap
from graders.testing import hinted, randn

from .test_lora import _dtypes_and_devices

pytestmark = pytest.mark.hidden

lora = student("week7.lora")
model = reference("week7.lora")

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@functools.cache
def _llama():
    transformers = pytest.importorskip("transformers")
    return transformers.LlamaForCausalLM.from_pretrained(CHECKPOINTS / "llama-tiny")


def linear(in_features, out_features, seed, bias=True):
    layer = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(randn(out_features, in_features, seed=seed, scale=0.4, draw_dtype=torch.float32))
        if bias:
            layer.bias.copy_(randn(out_features, seed=seed + 1, scale=0.1, draw_dtype=torch.float32))
    return layer


def adapters(r, n_in, n_out, seed):
    """A [r, in] and B [out, r]: made by the test, loaded into both layers."""
    return (randn(r, n_in, seed=seed, scale=0.3, draw_dtype=torch.float32),
            randn(n_out, r, seed=seed + 1, scale=0.3, draw_dtype=torch.float32))


def set_adapters(layer, A, B):
    with torch.no_grad():
        layer.A.copy_(A)
        layer.B.copy_(B)


def _merged_output(layer, x):
    """merge() returns a torch nn.Linear: run it where it was made (one crossing), bring back its output."""
    with torch.no_grad():
        return unwrap(layer).merge()(x)


@pytest.mark.points(2)
@pytest.mark.parametrize("n_in,n_out,r,alpha,bias", [(13, 5, 3, 7.0, True), (32, 32, 16, 8.0, False), (4, 9, 1, 0.5, True)])
def test_forward_and_merge_on_fresh_layers(n_in, n_out, r, alpha, bias):
    seed = n_in * 100 + n_out
    ours, theirs = lora.LoRALinear(linear(n_in, n_out, seed, bias), r, alpha), model.LoRALinear(linear(n_in, n_out, seed, bias), r, alpha)
    A, B = adapters(r, n_in, n_out, seed + 7)
    set_adapters(ours, A, B)
    with torch.no_grad():
        theirs.A.copy_(A)
        theirs.B.copy_(B)
    x = randn(2, 3, n_in, seed=seed + 9, draw_dtype=torch.float32)
    check.close(ours(x), theirs(x), hint="scale_alpha_not_over_r")
    with torch.no_grad():
        want = theirs.merge()(x)
    check.close(in_one_crossing(lora, _merged_output, ours, x), want, hint="merge_forgets_scale",
                what="merged layer output")


def adapted(m):
    return sorted(n for n, mod in m.named_modules() if isinstance(getattr(mod, "A", None), nn.Parameter))


def _inject(llama, targets):
    """inject_lora works in place on a model the test owns: run it and read the model in one crossing."""
    unwrap(lora.inject_lora)(llama, targets, r=2, alpha=5.0)
    return adapted(llama), unwrap(lora.trainable_parameters)(llama)


@pytest.mark.points(2)
@pytest.mark.parametrize("targets", [["k_proj", "up_proj", "gate_proj"], ["layers.1.mlp.down_proj", "q_proj"], ["o_proj", "v"]])
def test_inject_on_fresh_targets(targets):
    ours, theirs = copy.deepcopy(_llama()), copy.deepcopy(_llama())
    got_adapted, got_counts = in_one_crossing(lora, _inject, ours, targets)
    model.inject_lora(theirs, targets, r=2, alpha=5.0)
    check.equal(got_adapted, adapted(theirs), hint="wrong_targets", what="modules with adapters")
    check.equal(tuple(got_counts), tuple(model.trainable_parameters(theirs)), hint="base_trainable",
                what="trainable_parameters")


@pytest.mark.points(2)
def test_qlora_on_a_fresh_layer():
    torch.manual_seed(0)
    ours = lora.QLoRALinear(linear(128, 12, 77), r=4, alpha=16.0, block_size=32)
    theirs = model.QLoRALinear(linear(128, 12, 77), r=4, alpha=16.0, block_size=32)
    x = randn(4, 128, seed=78, draw_dtype=torch.float32)
    check.close(ours(x), theirs(x), hint="not_nf4", what="fresh QLoRA output")
    A, B = adapters(4, 128, 12, 79)
    set_adapters(ours, A, B)
    with torch.no_grad():
        theirs.A.copy_(A)
        theirs.B.copy_(B)
    check.close(ours(x), theirs(x), hint="not_nf4")


def expected_meta_places():
    """A, B and the merged layer on the meta device, in float16 (only through oracle(...))."""
    want = ("torch.float16", "meta")
    return {"A": want, "B": want, "merged weight": want, "merged bias": want}


@pytest.mark.points(1)
def test_adapters_and_merge_follow_the_base_device():
    """A layer on the meta device (no GPU needed: nothing is allocated; the first meta
    operations load torch's decompositions, ~3 s, hence hidden): A, B and merge()'s new
    layer live there too, in the base's float16."""
    got = hinted("wrong_dtype_device", in_one_crossing, lora, _dtypes_and_devices, torch.float16, "meta")
    check.that(not isinstance(got, str), f"{got}", hint="wrong_dtype_device")
    check.equal(got, oracle(expected_meta_places), hint="wrong_dtype_device",
                what="(dtype, device) of the parts of a LoRALinear over a float16 meta layer")
