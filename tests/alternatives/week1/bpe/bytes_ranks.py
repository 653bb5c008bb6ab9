"""A correct week-1 BPE written differently from the reference.

- pair counts and merges with index loops;
- training updates counts with per-word Counter differences, and breaks ties by sorting;
- encoding works on byte strings the way tiktoken does: repeatedly join the adjacent pair
  whose concatenation has the lowest rank, looking tokens up by their bytes;
- special tokens are found by a hand-written longest-first scan, not a regex;
- decoding goes through a bytearray.
"""

from collections import Counter

import regex

GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def get_pair_counts(ids, counts=None):
    if counts is None:
        counts = {}
    for i in range(len(ids) - 1):
        key = (ids[i], ids[i + 1])
        if key in counts:
            counts[key] += 1
        else:
            counts[key] = 1
    return counts


def merge_pair(ids, pair, new_id):
    out = []
    skip = False
    for i, x in enumerate(ids):
        if skip:
            skip = False
            continue
        if i < len(ids) - 1 and (x, ids[i + 1]) == tuple(pair):
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return out


def _split_specials(text, specials):
    """[(is_special, piece), ...]: the leftmost special token, the longest one there, first."""
    pieces, i = [], 0
    while specials:
        hits = [(text.find(s, i), -len(s), s) for s in specials]
        hits = [h for h in hits if h[0] >= 0]
        if not hits:
            break
        pos, _, s = min(hits)
        if pos > i:
            pieces.append((False, text[i:pos]))
        pieces.append((True, s))
        i = pos + len(s)
    if i < len(text):
        pieces.append((False, text[i:]))
    return pieces


def _chunks(text, pattern):
    if pattern is None:
        return [text] if text else []
    return regex.findall(pattern, text)


def train_bpe(text, vocab_size, pattern=GPT4_SPLIT_PATTERN, special_tokens=()):
    specials = list(special_tokens)
    freq = Counter()
    for is_special, piece in _split_specials(text, specials):
        if not is_special:
            freq.update(_chunks(piece, pattern))
    words = [list(w.encode("utf-8")) for w in freq]
    weights = list(freq.values())

    counts = Counter()
    holders = {}
    for w, ids in enumerate(words):
        for p in zip(ids, ids[1:]):
            counts[p] += weights[w]
            holders.setdefault(p, set()).add(w)

    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    while len(vocab) < vocab_size - len(specials):
        if not counts:
            break
        top = max(counts.values())
        tied = sorted((p for p in counts if counts[p] == top),
                      key=lambda p: (vocab[p[0]], vocab[p[1]]), reverse=True)
        pair, new_id = tied[0], len(vocab)
        merges.append((vocab[pair[0]], vocab[pair[1]]))
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        for w in sorted(holders.pop(pair, ())):
            before = words[w]
            after = merge_pair(before, pair, new_id)
            if after == before:
                continue
            delta = Counter(zip(after, after[1:]))
            delta.subtract(Counter(zip(before, before[1:])))
            for p, d in delta.items():
                if d:
                    counts[p] += d * weights[w]
                    if counts[p] <= 0:
                        del counts[p]
                if d > 0:
                    holders.setdefault(p, set()).add(w)
            words[w] = after
    for s in specials:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges, pattern=GPT4_SPLIT_PATTERN, special_tokens=None):
        self.vocab = vocab
        self.pattern = pattern
        self.bytes_rank = {a + b: r for r, (a, b) in reversed(list(enumerate(merges)))}
        self.id_of = {}
        for i in sorted(vocab):
            self.id_of[vocab[i]] = i
        self.specials = list(special_tokens or [])
        self.memo = {}

    def _bpe(self, chunk):
        if chunk in self.memo:
            return self.memo[chunk]
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        while len(parts) > 1:
            best, best_rank = -1, None
            for i in range(len(parts) - 1):
                r = self.bytes_rank.get(parts[i] + parts[i + 1])
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best < 0:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        ids = [self.id_of[p] for p in parts]
        self.memo[chunk] = ids
        return ids

    def encode(self, text):
        out = []
        for is_special, piece in _split_specials(text, self.specials):
            if is_special:
                out.append(self.id_of[piece.encode("utf-8")])
            else:
                for chunk in _chunks(piece, self.pattern):
                    out += self._bpe(chunk)
        return out

    def decode(self, ids):
        buf = bytearray()
        for i in ids:
            buf += self.vocab[i]
        return bytes(buf).decode("utf-8", "replace")


def fertility(tokenizer, texts):
    tokens = words = 0
    for t in texts:
        tokens += len(tokenizer.encode(t))
        words += len(t.split())
    if not words:
        raise ValueError("no words")
    return tokens / words
