"""A correct `week5.paged_kv` written differently from the reference.

A set-based allocator handing out the highest free id, blocks kept as a list of per-block
tensors laid out [block_size, n_heads, head_dim], and attention with matmul in float64.
"""

import torch


class BlockAllocator:
    def __init__(self, num_blocks):
        self.refs = {}
        self.free_ids = set(range(num_blocks))
        self.num_free = num_blocks

    def allocate(self):
        if not self.free_ids:
            raise RuntimeError("no free block")
        b = max(self.free_ids)
        self.free_ids.remove(b)
        self.refs[b] = 1
        self.num_free -= 1
        return b

    def fork(self, block):
        if block not in self.refs:
            raise ValueError("not allocated")
        self.refs[block] += 1
        return block

    def free(self, block):
        if block not in self.refs:
            raise ValueError("not allocated")
        self.refs[block] -= 1
        if self.refs[block] == 0:
            del self.refs[block]
            self.free_ids.add(block)
            self.num_free += 1

    def ref_count(self, block):
        return self.refs.get(block, 0)


class PagedKVCache:
    def __init__(self, num_blocks, block_size, n_heads, head_dim, dtype=torch.float32, device=None):
        self.allocator = BlockAllocator(num_blocks)
        self.bs = block_size
        self.kb = [torch.full((block_size, n_heads, head_dim), float("nan"), dtype=dtype, device=device)
                   for _ in range(num_blocks)]
        self.vb = [torch.full((block_size, n_heads, head_dim), float("nan"), dtype=dtype, device=device)
                   for _ in range(num_blocks)]
        self.seqs = {}  # seq_id -> [table, length]

    def seq_len(self, seq_id):
        return self.seqs[seq_id][1]

    def block_table(self, seq_id):
        return self.seqs[seq_id][0][:]

    def _writable_last_block(self, table):
        last = table[-1]
        if self.allocator.ref_count(last) == 1:
            return last
        fresh = self.allocator.allocate()
        self.kb[fresh].copy_(self.kb[last])
        self.vb[fresh].copy_(self.vb[last])
        self.allocator.free(last)
        table[-1] = fresh
        return fresh

    def append(self, seq_id, k, v):
        table, n = self.seqs.setdefault(seq_id, [[], 0])
        k, v = k.transpose(0, 1), v.transpose(0, 1)  # [T, H, D]
        i = 0
        while i < k.shape[0]:
            slot = n % self.bs
            block = self.allocator.allocate() if slot == 0 else self._writable_last_block(table)
            if slot == 0:
                table.append(block)
            take = min(self.bs - slot, k.shape[0] - i)
            self.kb[block][slot:slot + take] = k[i:i + take]
            self.vb[block][slot:slot + take] = v[i:i + take]
            i += take
            n += take
        self.seqs[seq_id][1] = n

    def fork(self, parent_seq, child_seq):
        table, n = self.seqs[parent_seq]
        self.seqs[child_seq] = [[self.allocator.fork(b) for b in table], n]

    def free(self, seq_id):
        table, _ = self.seqs.pop(seq_id)
        for b in reversed(table):
            self.allocator.free(b)

    def gather(self, seq_id):
        table, n = self.seqs[seq_id]
        k = torch.cat([self.kb[b] for b in table])[:n].transpose(0, 1)
        v = torch.cat([self.vb[b] for b in table])[:n].transpose(0, 1)
        return k, v


def paged_attention(q, cache, seq_ids):
    rows = []
    for qi, sid in zip(q, seq_ids):
        k, v = cache.gather(sid)
        w = (qi.double().unsqueeze(1) @ k.double().transpose(1, 2)) / k.shape[-1] ** 0.5  # [H, 1, T]
        rows.append((w.softmax(-1) @ v.double()).squeeze(1).to(q.dtype))
    return torch.stack(rows)
