"""dedup written differently: regex tokenising, numpy object-array hashing, LSH-driven deduplicate."""
import re
from hashlib import blake2b

import numpy as np

P = 2**61 - 1


def shingles(text, n=5):
    words = re.findall(r"\S+", text.lower())
    if 0 < len(words) < n:
        return {" ".join(words)}
    return set(map(" ".join, zip(*(words[i:] for i in range(n)))))


def _h64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), byteorder="little")


def _params(num_perm, seed):
    a = np.array([1 + _h64(f"{seed}:a:{i}".encode()) % (P - 1) for i in range(num_perm)], dtype=object)
    b = np.array([_h64(f"{seed}:b:{i}".encode()) % P for i in range(num_perm)], dtype=object)
    return a, b


def minhash_signature(shingles, num_perm=128, seed=0):
    if not shingles:
        return np.full(num_perm, 2**64 - 1, dtype=np.uint64)
    a, b = _params(num_perm, seed)
    xs = np.array([_h64(s.encode("utf-8")) for s in shingles], dtype=object)
    table = (np.outer(xs, a) + b) % P  # [shingles, perms], exact Python ints
    return np.array(table.min(axis=0).tolist(), dtype=np.uint64)


def estimate_jaccard(sig_a, sig_b):
    if len(sig_a) != len(sig_b):
        raise ValueError("different signature lengths")
    return np.count_nonzero(np.asarray(sig_a) == np.asarray(sig_b)) / len(sig_a)


def lsh_candidate_pairs(signatures, bands, rows):
    if signatures and bands * rows > min(len(s) for s in signatures):
        raise ValueError("bands * rows is longer than the signatures")
    pairs = set()
    for k in range(bands):
        buckets = {}
        for i, s in enumerate(signatures):
            buckets.setdefault(tuple(int(v) for v in s[k * rows : (k + 1) * rows]), []).append(i)
        for ids in buckets.values():
            pairs.update((x, y) for xi, x in enumerate(ids) for y in ids[xi + 1 :])
    return pairs


def deduplicate(docs, threshold=0.8, num_perm=128, seed=0):
    sigs = [minhash_signature(shingles(d), num_perm, seed) for d in docs]
    rows = 4
    candidates = lsh_candidate_pairs(sigs, num_perm // rows, rows)
    neighbours = {}
    for i, j in candidates:
        neighbours.setdefault(j, []).append(i)
    dropped = set()
    for j in range(len(docs)):
        for i in neighbours.get(j, []):
            if i not in dropped and estimate_jaccard(sigs[i], sigs[j]) >= threshold:
                dropped.add(j)
                break
    return [j for j in range(len(docs)) if j not in dropped]


def ngram_overlap(doc, benchmark, n=13):
    grams = shingles(doc, n)
    if not grams:
        return 0.0
    seen = set().union(*(shingles(b, n) for b in benchmark)) if benchmark else set()
    return sum(g in seen for g in grams) / len(grams)
