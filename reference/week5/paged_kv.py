"""PagedAttention's block manager: a paged KV cache with copy-on-write (reference solution)."""

import math

import torch


class BlockAllocator:
    def __init__(self, num_blocks: int):
        self.num_blocks = num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))  # pop() hands out 0, 1, 2, ...
        self._refs = [0] * num_blocks

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise RuntimeError("out of KV-cache blocks")
        block = self._free.pop()
        self._refs[block] = 1
        return block

    def fork(self, block: int) -> int:
        if self._refs[block] == 0:
            raise ValueError(f"block {block} is not allocated")
        self._refs[block] += 1
        return block

    def free(self, block: int) -> None:
        if self._refs[block] == 0:
            raise ValueError(f"block {block} is not allocated")
        self._refs[block] -= 1
        if self._refs[block] == 0:
            self._free.append(block)

    def ref_count(self, block: int) -> int:
        return self._refs[block]


class PagedKVCache:
    def __init__(self, num_blocks: int, block_size: int, n_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device=None):
        self.block_size, self.n_heads, self.head_dim = block_size, n_heads, head_dim
        self.allocator = BlockAllocator(num_blocks)
        shape = (num_blocks, n_heads, block_size, head_dim)
        self.k_blocks = torch.zeros(shape, dtype=dtype, device=device)
        self.v_blocks = torch.zeros(shape, dtype=dtype, device=device)
        self.block_tables: dict[int, list[int]] = {}
        self.lengths: dict[int, int] = {}

    def seq_len(self, seq_id: int) -> int:
        return self.lengths[seq_id]

    def block_table(self, seq_id: int) -> list[int]:
        return list(self.block_tables[seq_id])

    def append(self, seq_id: int, k: torch.Tensor, v: torch.Tensor) -> None:
        if seq_id not in self.block_tables:
            self.block_tables[seq_id], self.lengths[seq_id] = [], 0
        table = self.block_tables[seq_id]
        for t in range(k.shape[-2]):
            pos = self.lengths[seq_id]
            offset = pos % self.block_size
            if offset == 0:
                table.append(self.allocator.allocate())
            elif self.allocator.ref_count(table[-1]) > 1:
                # copy-on-write: the last block is shared with another sequence
                new = self.allocator.allocate()
                self.k_blocks[new] = self.k_blocks[table[-1]]
                self.v_blocks[new] = self.v_blocks[table[-1]]
                self.allocator.free(table[-1])
                table[-1] = new
            self.k_blocks[table[-1], :, offset] = k[:, t]
            self.v_blocks[table[-1], :, offset] = v[:, t]
            self.lengths[seq_id] = pos + 1

    def fork(self, parent_seq: int, child_seq: int) -> None:
        table = self.block_tables[parent_seq]
        for block in table:
            self.allocator.fork(block)
        self.block_tables[child_seq] = list(table)
        self.lengths[child_seq] = self.lengths[parent_seq]

    def free(self, seq_id: int) -> None:
        for block in self.block_tables.pop(seq_id):
            self.allocator.free(block)
        del self.lengths[seq_id]

    def gather(self, seq_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        table = torch.tensor(self.block_tables[seq_id], dtype=torch.long, device=self.k_blocks.device)
        n = self.lengths[seq_id]
        # [n_blocks, H, block_size, D] -> [H, n_blocks * block_size, D], then drop the unused tail
        k = self.k_blocks[table].transpose(0, 1).reshape(self.n_heads, -1, self.head_dim)[:, :n]
        v = self.v_blocks[table].transpose(0, 1).reshape(self.n_heads, -1, self.head_dim)[:, :n]
        return k, v


def paged_attention(q: torch.Tensor, cache: PagedKVCache, seq_ids: list[int]) -> torch.Tensor:
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs = []
    for b, seq_id in enumerate(seq_ids):
        table, n = cache.block_tables[seq_id], cache.lengths[seq_id]
        keys = cache.k_blocks[table].transpose(0, 1).flatten(1, 2)[:, :n]  # [H, n, D]
        values = cache.v_blocks[table].transpose(0, 1).flatten(1, 2)[:, :n]
        scores = torch.einsum("hd,hnd->hn", q[b], keys) * scale
        outs.append(torch.einsum("hn,hnd->hd", torch.softmax(scores, dim=-1), values))
    return torch.stack(outs)
