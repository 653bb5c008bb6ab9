"""Week 3 — incremental decoding with a key/value cache.

Generating n tokens by re-running the model on the whole sequence each step costs
O(n^2) token-forwards: step t recomputes the keys and values of all t earlier tokens,
which never change (the mask is causal, so an earlier token never sees a later one).
A KV cache keeps them: each step runs the model on the ONE new token, appends its key and
value to the cache, and attends over everything cached. Same tokens, far less work.

This kata builds on `week3/gpt2`: your `GPT` must pass its tests first. You write:

1. `KVCache` below: per layer, the keys and values seen so far.
2. The `cache` path of your `GPT.forward(idx, cache=...)` in `week3/gpt2.py` (its
   docstring says what to do: positions continue from `cache.seq_len`, each layer calls
   `cache.update`, the causal mask is aligned bottom-right).
3. `generate_greedy` below, which uses both.

Shapes: k, v are [B, H, T, hd] (batch, heads, time, head_dim) — the layout your attention
already has after splitting heads. The time axis is dim -2.

The tests check that cached greedy decoding gives exactly the tokens of uncached greedy
decoding, that a cached forward gives the logits of an uncached one (to float32
tolerance), and, timed in one run, that decoding 256 tokens with the cache is at least 3x
faster than without it on a CPU.

Mistakes the tests are built to catch:
- positions not offset by `cache.seq_len` (the new token is not at position 0!);
- appending on the wrong axis (heads, batch or head_dim instead of time, dim -2);
- a causal mask aligned top-left when the queries are fewer than the keys.

Run time: `pytest katas/week3/test_kv_cache.py` takes about 10 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer, for all positions processed so far.

    Usage inside the model (layer i of n_layers):

        k, v = cache.update(i, k_new, v_new)   # k_new: [B, H, T_new, hd]
        # k: [B, H, T_past + T_new, hd] — attend to all of these

    Worked example (B=1, H=2, hd=4, n_layers=2):

        cache = KVCache(2)                       # cache.seq_len == 0
        prefill with 5 tokens: update(0, k[1,2,5,4], v) then update(1, ...)  -> seq_len 5
        one decode step:       update(0, k[1,2,1,4], v) returns k of [1,2,6,4]; then layer 1
                               -> seq_len 6

    `seq_len` counts the positions cached in layer 0, so during a forward pass (after
    layer 0 has been updated) it already includes the new tokens: read it at the start of
    `forward`, before any update, to get the first new position.
    """

    def __init__(self, n_layers: int):
        raise NotImplementedError

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v ([B, H, T, hd]) to layer `layer` on the time axis (dim -2).

        Returns (keys, values) of that layer: everything so far, [B, H, T_total, hd].
        The first update of a layer stores k and v as they are.
        """
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        """How many positions layer 0 holds (0 for an empty cache). A Python int."""
        raise NotImplementedError


@torch.no_grad()
def generate_greedy(model, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True) -> torch.Tensor:
    """Greedy decoding with your week-3 `GPT`: idx [B, T] -> LongTensor [B, T + max_new_tokens].

    Each new token is the argmax of the last position's logits.

    use_cache=False: every step runs `model(whole_sequence_so_far)` (as `GPT.generate`
    with temperature 0).
    use_cache=True: make a `KVCache(model.config.n_layer)`; run `model(idx, cache=cache)`
    once on the whole prompt (the "prefill"), then every step runs `model(next_token,
    cache=cache)` on the one new token [B, 1]. Both must return identical tokens.

    Do not run the model one more time after the last token is chosen (its logits are
    never used). Decorate with / run under `torch.no_grad()`: autograd bookkeeping would
    dominate the timing of small models.
    """
    raise NotImplementedError
