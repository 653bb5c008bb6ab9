"""A correct week-1 BPE written differently from the reference.

- training keeps a max-heap of (count, bytes) with lazy deletion: stale entries are skipped
  when popped, and every count change pushes a fresh entry;
- encoding merges one occurrence at a time (the leftmost pair of lowest rank);
- decoding feeds the tokens' bytes to an incremental UTF-8 decoder.
"""

import codecs
import heapq

import regex

GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def get_pair_counts(ids, counts=None):
    counts = counts if counts is not None else {}
    for a, b in zip(ids[:-1], ids[1:]):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def merge_pair(ids, pair, new_id):
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class _Desc:
    """Wraps bytes so that a min-heap pops the greatest byte string first."""

    __slots__ = ("b",)

    def __init__(self, b):
        self.b = b

    def __lt__(self, other):
        return self.b > other.b

    def __eq__(self, other):
        return self.b == other.b


def _special_regex(specials):
    return "|".join(regex.escape(s) for s in sorted(specials, key=lambda s: -len(s)))


def train_bpe(text, vocab_size, pattern=GPT4_SPLIT_PATTERN, special_tokens=()):
    specials = list(special_tokens)
    pieces = regex.split(_special_regex(specials), text) if specials else [text]
    freq = {}
    for piece in pieces:
        for chunk in (regex.findall(pattern, piece) if pattern is not None else [piece]):
            if chunk:
                freq[chunk] = freq.get(chunk, 0) + 1
    words = [list(c.encode("utf-8")) for c in freq]
    weight = list(freq.values())

    vocab = {i: bytes([i]) for i in range(256)}
    counts, occurs = {}, {}
    for w, ids in enumerate(words):
        for p in zip(ids, ids[1:]):
            counts[p] = counts.get(p, 0) + weight[w]
            occurs.setdefault(p, set()).add(w)

    def entry(p):
        return (-counts[p], _Desc(vocab[p[0]]), _Desc(vocab[p[1]]), p)

    heap = [entry(p) for p in counts]
    heapq.heapify(heap)
    merges = []
    for new_id in range(256, vocab_size - len(specials)):
        pair = None
        while heap:
            neg, _, _, p = heapq.heappop(heap)
            if counts.get(p, 0) == -neg and -neg > 0:
                pair = p
                break
        if pair is None:
            break
        merges.append((vocab[pair[0]], vocab[pair[1]]))
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        changed = set()
        for w in occurs.pop(pair):
            old = words[w]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):
                continue
            for p in zip(old, old[1:]):
                counts[p] -= weight[w]
                changed.add(p)
            for p in zip(new, new[1:]):
                counts[p] = counts.get(p, 0) + weight[w]
                occurs.setdefault(p, set()).add(w)
                changed.add(p)
            words[w] = new
        for p in changed:
            if counts[p] > 0:
                heapq.heappush(heap, entry(p))
            else:
                del counts[p]
    next_id = 256 + len(merges)
    for k, s in enumerate(specials):
        vocab[next_id + k] = s.encode("utf-8")
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges, pattern=GPT4_SPLIT_PATTERN, special_tokens=None):
        self.vocab = dict(vocab)
        self.pattern = regex.compile(pattern) if pattern is not None else None
        inverse = {}
        for i in sorted(self.vocab):
            inverse[self.vocab[i]] = i
        self.rank = {}
        for r, (a, b) in enumerate(merges):
            self.rank[(inverse[a], inverse[b])] = (r, inverse[a + b])
        self.special_ids = {s: inverse[s.encode("utf-8")] for s in special_tokens or []}
        self.special_re = (regex.compile("(" + _special_regex(self.special_ids) + ")")
                           if self.special_ids else None)
        self.seen = {}

    def _chunk(self, chunk):
        if chunk not in self.seen:
            ids = list(chunk.encode("utf-8"))
            while True:
                best_at, best = -1, None
                for i in range(len(ids) - 1):
                    hit = self.rank.get((ids[i], ids[i + 1]))
                    if hit is not None and (best is None or hit[0] < best[0]):
                        best_at, best = i, hit
                if best is None:
                    break
                ids[best_at:best_at + 2] = [best[1]]
            self.seen[chunk] = ids
        return self.seen[chunk]

    def _ordinary(self, text, out):
        chunks = self.pattern.findall(text) if self.pattern is not None else [text]
        for c in chunks:
            if c:
                out.extend(self._chunk(c))

    def encode(self, text):
        out = []
        if self.special_re is None:
            self._ordinary(text, out)
            return out
        pos = 0
        for m in self.special_re.finditer(text):
            self._ordinary(text[pos:m.start()], out)
            out.append(self.special_ids[m.group()])
            pos = m.end()
        self._ordinary(text[pos:], out)
        return out

    def decode(self, ids):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = "".join(decoder.decode(self.vocab[i]) for i in ids)
        return text + decoder.decode(b"", final=True)


def fertility(tokenizer, texts):
    words = sum(len(t.split()) for t in texts)
    if words < 1:
        raise ValueError("fertility: no words")
    return sum(len(tokenizer.encode(t)) for t in texts) / words
