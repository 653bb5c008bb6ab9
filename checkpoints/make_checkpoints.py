"""Build the tiny random-init checkpoints the week-3 and week-5 katas load.

    python checkpoints/make_checkpoints.py

Writes, next to this file, two models in the ordinary transformers format (config.json +
model.safetensors), loadable offline with `from_pretrained("checkpoints/<name>")`:

- `gpt2-tiny/`  GPT2LMHeadModel, vocab 512 (the week-1 tokenizer's size), 128 positions,
  64 wide, 2 layers, 4 heads; lm_head tied to wte.
- `llama-tiny/` LlamaForCausalLM, vocab 512, hidden 64, 2 layers, 4 query heads and 2
  key/value heads (GQA), intermediate 172, 128 positions.

The weights are random (fixed seeds) but not degenerate: transformers' own init with a
wider normal (initializer_range=0.2 instead of 0.02, so the logits spread over a few units
and greedy decoding does not collapse onto one repeated token; the gap between the best two
logits stays far above float32 rounding), then biases and layer-norm gains are jittered so
that a kata that drops a bias, or a norm weight, gives visibly different logits.
Token id 0 (the byte 0x00, absent from text) serves as bos/eos/pad so that `generate` has
in-vocabulary special ids; tests that decode greedily pass `eos_token_id=None`.
Running the script again produces the same tensors.
"""

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

HERE = Path(__file__).resolve().parent


def _jitter(model: torch.nn.Module, seed: int) -> None:
    """Make zero biases and unit norm gains non-trivial, deterministically."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith(".bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif "ln" in name or "norm" in name:  # layer-norm / RMSNorm gains
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))


def make_gpt2_tiny(out: Path = HERE / "gpt2-tiny") -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=4,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True,
        initializer_range=0.2,
    )
    torch.manual_seed(1234)
    model = GPT2LMHeadModel(config).eval()
    _jitter(model, seed=1235)
    model.save_pretrained(out, safe_serialization=True)
    return model


def make_llama_tiny(out: Path = HERE / "llama-tiny") -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, initializer_range=0.2,
    )
    torch.manual_seed(4321)
    model = LlamaForCausalLM(config).eval()
    _jitter(model, seed=4322)
    model.save_pretrained(out, safe_serialization=True)
    return model


if __name__ == "__main__":
    make_gpt2_tiny()
    make_llama_tiny()
    (HERE / "READY").touch()
    for name in ("gpt2-tiny", "llama-tiny"):
        size = sum(f.stat().st_size for f in (HERE / name).iterdir())
        print(f"wrote checkpoints/{name}/ ({size / 1e6:.2f} MB)")
