"""Week 7 — LoRA and QLoRA.

Full fine-tuning updates every weight W[out, in] of a layer. LoRA (Hu et al., 2021) freezes
W and learns a low-rank update instead:

    y = x @ W.T + b  +  (alpha / r) * dropout(x) @ A.T @ B.T

    A: [r, in]   initialised like nn.Linear's weight (kaiming_uniform_(a=sqrt(5)))
    B: [out, r]  initialised to ZEROS

With B = 0 the adapter adds exactly nothing at step 0: the fine-tuned model starts as the
pretrained model, and the gradient reaches B first (dL/dB = scaled grad_out^T @ (x A^T)).
Only r * (in + out) numbers train per layer instead of in * out.

Why alpha / r: peft and the paper scale the update by alpha / r so that changing the rank
does not change the size of the update for a given learning rate. Worked example: r = 4,
alpha = 16 -> the update is multiplied by 4.0 (not by 16).

QLoRA (Dettmers et al., 2023) goes further: the frozen base weight is stored in 4-bit NF4
(your week-5 `nf4_quantize` / `nf4_dequantize`) and dequantized on the fly in forward; the
adapters stay in full precision.

Must catch (the tests fail on each):
- B initialised randomly: the model's output changes before any training step.
- Scaling by alpha instead of alpha / r.
- Base weights left trainable (the optimizer would update W too).
- `merge()` that forgets the alpha / r scale.

Run time: `pytest katas/week7/test_lora.py` takes about 8 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update.

    Args:
        base: the pretrained layer, weight [out, in], optional bias [out]. Keep it as
            `self.base` and freeze its parameters in place (`requires_grad_(False)`).
        r: the rank (> 0).
        alpha: the LoRA alpha; the update is scaled by `alpha / r`.
        dropout: dropout probability applied to the adapter's INPUT only (never to the base
            path); `nn.Dropout` is fine (inactive in eval mode).

    Attributes (the tests read these):
        A: nn.Parameter [r, in], `nn.init.kaiming_uniform_(A, a=math.sqrt(5))` (as peft).
        B: nn.Parameter [out, r], zeros.
        Both with the base weight's dtype and device.

    forward(x[..., in]) -> [..., out]:
        base(x) + (alpha / r) * dropout(x) @ A.T @ B.T
    Any number of leading dimensions works (the matmuls broadcast).

    The only trainable parameters of this module are A and B.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def merge(self) -> nn.Linear:
        """Return a NEW `nn.Linear` with weight `W + (alpha / r) * B @ A` and the base bias.

        The new layer gives the same output as this module (in eval mode) without the extra
        matmuls: this is how a LoRA model is deployed. Leave `self` untouched: do not write
        into `self.base.weight` (clone, then add). Same dtype and device as the base.
        """
        raise NotImplementedError


def inject_lora(model: nn.Module, target_modules: list[str], r: int, alpha: float) -> nn.Module:
    """Replace matching `nn.Linear` modules of `model` by `LoRALinear`, in place; return `model`.

    The matching rule is peft's: a module named `name` (as in `model.named_modules()`) is
    replaced when it is an `nn.Linear` AND, for some target t,

        name == t  or  name.endswith("." + t)

    Worked example on a LLaMA model, target_modules=["q_proj", "v_proj"]:
        "model.layers.0.self_attn.q_proj"  -> replaced ("...".endswith(".q_proj"))
        "model.layers.0.self_attn.k_proj"  -> kept
    and target "proj" matches NOTHING there ("q_proj" does not end with ".proj"); a dotted
    target such as "self_attn.o_proj" matches by suffix too.

    Only `nn.Linear` is replaced. GPT-2's `c_attn`, `c_proj` and `c_fc` are transformers'
    `Conv1D` (weight stored transposed, [in, out]): they are NOT nn.Linear and are left
    alone, so LoRA on GPT-2 in this kata targets nn.Linear modules only (e.g. `lm_head`).

    Every other parameter of the model is frozen (`requires_grad=False`), so that after
    injection exactly the A and B of the new layers train. Collect the names first, then
    replace (do not mutate the module tree while iterating over `named_modules()`); replace
    with `setattr(parent, child_name, LoRALinear(old, r, alpha))`.
    """
    raise NotImplementedError


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Return (number of trainable elements, total number of elements) of `model`.

    Count elements (`p.numel()`), over `model.parameters()`: each parameter tensor once,
    so a weight tied between two modules (GPT-2's wte and lm_head) counts once. Buffers are
    not parameters. After `inject_lora`, trainable == sum of r * (in + out) over the
    replaced layers.
    """
    raise NotImplementedError


class QLoRALinear(nn.Module):
    """LoRA over a 4-bit NF4 base weight.

    Args: base (nn.Linear), r, alpha, dropout as `LoRALinear`, and `block_size=64` for NF4.

    At construction, quantize `base.weight` with your week-5
    `nf4_quantize(weight, block_size)` and keep the codes and absmax as buffers
    (`register_buffer`); keep the bias (frozen; a buffer is fine). Do not keep the float
    weight: saving that memory is the point. A and B as in `LoRALinear` (trainable, in the
    base weight's dtype).

    forward(x): dequantize with `nf4_dequantize(codes, absmax, base.weight.shape, block_size)`
    -- the SAME block_size as at quantization: it cannot be recovered from the sizes --
    cast to x's dtype, then exactly `LoRALinear`'s formula with that weight:

        F.linear(x, W_dq, bias) + (alpha / r) * dropout(x) @ A.T @ B.T

    Import the week-5 functions with a relative import inside this class
    (`from ..week5.quantization import nf4_quantize, nf4_dequantize`), so that the rest of
    this module works even without a week-5 solution.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0,
                 block_size: int = 64):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
