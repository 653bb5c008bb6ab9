"""Hidden tests for week4/dedup: fresh inputs, expected values from the reference."""

import random

import numpy as np
import pytest
from hypothesis import given, strategies as st

from graders import check, reference, student

from .test_dedup import (cluster_labels, contaminated_corpus, corpus_with_clusters, first_of_each_cluster, random_words,
                         sorted_pairs)

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
    check.equal([int(v) for v in got], [int(v) for v in want], what="signature", hint="python_hash")


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
