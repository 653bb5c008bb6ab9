"""Week 5 — PagedAttention's block manager (vLLM, Kwon et al. 2023).

A server decodes many sequences at once, each with its own KV cache of unknown final
length. Reserving max_len slots per sequence wastes most of the memory. PagedAttention
stores the cache like virtual memory: a pool of fixed-size *blocks* (pages) of
`block_size` token slots, and per sequence a *block table* listing its blocks in order.

    token position t of a sequence lives in block  table[t // block_size],
                                     at slot       t %  block_size

Sequences that share a prefix (parallel sampling, beam search) share its blocks: `fork`
copies the block table and bumps each block's reference count. A block is returned to the
pool only when its count drops to 0. Before writing into a block that is shared
(count > 1), the writer copies it to a fresh block first: *copy-on-write*.

Layout used here: keys and values are per token `[n_heads, head_dim]`; a sequence's
cache, gathered, is `[n_heads, T, head_dim]`.

Run time: `pytest katas/week5/test_paged_kv.py` takes about 3 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import torch


class BlockAllocator:
    """Hands out block ids 0..num_blocks-1 and counts references to them.

    - `allocate() -> int`: a free block, now with reference count 1 (any free id; raise
      RuntimeError when none is left);
    - `fork(block) -> int`: one more reference to an allocated block; returns the block;
    - `free(block)`: one reference fewer; the block becomes free again when none is left.
      Freeing a block that is not allocated is a ValueError;
    - `ref_count(block) -> int`: the current count (0 for a free block);
    - `num_free`: the number of free blocks (an int attribute or property).
    """

    def __init__(self, num_blocks: int):
        raise NotImplementedError

    @property
    def num_free(self) -> int:
        raise NotImplementedError

    def allocate(self) -> int:
        raise NotImplementedError

    def fork(self, block: int) -> int:
        raise NotImplementedError

    def free(self, block: int) -> None:
        raise NotImplementedError

    def ref_count(self, block: int) -> int:
        raise NotImplementedError


class PagedKVCache:
    """A paged KV cache for many sequences, identified by integer `seq_id`s.

    `PagedKVCache(num_blocks, block_size, n_heads, head_dim, dtype=torch.float32, device=None)`
    owns a `BlockAllocator` as its public attribute `allocator` and a pool of blocks (for
    example two tensors `[num_blocks, n_heads, block_size, head_dim]` for keys and values).

    - `append(seq_id, k, v)`: k, v `[n_heads, T, head_dim]`, T >= 1 new tokens (a prompt or
      one decoded token). An unknown seq_id starts a new sequence. Allocate a block when the
      sequence's last block is full (or it has none); if the last block is shared, copy it
      to a new block before writing (and release your reference to the old one).
    - `fork(parent_seq, child_seq)`: the child starts as the parent: same block table
      (a copy of the list), same length, one more reference to every block. No data copied.
    - `free(seq_id)`: drop the sequence, releasing one reference to each of its blocks.
    - `gather(seq_id) -> (k, v)`: the sequence's keys and values `[n_heads, T, head_dim]`,
      in order — exactly T positions, even when the last block is only partly filled.
    - `seq_len(seq_id) -> int` and `block_table(seq_id) -> list[int]` (a copy).

    Pitfalls: forgetting to release blocks (a leak: `allocator.num_free` never recovers);
    writing a forked sequence's new token into the block it shares with its parent (the
    parent's cache silently changes); reading slots past the end of a partly filled last
    block.
    """

    def __init__(self, num_blocks: int, block_size: int, n_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device=None):
        raise NotImplementedError

    def seq_len(self, seq_id: int) -> int:
        raise NotImplementedError

    def block_table(self, seq_id: int) -> list[int]:
        raise NotImplementedError

    def append(self, seq_id: int, k: torch.Tensor, v: torch.Tensor) -> None:
        raise NotImplementedError

    def fork(self, parent_seq: int, child_seq: int) -> None:
        raise NotImplementedError

    def free(self, seq_id: int) -> None:
        raise NotImplementedError

    def gather(self, seq_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def paged_attention(q: torch.Tensor, cache: PagedKVCache, seq_ids: list[int]) -> torch.Tensor:
    """One decoding step of attention for a batch of sequences of different lengths.

    q `[B, n_heads, head_dim]`: one query per sequence (its newest token, whose k and v are
    already appended). Row b attends over every cached position of `seq_ids[b]`:

        out[b, h] = softmax(q[b, h] @ K[h].T / sqrt(head_dim)) @ V[h]

    with K, V that sequence's `[n_heads, T_b, head_dim]` cache. Returns `[B, n_heads, head_dim]`,
    equal to dense attention on each sequence. Read keys and values through the block
    tables (gathering blocks); do not build a padded dense cache of the whole batch.
    """
    raise NotImplementedError
