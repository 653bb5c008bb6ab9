"""MinHash near-duplicate removal and n-gram decontamination (reference solution)."""
import hashlib

import numpy as np

MERSENNE_PRIME = (1 << 61) - 1
EMPTY_HASH = (1 << 64) - 1


def _words(text: str) -> list[str]:
    return text.lower().split()


def shingles(text: str, n: int = 5) -> set[str]:
    words = _words(text)
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def shingle_hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "little")


def _seeded_int(seed: int, name: str, i: int) -> int:
    key = f"{seed}:{name}:{i}".encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def hash_params(num_perm: int, seed: int = 0) -> tuple[list[int], list[int]]:
    a = [1 + _seeded_int(seed, "a", i) % (MERSENNE_PRIME - 1) for i in range(num_perm)]
    b = [_seeded_int(seed, "b", i) % MERSENNE_PRIME for i in range(num_perm)]
    return a, b


def minhash_signature(shingles: set[str], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    a, b = hash_params(num_perm, seed)
    sig = [EMPTY_HASH] * num_perm
    for s in shingles:
        x = shingle_hash(s)
        for i in range(num_perm):
            h = (a[i] * x + b[i]) % MERSENNE_PRIME
            if h < sig[i]:
                sig[i] = h
    return np.array(sig, dtype=np.uint64)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in length: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def lsh_candidate_pairs(signatures: list[np.ndarray], bands: int, rows: int) -> set[tuple[int, int]]:
    pairs = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for idx, sig in enumerate(signatures):
            if bands * rows > len(sig):
                raise ValueError(f"bands * rows = {bands * rows} exceeds the signature length {len(sig)}")
            key = np.asarray(sig[band * rows : (band + 1) * rows], dtype=np.uint64).tobytes()
            buckets.setdefault(key, []).append(idx)
        for members in buckets.values():
            for i in range(len(members)):
                for j in range(i + 1, len(members)):
                    pairs.add((members[i], members[j]))
    return pairs


def deduplicate(docs: list[str], threshold: float = 0.8, num_perm: int = 128, seed: int = 0) -> list[int]:
    sigs = [minhash_signature(shingles(d), num_perm, seed) for d in docs]
    kept: list[int] = []
    for j, sig in enumerate(sigs):
        if all(estimate_jaccard(sig, sigs[i]) < threshold for i in kept):
            kept.append(j)
    return kept


def ngram_overlap(doc: str, benchmark: list[str], n: int = 13) -> float:
    grams = shingles(doc, n)
    if not grams:
        return 0.0
    bench = set()
    for item in benchmark:
        bench |= shingles(item, n)
    return len(grams & bench) / len(grams)
