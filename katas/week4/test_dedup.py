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
from graders.testing import hinted

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


@pytest.mark.points(1)
@pytest.mark.parametrize("text,n", [("Just three  WORDS", 5), ("one", 2), ("a b c d", 5), ("a b c d e", 5),
                                    ("", 3), (" \t\n ", 1)])
def test_shingles_of_a_short_or_empty_text(text, n):
    # fewer than n words (but at least one): one shingle of all of them; no words: the empty set
    got = dedup.shingles(text, n)
    check.equal(sorted(got), sorted(ngrams(text.lower().split(), n)), what=f"shingles({text!r}, n={n})",
                hint="short_text")


@pytest.mark.points(1)
def test_shingles_keep_punctuation_attached():
    text = "Hello, World! It's 3.5 o'clock -- (really)."
    got = dedup.shingles(text, 2)
    check.equal(sorted(got), sorted(ngrams(text.lower().split(), 2)), what="shingles of a text with punctuation",
                hint="punctuation")


# --- signatures --------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("case", range(6))
def test_signature_matches_the_fixed_hash_family(case):
    data = fixtures.load("week4/dedup")["signature_cases"][case]
    sig = dedup.minhash_signature(set(data["shingles"]), num_perm=data["num_perm"], seed=data["seed"])
    check.that(isinstance(sig, np.ndarray) and sig.dtype == np.uint64 and sig.shape == (data["num_perm"],),
               f"the signature should be a uint64 ndarray of shape ({data['num_perm']},), got "
               f"{type(sig).__name__} {getattr(sig, 'dtype', '')} {getattr(sig, 'shape', '')}", about=sig,
               hint="signature_type")
    check.equal([int(v) for v in sig], data["signature"], what="signature", hint="python_hash")


@pytest.mark.points(1)
def test_signature_defaults_are_128_permutations_with_seed_0():
    """minhash_signature(shingles) with num_perm and seed left out is minhash_signature(shingles,
    num_perm=128, seed=0): the signatures' defaults."""
    shingle_set = {"the cat sat on the", "cat sat on the mat", "sat on the mat today"}
    default = dedup.minhash_signature(shingle_set)
    explicit = dedup.minhash_signature(shingle_set, num_perm=128, seed=0)
    check.equal([int(v) for v in default], [int(v) for v in explicit],
                what="minhash_signature(shingles) against minhash_signature(shingles, num_perm=128, seed=0)",
                hint="default_arguments")


@pytest.mark.points(1)
@pytest.mark.parametrize("num_perm", [1, 16])
def test_signature_of_the_empty_set(num_perm):
    sig = dedup.minhash_signature(set(), num_perm=num_perm, seed=0)
    check.that(isinstance(sig, np.ndarray) and sig.dtype == np.uint64 and sig.shape == (num_perm,),
               f"the signature should be a uint64 ndarray of shape ({num_perm},), got "
               f"{type(sig).__name__} {getattr(sig, 'dtype', '')} {getattr(sig, 'shape', '')}", about=sig,
               hint="signature_type")
    check.equal([int(v) for v in sig], [2**64 - 1] * num_perm, what="signature of the empty set", hint="empty_set")


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
               "signatures with seeds 0 and 1 should differ in most positions", hint="seed_ignored")


# --- Jaccard estimates -------------------------------------------------------------------


@pytest.mark.points(1)
@given(seed=st.integers(0, 2**16), length=st.integers(1, 40))
def test_estimate_is_the_fraction_of_equal_positions(seed, length):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, length).astype(np.uint64)
    b = rng.integers(0, 4, length).astype(np.uint64)
    got = dedup.estimate_jaccard(a, b)
    check.that(isinstance(got, float), f"estimate_jaccard should return a Python float, got {type(got).__name__}",
               about=got, hint="jaccard_estimate")
    check.close(got, float(np.mean(a == b)), hint="jaccard_estimate")


@pytest.mark.points(1)
@pytest.mark.parametrize("lengths", [(8, 16), (1, 8), (8, 1)])
def test_estimate_rejects_different_lengths(lengths):
    # (1, 8): numpy would broadcast a length-1 signature against the other instead of failing
    with check.raises(ValueError, hint="length_check"):
        dedup.estimate_jaccard(np.zeros(lengths[0], dtype=np.uint64), np.zeros(lengths[1], dtype=np.uint64))


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


@pytest.mark.points(1)
def test_lsh_bands_may_fill_the_whole_signature():
    # bands * rows == the signature length is allowed (the bound is inclusive); the last band is sig[8:12]
    sigs = [np.arange(12, dtype=np.uint64), np.arange(12, dtype=np.uint64), np.arange(12, dtype=np.uint64)]
    sigs[1][:8] += 100  # 1 agrees with 0 and 2 only on the last band
    sigs[2][11] += 100  # 2 agrees with 0 on the first two bands
    got = hinted("band_layout", dedup.lsh_candidate_pairs, sigs, 4, 3)
    check.equal(sorted_pairs(got), sorted(banded_pairs(sigs, 4, 3)), what="candidate pairs (bands=4, rows=3, length 12)",
                hint="band_layout")


@pytest.mark.points(1)
def test_lsh_ignores_entries_past_the_last_band():
    # bands * rows = 6 of 10 entries: signatures that agree only on entries 6..9 are no candidates
    base = np.arange(10, dtype=np.uint64)
    tail_only = base.copy()
    tail_only[:6] += 50
    first_band = base.copy()
    first_band[3:] += 70
    sigs = [base, tail_only, first_band]
    got = dedup.lsh_candidate_pairs(sigs, 2, 3)
    check.equal(sorted_pairs(got), sorted(banded_pairs(sigs, 2, 3)), what="candidate pairs (bands=2, rows=3, length 10)",
                hint="band_layout")


@pytest.mark.points(1)
def test_lsh_pairs_are_ordered_and_plain():
    rng = np.random.default_rng(12)
    sigs = [rng.integers(0, 2, 6).astype(np.uint64) for _ in range(9)]
    got = dedup.lsh_candidate_pairs(sigs, 3, 2)
    pairs = [tuple(int(v) for v in p) for p in got]
    check.that(all(len(p) == 2 and p[0] < p[1] for p in pairs), f"every pair should be (i, j) with i < j, got "
               f"{sorted(p for p in pairs if len(p) != 2 or p[0] >= p[1])[:5]}", hint="pair_order")
    check.equal(sorted(pairs), sorted(banded_pairs(sigs, 3, 2)), what="candidate pairs", hint="pair_order")


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


def copies_and_near_copies(seed, n_bases=4, n_words=300):
    """Documents (what the student's code gets): see `copies_and_labels`."""
    return copies_and_labels(seed, n_bases, n_words)[0]


def exact_copy_labels(seed, n_bases=4, n_words=300):
    """For each document, which exact (normalised) text it is (called only through oracle(...))."""
    return copies_and_labels(seed, n_bases, n_words)[1]


def copies_and_labels(seed, n_bases, n_words):
    """Bases, copies that differ only in case and spacing (the same shingles: every estimate 1.0), and
    near copies with 2 words replaced (10 of 296 shingles change: J ~0.935, 6 standard deviations of the
    estimate above the default threshold 0.8 at num_perm=128, and all 128 positions equal with
    probability 0.935**128 < 2e-4)."""
    rng = random.Random(seed)
    docs, labels = [], []
    for b in range(n_bases):
        base = random_words(rng, n_words)
        docs.append(" ".join(base))
        labels.append(("base", b))
        for c in range(2):
            docs.append(messy(rng, base))
            labels.append(("base", b))
            near = list(base)
            for pos in rng.sample(range(0, n_words, 10), 2):
                near[pos] = "".join(rng.choice("xyz") for _ in range(9))
            docs.append(messy(rng, near))
            labels.append(("near", b, c))
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[i] for i in order], [labels[i] for i in order]


@pytest.mark.points(2)
def test_deduplicate_uses_its_threshold_inclusively():
    """threshold=1.0: an estimate of exactly 1.0 (identical signatures) reaches it, so exact copies
    (after normalisation) are dropped and near copies (estimate < 1.0) are kept. With the default
    threshold 0.8 the near copies would go too."""
    docs = copies_and_near_copies(seed=13)
    got = dedup.deduplicate(docs, threshold=1.0)
    want = oracle(first_of_each_cluster, exact_copy_labels(seed=13))
    check.equal(len(got), len(want), what="number of documents kept at threshold=1.0 (only exact copies go)",
                hint=oracle(threshold_mistake, got, want))
    check.equal(list(got), want, what="indices kept at threshold=1.0", hint="threshold_ignored")


def threshold_mistake(got, want):
    """Too few kept: the threshold was ignored; too many: an estimate equal to it was not dropped
    (called only through oracle(...))."""
    return "threshold_inclusive" if len(got) > len(want) else "threshold_ignored"


@pytest.mark.points(1)
def test_deduplicate_compares_five_word_shingles():
    """The same words in another order share (almost) no 5-word shingle: not duplicates."""
    rng = random.Random(14)
    words = random_words(rng, 80)
    shuffled = list(words)
    rng.shuffle(shuffled)
    docs = [" ".join(words), " ".join(shuffled), messy(rng, shuffled), " ".join(random_words(rng, 80))]
    check.equal(list(dedup.deduplicate(docs, num_perm=64)), [0, 1, 3], what="indices kept (document 1 is document 0's "
                "words shuffled; document 2 is a copy of document 1)", hint="dedup_shingles")


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
    got = hinted("empty_doc", dedup.ngram_overlap, "  \n", ["some benchmark text"])
    check.equal(float(got), 0.0, hint="empty_doc")


def overlap_by_definition(doc_words, items_words, n):
    """|doc n-grams & n-grams of any item| / |doc n-grams|, distinct n-grams (only through oracle(...))."""
    grams = ngrams(doc_words, n)
    bench = set().union(*(ngrams(words, n) for words in items_words))
    return len(grams & bench) / len(grams) if grams else 0.0


@pytest.mark.points(1)
@pytest.mark.parametrize("n", [3, 8])
def test_ngram_overlap_uses_n(n):
    rng = random.Random(15 + n)
    items = [random_words(rng, 20, letters="nopqrstuvwxyz") for _ in range(3)]
    doc = random_words(rng, 30, letters="abcdefghijklm")
    doc[5:5] = items[0][2:12]    # 10 quoted words: 10 - n + 1 of the doc's n-grams are in item 0
    doc[30:30] = items[1][0:4]   # 4 quoted words: in item 1 only for n <= 4 (none at the default n = 13)
    got = dedup.ngram_overlap(" ".join(doc), [" ".join(w) for w in items], n)
    check.close(got, oracle(overlap_by_definition, doc, items, n), what=f"ngram_overlap(..., n={n})",
                hint="overlap_definition")


@pytest.mark.points(1)
def test_ngram_overlap_counts_distinct_ngrams():
    rng = random.Random(17)
    item = random_words(rng, 15, letters="nopqrstuvwxyz")
    doc = item + item + item + random_words(rng, 40, letters="abcdefghijklm")  # the quote three times
    got = dedup.ngram_overlap(" ".join(doc), [" ".join(item)], 5)
    check.close(got, oracle(overlap_by_definition, doc, [item], 5), what="overlap of a doc that repeats a quote",
                hint="distinct_ngrams")


@pytest.mark.points(1)
def test_ngram_overlap_never_spans_two_benchmark_items():
    rng = random.Random(18)
    items = [random_words(rng, 20, letters="nopqrstuvwxyz") for _ in range(2)]
    # the end of item 0 followed by the start of item 1: every 13-gram here spans the two items
    doc = random_words(rng, 30, letters="abcdefghijklm") + items[0][-8:] + items[1][:8]
    got = dedup.ngram_overlap(" ".join(doc), [" ".join(w) for w in items])
    check.close(got, oracle(overlap_by_definition, doc, items, 13), what="overlap of n-grams that span two items",
                hint="grams_span_items")


@pytest.mark.points(1)
def test_ngram_overlap_of_a_short_doc_is_its_one_ngram():
    # fewer than n words: the doc's only n-gram is all its words (shingles' rule), found in a short item
    got = [dedup.ngram_overlap(doc, ["Only Five Words Are Here", "something else entirely"], 13)
           for doc in ("only  five words are HERE", "only five words", "")]
    check.close(np.array(got, dtype=np.float64),
                np.array([oracle(overlap_by_definition, d.lower().split(),
                                 [["only", "five", "words", "are", "here"], ["something", "else", "entirely"]], 13)
                          for d in ("only  five words are HERE", "only five words", "")]),
                what="overlap of docs shorter than n", hint="short_text")


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
