"""Hidden tests for week2/mlp_lm: fresh seeded inputs, expected values from the reference,
and the longest training (the catalogue's bar)."""

import numpy as np
import pytest
import torch

from graders import check, oracle, reference, student
from graders.testing import FLOAT32_REDUCTION

from .test_mlp_lm import (bar_mistake, bigram_by_counts, bigram_data, bigram_mistake, corpus_bigram, corpus_pairs,
                          corpus_split, dataset_mistake, forward_mistake, initial_weights, loaded_model, make_weights,
                          neighbours_mistake, rows_of_many_lengths, validation_loss, vocab_by_rule)

pytestmark = pytest.mark.hidden

mlp_lm = student("week2.mlp_lm")
model_solution = reference("week2.mlp_lm")


def random_docs(n, seed, alphabet="abcdefg xyz.", max_len=9):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), size=int(rng.integers(0, max_len + 1)))) for _ in range(n)]


@pytest.mark.points(1)
@pytest.mark.parametrize("seed", [1, 2])
def test_vocab_of_fresh_documents(seed):
    docs = random_docs(12, seed)
    out = mlp_lm.build_vocab(docs)
    want = model_solution.build_vocab(docs)
    check.equal(list(out[1]), want[1], what="itos", hint="boundary_id")
    check.equal(dict(out[0]), want[0], what="stoi", hint="boundary_id")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,block_size", [(3, 2), (4, 5), (5, 8)])
def test_dataset_of_fresh_documents(seed, block_size):
    """Random documents, some empty (they still give one pair: the boundary after nothing)."""
    docs = random_docs(10, seed)
    stoi = vocab_by_rule(docs)[0]
    out = mlp_lm.build_dataset(docs, stoi, block_size)
    want = model_solution.build_dataset(docs, stoi, block_size)
    hint = oracle(dataset_mistake, out, docs, stoi, block_size)
    check.equal(out[0], want[0], what="X", hint=hint)
    check.equal(out[1], want[1], what="Y", hint=hint)


def reference_logits(weights, X, sizes):
    """The model solution's logits with the test's weights (only through oracle(...))."""
    want = model_solution.MLPLanguageModel(*sizes[:4], direct=sizes[4])
    want.load_state_dict(weights)
    with torch.no_grad():
        return want(X)


@pytest.mark.points(2)
@pytest.mark.parametrize("direct", [False, True])
def test_forward_against_the_reference(direct):
    V, block_size, n_embd, n_hidden = 13, 5, 3, 20
    weights = make_weights(V, block_size, n_embd, n_hidden, direct, seed=80)
    X = torch.randint(0, V, (9, block_size), generator=torch.Generator().manual_seed(80))
    model = loaded_model(V, block_size, n_embd, n_hidden, direct, weights)
    expected = oracle(reference_logits, weights, X, (V, block_size, n_embd, n_hidden, direct))
    with torch.no_grad():
        out = model(X)
    check.close(out, expected, hint=oracle(forward_mistake, out, weights, X), **FLOAT32_REDUCTION)


@pytest.mark.points(1)
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_bigram_against_the_reference(alpha):
    x_train, y_train, x_val, y_val = bigram_data(9, 4, 300, 60, seed=81)
    out = mlp_lm.bigram_nll(x_train, y_train, x_val, y_val, 9, alpha)
    check.close(out, model_solution.bigram_nll(x_train, y_train, x_val, y_val, 9, alpha),
                hint=oracle(bigram_mistake, out, x_train, y_train, x_val, y_val, 9, alpha))


@pytest.mark.points(1)
def test_bigram_of_the_corpus():
    """Add-one (2.146) and add-0.1 (2.139) bigram losses of the corpus split, block 8."""
    train, val = corpus_split()
    stoi, itos = vocab_by_rule(train + val)
    X, Y = corpus_pairs(train, stoi, 8)
    Xv, Yv = corpus_pairs(val, stoi, 8)
    for alpha in (1.0, 0.1):
        out = mlp_lm.bigram_nll(X, Y, Xv, Yv, len(itos), alpha)
        check.close(out, oracle(bigram_by_counts, X, Y, Xv, Yv, len(itos), alpha), what=f"bigram NLL (alpha={alpha})",
                    hint=oracle(bigram_mistake, out, X, Y, Xv, Yv, len(itos), alpha))


@pytest.mark.points(1)
@pytest.mark.parametrize("seed", [82, 83])
def test_neighbours_against_the_reference(seed):
    embedding = rows_of_many_lengths(30, 6, seed=seed)
    for index, k in ((seed % 30, 4), (3, 10)):
        out = mlp_lm.nearest_neighbours(embedding, index, k)
        check.equal(out, model_solution.nearest_neighbours(embedding, index, k), what=f"neighbours of {index}",
                    hint=oracle(neighbours_mistake, out, embedding, index, k))


@pytest.mark.points(3)
def test_longer_training_reaches_the_catalogue_bar():
    """Block 8, n_embd 10, n_hidden 200, 600 steps of batch 128 at lr 1e-2 from the test's
    initial weights: validation loss at most 0.35 x the add-one bigram loss (2.146): the
    catalogue's bar, set there at 2,000 steps of batch 64 and lr 3e-3 (validation 0.479),
    which takes 3-7 s here.

    Measured with the reference (initial weights seeds 70-73, batches seeds 0-3): 0.574-0.587
    (0.267-0.273 x bigram), 1.9-2.7 s on the loaded 2-core machine; the bar leaves a 22%
    margin. The same run at 800 steps gives 0.53-0.56 (0.25-0.26 x), at 400 steps 0.64-0.69."""
    train, val = corpus_split()
    stoi, itos = vocab_by_rule(train + val)
    X, Y = corpus_pairs(train, stoi, 8)
    V = len(itos)
    model = loaded_model(V, 8, 10, 200, False, initial_weights(V, 8, 10, 200, seed=71))
    mlp_lm.train(model, X, Y, 600, batch_size=128, lr=1e-2, generator=torch.Generator().manual_seed(1))
    state = model.state_dict()
    loss = oracle(validation_loss, state, 8)
    bigram = oracle(corpus_bigram, X, Y, 8, V)
    check.that(loss <= 0.35 * bigram, f"validation loss {loss:.3f} should be at most 0.35 x the bigram loss "
               f"{bigram:.3f} = {0.35 * bigram:.3f}", hint=oracle(bar_mistake, state, 8, 0.35 * bigram))
