"""Week 3 — GPT-2 from scratch, loading real weights.

You build GPT-2 out of `nn.Embedding`, `nn.LayerNorm` and `nn.Linear`, load the weights of a
real transformers checkpoint into it, and generate text. The tests load the tiny checkpoint
`checkpoints/gpt2-tiny/` into both your model and `transformers.GPT2LMHeadModel` and
require the same logits (float32 tolerance) and the same greedy tokens.

The architecture (B batch, T tokens, C = n_embd, H = n_head, hd = C // H, V = vocab_size):

    idx [B, T] (token ids, int64)
    x = wte[idx] + wpe[positions]                 [B, T, C]   positions = 0, 1, ..., T-1
    for each of the n_layer blocks:               (pre-LN: normalise the INPUT of each sub-layer)
        x = x + attn(ln_1(x))                     causal multi-head self-attention
        x = x + mlp(ln_2(x))                      Linear(C, 4C) -> GELU (tanh form) -> Linear(4C, C)
    x = ln_f(x)                                   the FINAL layer norm: do not forget it
    logits = x @ wte.weight.T                     [B, T, V]   (lm_head is tied to wte)

    attn(x):  q, k, v = c_attn(x).split(C, dim=-1)          c_attn: Linear(C, 3C) with bias
              each -> view(B, T, H, hd).transpose(1, 2)    [B, H, T, hd]
              y = softmax(q k^T / sqrt(hd) + causal mask) v
              y -> transpose(1, 2).reshape(B, T, C) -> c_proj (Linear(C, C) with bias)

Every LayerNorm has a weight and a bias and uses `config.layer_norm_epsilon`. There is no
dropout (inference only).

transformers' names for the weights (`transformer.` prefix; `[in, out]` = Conv1D layout):

    transformer.wte.weight [V, C]            transformer.wpe.weight [n_positions, C]
    transformer.h.{i}.ln_1.weight/bias [C]   transformer.h.{i}.attn.c_attn.weight [C, 3C]  .bias [3C]
    transformer.h.{i}.attn.c_proj.weight [C, C]  .bias [C]
    transformer.h.{i}.ln_2.weight/bias [C]   transformer.h.{i}.mlp.c_fc.weight [C, 4C]  .bias [4C]
    transformer.h.{i}.mlp.c_proj.weight [4C, C]  .bias [C]
    transformer.ln_f.weight/bias [C]         lm_head.weight [V, C]  (may be absent: it IS wte)

Naming your own modules like this (wte, wpe, h, ln_1, attn.c_attn, ...) makes loading a
loop over keys, but nothing in the tests depends on your internal names.

Run `pytest katas/week3/test_gpt2.py`; `kata hint week3/gpt2` gives hints one at a time.
The KV-cache part of `forward` (the `cache` argument) belongs to the next kata,
`week3/kv_cache`: the gpt2 tests that use it are named `test_forward_with_cache_*`.

Mistakes the tests are built to catch:
- Conv1D weights not transposed (GPT-2 stores linear weights as [in, out]; nn.Linear wants
  [out, in]). Transposing "only when the shapes disagree" misses the square attn.c_proj!
- the wrong GELU: GPT-2 uses the tanh approximation (`F.gelu(x, approximate="tanh")`),
  not the exact erf form that `nn.GELU()` / `F.gelu(x)` compute by default;
- post-LN (`x = ln(x + f(x))`, the 2017 Transformer) instead of pre-LN (`x = x + f(ln(x))`);
- the missing final layer norm `ln_f` before the head;
- position ids off by one (positions start at 0);
- an untied head: `lm_head.weight` must be the very same tensor as `wte.weight`, also
  after loading a state dict that has no `lm_head.weight` key;
- with a cache: positions that do not continue from `cache.seq_len`.

Run time: `pytest katas/week3/test_gpt2.py` takes about 9 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """Hyper-parameters; the fields and names of transformers' `GPT2Config`. Given, not a task.

    The tiny checkpoint's: GPTConfig(vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=4).
    """

    vocab_size: int
    n_positions: int  # the length of the position table: the longest sequence the model takes
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float = 1e-5


class GPT(nn.Module):
    """GPT-2 language model.

    Keep the config as `self.config` (the week-3 kv_cache kata reads `model.config.n_layer`).
    Build the modules in `__init__` (any initialisation is fine: the tests either load
    weights or only compare your model with itself); tie the head to the token embedding
    here, e.g. `self.lm_head.weight = self.wte.weight`, so they share one Parameter.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        raise NotImplementedError

    def forward(self, idx: torch.Tensor, cache=None) -> torch.Tensor:
        """Logits for every position: idx LongTensor [B, T] -> float32 [B, T, vocab_size].

        Position t of the output scores the token at t + 1 (it only sees tokens 0..t).

        `cache` (the week-3 `KVCache`, see `week3/kv_cache`; ignore it until then):
        when given, `idx` holds only the NEW tokens; they sit at positions
        `cache.seq_len, ..., cache.seq_len + T - 1` (read `cache.seq_len` BEFORE updating the
        cache). In each layer, after computing this step's k and v ([B, H, T, hd]), call
        `k, v = cache.update(layer_index, k, v)` to get all keys and values so far
        ([B, H, cache.seq_len + T, hd]) and attend to them; the T new queries are the LAST
        T positions, so the causal mask is aligned bottom-right (query i sees keys
        j <= past + i). Worked example: 5 tokens cached, 1 new token -> position 5, and its
        query sees all 6 keys.

        Raises ValueError if the positions would run past the position table, i.e. when
        (cache.seq_len if cache else 0) + T > n_positions.
        """
        raise NotImplementedError

    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy a transformers GPT-2 state dict into this model, in place.

        Accept keys with the `transformer.` prefix (GPT2LMHeadModel) — and, if you like,
        without it (GPT2Model). Skip keys you do not need: `lm_head.weight` (tied: it is
        `wte.weight`) and, in old transformers versions, the attention buffers
        `*.attn.bias` / `*.attn.masked_bias`. The tests load both `model.state_dict()`
        (has `lm_head.weight`) and the checkpoint file itself (has no `lm_head.weight`).

        Conv1D: the weights of attn.c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj are stored
        [in_features, out_features]; transpose them (`.t()`) for nn.Linear. Decide by NAME,
        not by shape: attn.c_proj is square, so a shape test cannot see that it needs a
        transpose. Copy with `param.copy_(tensor)` under `torch.no_grad()` (this keeps the
        tie: replacing `self.wte.weight` with a new Parameter would cut it).
        """
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append `max_new_tokens` tokens to idx [B, T]; returns LongTensor [B, T + max_new_tokens].

        Each step: run the model on the whole sequence so far (no cache here), take the
        last position's logits [B, V], and choose the next token:
        - temperature == 0: greedy, `argmax` over the vocabulary;
        - otherwise: divide the logits by `temperature`; if top_k is given, keep the top_k
          largest logits of each row and set the others to -inf (keep every logit >= the
          k-th largest); softmax; draw with
          `torch.multinomial(probs, num_samples=1, generator=generator)`.
        Use that exact call so that a seeded `generator` makes the draw reproducible.
        The sequence must fit in n_positions: forward raises ValueError otherwise (no
        cropping of the context). Sampled output is tested by its distribution, and
        top_k=1 must give the greedy tokens.
        """
        raise NotImplementedError
