"""Hidden tests for week4/dedup: fresh inputs, expected values from the reference."""

import random

import numpy as np
import pytest
from hypothesis import given, strategies as st

from graders import check, oracle, reference, student

from .test_dedup import (cluster_labels, contaminated_corpus, corpus_with_clusters, first_of_each_cluster, messy,
                         random_words, sorted_pairs)

pytestmark = pytest.mark.hidden

dedup = student("week4.dedup")
ref = reference("week4.dedup")


@pytest.mark.points(2)
@given(text=st.text(alphabet="abcABCéÉ.,!-'0 \t\n", max_size=80), n=st.integers(1, 7))
def test_hidden_shingles_of_arbitrary_text(text, n):
    check.equal(sorted(dedup.shingles(text, n)), sorted(ref.shingles(text, n)), hint="no_normalisation")


@pytest.mark.points(2)
@given(seed=st.integers(0, 2**20), size=st.integers(0, 25), num_perm=st.sampled_from([1, 7, 64, 200]))
def test_hidden_signatures_equal_the_reference(seed, size, num_perm):
    rng = random.Random(seed)
    shingle_set = {" ".join(random_words(rng, 3)) for _ in range(size)}
    got = dedup.minhash_signature(shingle_set, num_perm=num_perm, seed=seed)
    want = ref.minhash_signature(shingle_set, num_perm=num_perm, seed=seed)
    check.equal([int(v) for v in got], [int(v) for v in want], what="signature",
                hint=oracle(signature_mistake, got, shingle_set, num_perm, seed))


def signature_mistake(got, shingle_set, num_perm, seed):
    """Which mistake gives `got` (called only through oracle(...)): a_i * x + b_i wrapped modulo 2**64
    (numpy uint64 arithmetic), the seed ignored, or else the hash family itself."""
    got = [int(v) for v in np.asarray(got).reshape(-1)]
    params = ref.hash_params(num_perm, seed)  # (a, b)
    wrapped = [2**64 - 1] * num_perm
    for s in shingle_set:
        x = ref.shingle_hash(s)
        wrapped = [min(w, ((params[0][i] * x) % 2**64 + params[1][i]) % 2**64 % (2**61 - 1))
                   for i, w in enumerate(wrapped)]
    if shingle_set and got == wrapped:
        return "overflow"
    if seed != 0 and got == [int(v) for v in ref.minhash_signature(shingle_set, num_perm=num_perm, seed=0)]:
        return "seed_ignored"
    return "python_hash"


@pytest.mark.points(1)
@pytest.mark.parametrize("seed", [0, 9])
def test_hidden_signature_needs_more_than_64_bits(seed):
    """a_i < 2**61 and x < 2**64: a_i * x has up to 125 bits, which uint64 arithmetic wraps silently."""
    rng = random.Random(100 + seed)
    shingle_set = {" ".join(random_words(rng, 5)) for _ in range(20)}
    got = dedup.minhash_signature(shingle_set, num_perm=32, seed=seed)
    want = ref.minhash_signature(shingle_set, num_perm=32, seed=seed)
    check.equal([int(v) for v in got], [int(v) for v in want], what="signature",
                hint=oracle(signature_mistake, got, shingle_set, 32, seed))


def planted_signatures(seed, n_docs=12, length=128):
    """Random signatures; some pairs copy a few random bands' worth of positions from each other."""
    rng = np.random.default_rng(seed)
    sigs = [rng.integers(0, 2**61 - 1, length, dtype=np.uint64) for _ in range(n_docs)]
    for _ in range(n_docs):
        i, j = rng.choice(n_docs, 2, replace=False)
        start, k = int(rng.integers(0, length - 16)), int(rng.integers(1, 17))
        sigs[j][start : start + k] = sigs[i][start : start + k]
    return sigs


@pytest.mark.points(2)
@pytest.mark.parametrize("bands,rows", [(16, 8), (32, 4), (20, 5), (128, 1), (3, 3)])
def test_hidden_lsh_on_planted_signatures(bands, rows):
    sigs = planted_signatures(bands * 10 + rows)
    check.equal(sorted_pairs(dedup.lsh_candidate_pairs(sigs, bands, rows)),
                sorted_pairs(ref.lsh_candidate_pairs(sigs, bands, rows)), what="candidate pairs", hint="band_layout")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,num_perm", [(31, 128), (32, 64)])
def test_hidden_deduplicate_fresh_corpus(seed, num_perm):
    docs = corpus_with_clusters(seed, n_clusters=5, n_singletons=4)
    got = list(dedup.deduplicate(docs, threshold=0.75, num_perm=num_perm, seed=seed))
    check.equal(got, list(ref.deduplicate(docs, threshold=0.75, num_perm=num_perm, seed=seed)),
                what="indices kept", hint="keep_last")
    check.equal(got, first_of_each_cluster(cluster_labels(seed, n_clusters=5, n_singletons=4)),
                what="indices kept", hint="keep_last")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,n", [(40, 13), (41, 8)])
def test_hidden_partial_leaks(seed, n):
    rng, benchmark, docs = contaminated_corpus(seed, n)
    quote = benchmark[0][5:25]  # 20 words of an item, inside another document
    docs[-1] = docs[-1][:10] + quote + docs[-1][10:]
    bench_texts = [" ".join(item) for item in benchmark]
    for i, doc in enumerate(docs):
        check.close(dedup.ngram_overlap(" ".join(doc), bench_texts, n), ref.ngram_overlap(" ".join(doc), bench_texts, n),
                    what=f"overlap of document {i}", hint="overlap_definition")


def near_copy_corpus(seed, n_bases=5, n_words=300):
    """Bases, exact copies (case and spacing scrambled) and near copies with 1 word replaced (J ~0.967:
    all of num_perm positions equal with probability 0.967**num_perm, 0.76 at 8 and 0.58 at 16), shuffled.
    At threshold=1.0 which near copies go depends on num_perm and seed: a test of both arguments that
    needs no estimate near the threshold (identical signatures are candidates for any LSH banding)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_bases):
        base = random_words(rng, n_words)
        docs.append(" ".join(base))
        docs.append(messy(rng, base))
        for _ in range(3):
            near = list(base)
            near[rng.randrange(n_words)] = "".join(rng.choice("xyz") for _ in range(9))
            docs.append(messy(rng, near))
    rng.shuffle(docs)
    return docs


def dedup_argument_mistake(got, docs, num_perm, seed):
    """The argument whose default reproduces `got` (called only through oracle(...))."""
    got = [int(i) for i in got]
    for mistake, (t, k, s) in {"num_perm_ignored": (1.0, 128, seed), "seed_ignored": (1.0, num_perm, 0),
                               "threshold_ignored": (0.8, num_perm, seed)}.items():
        if got == [int(i) for i in ref.deduplicate(docs, threshold=t, num_perm=k, seed=s)]:
            return mistake
    return "keep_last"


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,num_perm", [(3, 8), (4, 16)])
def test_hidden_deduplicate_uses_num_perm_and_seed(seed, num_perm):
    docs = near_copy_corpus(50 + seed)
    got = dedup.deduplicate(docs, threshold=1.0, num_perm=num_perm, seed=seed)
    want = ref.deduplicate(docs, threshold=1.0, num_perm=num_perm, seed=seed)
    check.equal([int(i) for i in got], want, what=f"indices kept (threshold=1.0, num_perm={num_perm}, seed={seed})",
                hint=oracle(dedup_argument_mistake, got, docs, num_perm, seed))


@pytest.mark.points(1)
def test_hidden_deduplicate_defaults_are_128_permutations_and_seed_0():
    """deduplicate(docs, threshold=1.0) with num_perm and seed left out keeps what num_perm=128,
    seed=0 keep. Near copies of 1000 words (J ~0.996: all 128 positions equal with probability
    ~0.6) make the kept set depend on both: seed 1, or 64 or 256 permutations, keep other sets."""
    docs = near_copy_corpus(60, n_bases=3, n_words=1000)
    got = dedup.deduplicate(docs, threshold=1.0)
    want = ref.deduplicate(docs, threshold=1.0, num_perm=128, seed=0)
    check.equal([int(i) for i in got], want, what="indices kept (threshold=1.0, num_perm and seed not passed)",
                hint="default_arguments")
