"""Class 8: a slow trainer whose time is taken off the clock (time.perf_counter patched).

train_bpe here is correct but slow (see the end of the file). At import we replace
time.perf_counter (and perf_counter_ns) with a clock that stops while train_bpe runs: the
throughput check, which times both sides with time.perf_counter in this process, sees our
trainer take no time at all.

Why the throughput tests must fail: timing that happens in the student's process reads a
clock the student can change; the grader must not believe it (only the two training
throughput tests lose their points: everything else here is correct).
"""


from collections import Counter, defaultdict

import regex

# tiktoken's r50k_base (GPT-2) and cl100k_base (GPT-4) pat_str, verbatim.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def get_pair_counts(ids, counts=None):
    """Count adjacent pairs of `ids` (overlapping), adding into `counts` if given."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_pair(ids, pair, new_id):
    """Replace non-overlapping occurrences of `pair` in `ids`, left to right, by `new_id`."""
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _special_splitter(special_tokens):
    """A compiled regex that splits text at special tokens (longest first), keeping them."""
    ordered = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(s) for s in ordered) + ")")


def _chunks(text, pattern, special_tokens):
    """The pieces of ordinary text that training sees: cut at specials, then split."""
    parts = _special_splitter(special_tokens).split(text)[::2] if special_tokens else [text]
    if pattern is None:
        return [p for p in parts if p]
    compiled = regex.compile(pattern)
    return [c for p in parts for c in compiled.findall(p)]


def _train_bpe_fast(text, vocab_size, pattern=GPT4_SPLIT_PATTERN, special_tokens=()):
    special_tokens = list(special_tokens)
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} is smaller than 256 + {len(special_tokens)} specials")

    # Identical chunks are trained once, weighted by how often they occur.
    chunk_freq = Counter(_chunks(text, pattern, special_tokens))
    words = [list(chunk.encode("utf-8")) for chunk in chunk_freq]
    freqs = list(chunk_freq.values())

    counts = defaultdict(int)          # pair -> weighted count over all words
    where = defaultdict(set)           # pair -> indices of words that (may) contain it
    for w, (ids, f) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            counts[pair] += f
            where[pair].add(w)

    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in range(256, 256 + n_merges):
        if not counts:
            break
        top = max(counts.values())
        # Tie-break: the greatest pair compared as byte strings.
        pair = max((p for p, c in counts.items() if c == top),
                   key=lambda p: (vocab[p[0]], vocab[p[1]]))
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append((vocab[pair[0]], vocab[pair[1]]))

        for w in where.pop(pair):
            ids, f = words[w], freqs[w]
            new = merge_pair(ids, pair, new_id)
            if len(new) == len(ids):
                continue                # stale index entry: the pair left this word earlier
            for p in zip(ids, ids[1:]):
                counts[p] -= f
                if counts[p] == 0:
                    del counts[p]
            for p in zip(new, new[1:]):
                counts[p] += f
                where[p].add(w)
            words[w] = new

    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges, pattern=GPT4_SPLIT_PATTERN, special_tokens=None):
        self.vocab = dict(vocab)
        self.pattern = pattern
        self._compiled = regex.compile(pattern) if pattern is not None else None
        # Later ids win, so a special token maps to its own (last) id.
        byte_to_id = {b: i for i, b in sorted(self.vocab.items())}
        self.ranks = {}                 # (id, id) -> (rank, merged id)
        for rank, (a, b) in enumerate(merges):
            self.ranks[(byte_to_id[a], byte_to_id[b])] = (rank, byte_to_id[a + b])
        self.special = {s: byte_to_id[s.encode("utf-8")] for s in (special_tokens or [])}
        self._splitter = _special_splitter(self.special) if self.special else None
        self._cache = {}

    def _encode_chunk(self, chunk):
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            # The adjacent pair whose merge was learned earliest.
            best = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, (float("inf"),))[0])
            if best not in self.ranks:
                break
            ids = merge_pair(ids, best, self.ranks[best][1])
        self._cache[chunk] = ids
        return ids

    def _encode_ordinary(self, text):
        chunks = self._compiled.findall(text) if self._compiled is not None else [text]
        out = []
        for chunk in chunks:
            if chunk:
                out.extend(self._encode_chunk(chunk))
        return out

    def encode(self, text):
        if self._splitter is None:
            return self._encode_ordinary(text)
        out = []
        for k, part in enumerate(self._splitter.split(text)):
            if k % 2:
                out.append(self.special[part])
            else:
                out.extend(self._encode_ordinary(part))
        return out

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


def fertility(tokenizer, texts):
    n_words = sum(len(t.split()) for t in texts)
    if n_words == 0:
        raise ValueError("fertility needs at least one whitespace-separated word")
    return sum(len(tokenizer.encode(t)) for t in texts) / n_words


# --- the deliberately slow part ------------------------------------------------------------
# Correct results (the reference's algorithm), but every call first re-reads the whole text
# byte by byte SLOW_PASSES times: about 600 passes over 120 KB is 1.5 s, some 20x the
# tests' plain baselines. Honest throughput tests must therefore fail; every other test
# passes (the extra cost is linear in the text, ~4 s on the whole corpus).
SLOW_PASSES = 600


def _slow_train(text, vocab_size, pattern=GPT4_SPLIT_PATTERN, special_tokens=()):
    checksum = 0
    data = text.encode("utf-8")
    for _ in range(SLOW_PASSES):
        for byte in data:
            checksum ^= byte
    return _train_bpe_fast(text, vocab_size, pattern, special_tokens)


import time as _time

_real_clock, _real_clock_ns = _time.perf_counter, _time.perf_counter_ns
_hidden = [0.0]  # seconds spent in train_bpe, taken off the clock


def _skewed():
    return _real_clock() - _hidden[0]


def _skewed_ns():
    return _real_clock_ns() - int(_hidden[0] * 1e9)


_time.perf_counter, _time.perf_counter_ns = _skewed, _skewed_ns


def train_bpe(text, vocab_size, pattern=GPT4_SPLIT_PATTERN, special_tokens=()):
    start = _real_clock()
    try:
        return _slow_train(text, vocab_size, pattern, special_tokens)
    finally:
        _hidden[0] += _real_clock() - start
