"""Public tests for week4/dedup.

Oracles: the definitions themselves (shingles, banding and overlap are computed here from
how the test built its inputs), exact Jaccard similarity of the planted sets for the
statistical checks, golden signatures of the fixed hash family (fixtures), and, when it
is installed, datasketch's MinHash.
"""

import math
import random

import numpy as np
import pytest
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student

dedup = student("week4.dedup")


def random_words(rng, n, letters="abcdefghijklmnopqrstuvwxyz"):
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(n)]


def ngrams(words, n):
    """The shingles of an already-normalised word list, straight from the definition."""
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def messy(rng, words):
    """The same words with random capitalisation and runs of spaces, tabs and newlines."""
    cased = [w.upper() if rng.random() < 0.3 else w.capitalize() if rng.random() < 0.3 else w for w in words]
    gaps = [rng.choice([" ", "  ", "\t", "\n", " \n "]) for _ in cased]
    return rng.choice(["", " ", "\n"]) + "".join(w + g for w, g in zip(cased, gaps))


def sorted_pairs(pairs):
    return sorted((int(i), int(j)) for i, j in pairs)


# --- shingles ----------------------------------------------------------------------------


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), n_words=st.integers(0, 30), n=st.integers(1, 6))
def test_shingles_lowercase_and_collapse_whitespace(seed, n_words, n):
    rng = random.Random(seed)
    words = random_words(rng, n_words)
    got = dedup.shingles(messy(rng, words), n)
    check.that(isinstance(got, set), f"shingles should return a set, got {type(got).__name__}", about=got)
    check.equal(sorted(got), sorted(ngrams(words, n)), hint="no_normalisation")


@pytest.mark.points(1)
def test_shingles_worked_example_and_default_n():
    got = dedup.shingles("The  cat\nsat on the MAT today")
    check.equal(sorted(got), sorted(ngrams("the cat sat on the mat today".split(), 5)), hint="no_normalisation")


# --- signatures --------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("case", range(6))
def test_signature_matches_the_fixed_hash_family(case):
    data = fixtures.load("week4/dedup")["signature_cases"][case]
    sig = dedup.minhash_signature(set(data["shingles"]), num_perm=data["num_perm"], seed=data["seed"])
    check.that(isinstance(sig, np.ndarray) and sig.dtype == np.uint64 and sig.shape == (data["num_perm"],),
               f"the signature should be a uint64 ndarray of shape ({data['num_perm']},), got "
               f"{type(sig).__name__} {getattr(sig, 'dtype', '')} {getattr(sig, 'shape', '')}", about=sig)
    check.equal([int(v) for v in sig], data["signature"], what="signature", hint="python_hash")


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**16), sizes=st.tuples(st.integers(1, 15), st.integers(1, 15)))
def test_signature_of_a_union_is_the_elementwise_minimum(seed, sizes):
    """min over A | B = min(min over A, min over B), whatever the hash family."""
    rng = random.Random(seed)
    a = {f"a {w}" for w in random_words(rng, sizes[0])}
    b = {f"b {w}" for w in random_words(rng, sizes[1])}
    sig_a, sig_b = dedup.minhash_signature(a, 32, 3), dedup.minhash_signature(b, 32, 3)
    sig_ab = dedup.minhash_signature(a | b, 32, 3)
    check.equal([int(v) for v in sig_ab], [int(v) for v in np.minimum(sig_a, sig_b)],
                what="signature of the union", hint="not_minimum")


@pytest.mark.points(1)
def test_signature_is_deterministic_and_depends_on_the_seed():
    shingle_set = ngrams(random_words(random.Random(5), 40), 5)
    first = dedup.minhash_signature(shingle_set, 64, 0)
    again = dedup.minhash_signature(set(sorted(shingle_set, reverse=True)), 64, 0)
    other = dedup.minhash_signature(shingle_set, 64, 1)
    check.equal([int(v) for v in again], [int(v) for v in first], what="signature computed twice", hint="python_hash")
    check.that(bool((np.asarray(other) != np.asarray(first)).mean() > 0.5),
               "signatures with seeds 0 and 1 should differ in most positions", hint="python_hash")


# --- Jaccard estimates -------------------------------------------------------------------


@pytest.mark.points(1)
@given(seed=st.integers(0, 2**16), length=st.integers(1, 40))
def test_estimate_is_the_fraction_of_equal_positions(seed, length):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, length).astype(np.uint64)
    b = rng.integers(0, 4, length).astype(np.uint64)
    check.close(dedup.estimate_jaccard(a, b), float(np.mean(a == b)), hint="jaccard_estimate")


@pytest.mark.points(1)
def test_estimate_rejects_different_lengths():
    with check.raises(ValueError):
        dedup.estimate_jaccard(np.zeros(8, dtype=np.uint64), np.zeros(16, dtype=np.uint64))


def planted_pair(rng, jaccard, total=200):
    """Two shingle sets with Jaccard similarity round(jaccard * total) / total (|A | B| = total)."""
    shared = round(jaccard * total)
    only_a = (total - shared) // 2
    items = [f"item {i} {w}" for i, w in enumerate(random_words(rng, total))]
    a = set(items[:shared]) | set(items[shared : shared + only_a])
    b = set(items[:shared]) | set(items[shared + only_a :])
    return a, b


def exact_jaccard(a, b):
    """|A & B| / |A | B|: the exact similarity (called only through oracle(...))."""
    return len(a & b) / len(a | b)


@pytest.mark.points(3)
@pytest.mark.parametrize("target", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_minhash_estimates_exact_jaccard(target):
    """|estimate - J| <= 0.15 at num_perm = 256.

    For a random hash family each position agrees with probability J, independently, so by
    Hoeffding P(|estimate - J| > t) <= 2 exp(-2 * 256 * t**2) = 2e-5 at t = 0.15: a correct
    solution fails this 7-case test with probability below 1.5e-4 over the choice of seed.
    The family here is fixed, so the outcome is too: it never flakes.
    """
    rng = random.Random(int(target * 100))
    a, b = planted_pair(rng, target)
    exact = oracle(exact_jaccard, a, b)
    sig_a, sig_b = dedup.minhash_signature(a, 256, 11), dedup.minhash_signature(b, 256, 11)
    estimate = dedup.estimate_jaccard(sig_a, sig_b)
    check.close(estimate, exact, rtol=0.0, atol=0.15, reason="MinHash is an estimate; see the docstring",
                hint="jaccard_estimate")


# --- LSH ---------------------------------------------------------------------------------


def banded_pairs(signatures, bands, rows):
    """The definition: (i, j) agree on every entry of some band sig[k*rows:(k+1)*rows]."""
    pairs = set()
    for i in range(len(signatures)):
        for j in range(i + 1, len(signatures)):
            for k in range(bands):
                if np.array_equal(signatures[i][k * rows : (k + 1) * rows], signatures[j][k * rows : (k + 1) * rows]):
                    pairs.add((i, j))
                    break
    return pairs


@pytest.mark.points(3)
def test_lsh_pairs_follow_the_band_definition():
    rng = np.random.default_rng(0)
    for case in range(40):
        length = int(rng.integers(4, 13))
        rows = int(rng.integers(1, 4))
        bands = int(rng.integers(1, length // rows + 1))
        sigs = [rng.integers(0, 3, length).astype(np.uint64) for _ in range(int(rng.integers(2, 8)))]
        got = dedup.lsh_candidate_pairs(sigs, bands, rows)
        check.that(isinstance(got, set), f"lsh_candidate_pairs should return a set, got {type(got).__name__}")
        check.equal(sorted_pairs(got), sorted(banded_pairs(sigs, bands, rows)),
                    what=f"candidate pairs (case {case}: bands={bands}, rows={rows}, length {length})", hint="band_layout")


@pytest.mark.points(1)
def test_lsh_rejects_too_many_bands():
    sigs = [np.zeros(8, dtype=np.uint64), np.ones(8, dtype=np.uint64)]
    with check.raises(ValueError, hint="band_layout"):
        dedup.lsh_candidate_pairs(sigs, 3, 3)


def corpus_with_clusters(seed, n_clusters=6, n_singletons=6, n_words=300):
    """Documents (what the student's code gets): see `clusters_and_documents`."""
    return clusters_and_documents(seed, n_clusters, n_singletons, n_words)[0]


def cluster_labels(seed, n_clusters=6, n_singletons=6, n_words=300):
    """For each document, the cluster it belongs to (called only through oracle(...))."""
    return clusters_and_documents(seed, n_clusters, n_singletons, n_words)[1]


def clusters_and_documents(seed, n_clusters, n_singletons, n_words):
    """Documents, and for each the cluster it belongs to.

    A cluster is a base document and 1-3 copies, each with one word replaced (5 of 296
    shingles change: Jaccard ~0.97 with the base, ~0.93 between copies, so the estimate's
    standard deviation at num_perm=128, ~0.023, leaves the 0.8 threshold 5 deviations
    away) and with its case and spacing scrambled. Unrelated documents share no shingle.
    """
    rng = random.Random(seed)
    docs, labels = [], []
    for c in range(n_clusters):
        base = random_words(rng, n_words)
        docs.append(" ".join(base))
        labels.append(c)
        for _ in range(rng.randint(1, 3)):
            copy = list(base)
            copy[rng.randrange(n_words)] = "".join(rng.choice("xyz") for _ in range(9))
            docs.append(messy(rng, copy))
            labels.append(c)
    for s in range(n_singletons):
        docs.append(" ".join(random_words(rng, n_words)))
        labels.append(n_clusters + s)
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[i] for i in order], [labels[i] for i in order]


@pytest.mark.points(2)
def test_lsh_finds_planted_near_duplicates():
    """bands=32, rows=4: P(candidate) = 1 - (1 - J**4)**32, over 1 - 1e-8 at J = 0.8."""
    docs = corpus_with_clusters(seed=1)
    planted = oracle(planted_pairs, cluster_labels(seed=1))
    sigs = [dedup.minhash_signature(dedup.shingles(d), 128, 0) for d in docs]
    got = set(sorted_pairs(dedup.lsh_candidate_pairs(sigs, 32, 4)))
    check.that(not planted - got, f"planted near-duplicate pairs missed: {sorted(planted - got)}")
    check.that(not got - planted, f"unrelated pairs reported (they share no shingle): {sorted(got - planted)}")


def planted_pairs(labels):
    """The pairs (i, j), i < j, of documents in the same cluster (called only through oracle(...))."""
    return {(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels)) if labels[i] == labels[j]}


# --- deduplicate -------------------------------------------------------------------------


def first_of_each_cluster(labels):
    seen, keep = set(), []
    for i, label in enumerate(labels):
        if label not in seen:
            seen.add(label)
            keep.append(i)
    return keep


@pytest.mark.points(3)
@pytest.mark.parametrize("seed", [2, 3])
def test_deduplicate_keeps_the_first_of_each_cluster(seed):
    docs = corpus_with_clusters(seed)
    got = dedup.deduplicate(docs)
    check.equal(list(got), first_of_each_cluster(cluster_labels(seed)), what="indices kept", hint="keep_last")


@pytest.mark.points(1)
def test_deduplicate_exact_copies_and_unrelated_docs():
    rng = random.Random(4)
    a, b = " ".join(random_words(rng, 60)), " ".join(random_words(rng, 60))
    docs = [a, b, a, a.upper(), b + "  ", " ".join(random_words(rng, 60))]
    check.equal(list(dedup.deduplicate(docs, threshold=0.9, num_perm=64, seed=5)), [0, 1, 5],
                what="indices kept", hint="keep_last")


# --- decontamination ---------------------------------------------------------------------


def contaminated_corpus(seed, n=13):
    """(rng, benchmark, docs) for the student's code: see `contamination`."""
    return contamination(seed, n)[:3]


def planted_overlap(seed, n=13):
    """The overlap of each document of `contaminated_corpus(seed, n)` (called only through oracle(...))."""
    return contamination(seed, n)[3]


def contamination(seed, n):
    """Benchmark items and documents in disjoint vocabularies; one document quotes an item."""
    rng = random.Random(seed)
    benchmark = [random_words(rng, 30, letters="nopqrstuvwxyz") for _ in range(4)]
    docs = [random_words(rng, rng.randint(60, 120), letters="abcdefghijklm") for _ in range(5)]
    leak_doc, item = rng.randrange(len(docs)), rng.randrange(len(benchmark))
    cut = rng.randint(0, len(docs[leak_doc]))
    docs[leak_doc] = docs[leak_doc][:cut] + benchmark[item] + docs[leak_doc][cut:]
    near_miss = benchmark[(item + 1) % 4][3 : 3 + n - 1]  # n-1 words of another item: no full n-gram
    docs.append(random_words(rng, 40, letters="abcdefghijklm") + near_miss)
    expected = [0.0] * len(docs)
    total = len(docs[leak_doc]) - n + 1
    expected[leak_doc] = (len(benchmark[item]) - n + 1) / total  # every n-gram inside the quote
    return rng, benchmark, docs, expected


@pytest.mark.points(3)
@pytest.mark.parametrize("seed", [6, 7])
def test_ngram_overlap_flags_the_leak_and_nothing_else(seed):
    rng, benchmark, docs = contaminated_corpus(seed)
    bench_texts = [" ".join(item) for item in benchmark]
    got = [dedup.ngram_overlap(" ".join(doc), bench_texts) for doc in docs]
    check.close(np.array(got, dtype=np.float64), np.array(planted_overlap(seed)), what="overlap of each document",
                hint="overlap_definition")


@pytest.mark.points(1)
def test_ngram_overlap_normalises_like_shingles():
    rng, benchmark, docs = contaminated_corpus(8)
    bench_texts = [messy(rng, item) for item in benchmark]
    got = [dedup.ngram_overlap(messy(rng, doc), bench_texts) for doc in docs]
    check.close(np.array(got, dtype=np.float64), np.array(planted_overlap(8)), what="overlap of each document (mixed case and spacing)",
                hint="no_normalisation")


@pytest.mark.points(1)
def test_ngram_overlap_of_an_empty_doc_is_zero():
    check.equal(float(dedup.ngram_overlap("  \n", ["some benchmark text"])), 0.0)


# --- optional: agreement with datasketch ---------------------------------------------------


@pytest.mark.points(1)
def test_estimates_agree_with_datasketch():
    """datasketch uses another hash family; both estimate the same J.

    Each estimate is within 0.12 of J except with probability 2 exp(-2 * 256 * 0.12**2)
    = 1.3e-3 (Hoeffding), so they differ by more than 0.24 with probability below 3e-3 per
    pair over a random seed; the seeds here are fixed, so it never flakes.
    """
    pytest.importorskip("datasketch")
    rng = random.Random(9)
    for target in (0.2, 0.5, 0.8):
        a, b = planted_pair(rng, target)
        ours = dedup.estimate_jaccard(dedup.minhash_signature(a, 256, 0), dedup.minhash_signature(b, 256, 0))
        check.close(ours, oracle(datasketch_estimate, a, b), rtol=0.0, atol=0.24,
                    reason="two independent estimates of the same J",
                    what=f"our estimate vs datasketch's (exact J = {oracle(exact_jaccard, a, b):.2f})")


def datasketch_estimate(a, b):
    """datasketch's MinHash estimate of J(a, b) (called only through oracle(...))."""
    import datasketch

    m_a, m_b = datasketch.MinHash(num_perm=256, seed=1), datasketch.MinHash(num_perm=256, seed=1)
    m_a.update_batch([s.encode("utf-8") for s in sorted(a)])
    m_b.update_batch([s.encode("utf-8") for s in sorted(b)])
    return m_a.jaccard(m_b)
