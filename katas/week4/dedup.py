"""Kata: MinHash near-duplicate removal and n-gram decontamination.

Web corpora are full of near-copies (boilerplate, mirrors, reposts). Exact Jaccard
similarity between every pair of documents is O(N^2) set operations; MinHash compresses a
document's shingle set into `num_perm` integers such that the fraction of equal positions
between two signatures estimates their Jaccard similarity, and LSH banding finds the likely
pairs without comparing everything with everything.

Everything here is deterministic and the same on every machine and in every process. The
hash family is fixed exactly (tests compare signatures value for value):

1. Shingle hash: `x = int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "little")`,
   a 64-bit integer. NOT Python's `hash()`: string hashing is salted per process
   (PYTHONHASHSEED), so signatures would change from one run to the next.
2. Permutation i (0 <= i < num_perm), for a seed: with
   `seeded(name, i) = int.from_bytes(hashlib.blake2b(f"{seed}:{name}:{i}".encode("utf-8"), digest_size=8).digest(), "little")`,
       a_i = 1 + seeded("a", i) % (P - 1),   b_i = seeded("b", i) % P,   P = 2**61 - 1
   and h_i(x) = (a_i * x + b_i) % P  (exact integer arithmetic: Python ints, or numpy with care;
   a_i * x does not fit in 64 bits).
3. `signature[i] = min over the shingles of h_i(x)`; an empty shingle set gives every entry
   2**64 - 1. dtype `np.uint64`, shape `(num_perm,)`.

Worked example: `shingles("The  cat\\nsat on the MAT today", n=5)` is
`{"the cat sat on the", "cat sat on the mat", "sat on the mat today"}`.

Must catch: using Python's `hash()` (results change per process); shingles not lowercased
or whitespace not collapsed; LSH bands overlapping or rows miscounted; keeping the last
document of a cluster instead of the first; n-gram overlap without the same normalisation.

Run time: `pytest katas/week4/test_dedup.py` takes about 5 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""
import numpy as np

MERSENNE_PRIME = (1 << 61) - 1  # P
EMPTY_HASH = (1 << 64) - 1      # every entry of the signature of an empty set


def shingles(text: str, n: int = 5) -> set[str]:
    """Word n-grams of `text`, lowercased, words joined by one space.

    Lowercase the text and split it on any run of whitespace (spaces, tabs, newlines:
    `str.split()`); punctuation stays attached to its word. Each shingle is n consecutive
    words joined by a single space. A text with at least one but fewer than n words gives
    one shingle of all its words; a text with no words gives the empty set.
    """
    raise NotImplementedError


def minhash_signature(shingles: set[str], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signature of a shingle set: `np.uint64[num_perm]`, the hash family above.

    signature[i] = min over s in shingles of (a_i * blake2b64(s) + b_i) % (2**61 - 1).
    The same (shingles, num_perm, seed) must give the same array in every process.
    """
    raise NotImplementedError


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of positions where the two signatures are equal (a Python float).

    For a random permutation, P(min-hashes equal) = |A & B| / |A | B|, so this estimates the
    Jaccard similarity with standard deviation sqrt(J (1 - J) / num_perm).
    Raises ValueError if the signatures have different lengths.
    """
    raise NotImplementedError


def lsh_candidate_pairs(signatures: list[np.ndarray], bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, of signatures that agree on every entry of at least one band.

    Band k (0 <= k < bands) is the slice `sig[k * rows : (k + 1) * rows]`: bands are
    disjoint and consecutive, `rows` entries each (entries past bands * rows are unused).
    Two documents with Jaccard J become candidates with probability 1 - (1 - J**rows)**bands.
    Raises ValueError if bands * rows exceeds the signature length.
    Hash each band's bytes into a dict of buckets rather than comparing all pairs.
    """
    raise NotImplementedError


def deduplicate(docs: list[str], threshold: float = 0.8, num_perm: int = 128, seed: int = 0) -> list[int]:
    """Indices of the documents to keep, in increasing order: the first of each cluster.

    Signatures use `shingles(doc)` (n = 5) and `minhash_signature(..., num_perm, seed)`.
    Walk the documents in order; document j is dropped if its estimated Jaccard with some
    already kept document is >= threshold, and kept otherwise. (LSH may be used to find
    candidates faster; the tests use corpora where near-duplicates are far above the
    threshold and unrelated documents far below it.)
    """
    raise NotImplementedError


def ngram_overlap(doc: str, benchmark: list[str], n: int = 13) -> float:
    """Fraction of the doc's distinct word n-grams that occur in any benchmark item.

    n-grams are `shingles(text, n)` for the doc and for every benchmark item (same
    lowercasing and whitespace collapsing; n-grams never span two benchmark items).
    Returns |doc grams & benchmark grams| / |doc grams|, and 0.0 for a doc with no words.
    A high value means the doc leaks benchmark text (GPT-3 used 13-gram overlap).
    """
    raise NotImplementedError
