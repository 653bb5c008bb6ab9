"""Public tests for week2/mlp_lm.

Oracles: the documented rules written here (the vocabulary, the (context, target) pairs),
the test's own MLP forward run on weights the test makes (loaded into your model too),
counts made with `np.add.at` for the bigram baseline, `torch.optim.AdamW` replaying your
training with the same batches, `F.cosine_similarity` for the neighbours, and chi-square
tests of sampled characters against the softmax of a model the test owns.
"""

import functools

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from graders import check, fixtures, in_one_crossing, oracle, student, unwrap
from graders.testing import FLOAT32_REDUCTION, hinted, mistake_shown, randn

mlp_lm = student("week2.mlp_lm")

CORPUS = fixtures.FIXTURES_DIR / "corpus" / "corpus.txt"
P_VALUE_FLOOR = 1e-6  # a correct sampler fails a chi-square test with probability 1e-6


# --- data the tests make ----------------------------------------------------------------------


@functools.cache
def corpus_split():
    """(train, validation) documents: the ASCII corpus stories without "\\n" or "\\t", split by
    np.random.default_rng(0).permutation (90 validation documents, 810 train)."""
    text = CORPUS.read_text(encoding="utf-8")
    docs = [d for d in text.split("<|endoftext|>") if d.isascii() and "\n" not in d and "\t" not in d]
    order = np.random.default_rng(0).permutation(len(docs))
    return tuple(docs[i] for i in order[90:]), tuple(docs[i] for i in order[:90])


def vocab_by_rule(docs):
    """(stoi, itos) as the docstring defines them: the boundary, then the sorted characters."""
    itos = ["\n"] + sorted(set("".join(docs)))
    return {ch: i for i, ch in enumerate(itos)}, itos


def corpus_pairs(docs, stoi, block_size):
    """X [N, block], Y [N] as the docstring defines them, vectorised per document (inputs for training)."""
    xs, ys = [], []
    for doc in docs:
        ids = torch.tensor([stoi[ch] for ch in doc] + [0])
        padded = torch.cat([torch.zeros(block_size, dtype=torch.long), ids])
        xs.append(padded.unfold(0, block_size, 1)[:len(ids)])
        ys.append(ids)
    return torch.cat(xs), torch.cat(ys)


def pairs_by_rule(docs, stoi, block_size, reset=True, end=True, shift_first=False):
    """The (context, target) pairs, written as a loop; the flags give what a mistake gives:
    reset=False keeps the context across documents, end=False drops the boundary target,
    shift_first=True shifts the target into the context before emitting the pair."""
    xs, ys, context = [], [], [0] * block_size
    for doc in docs:
        if reset:
            context = [0] * block_size
        for ch in doc + ("\n" if end else ""):
            if shift_first:
                context = context[1:] + [stoi[ch]]
            xs.append(context)
            ys.append(stoi[ch])
            if not shift_first:
                context = context[1:] + [stoi[ch]]
    return torch.tensor(xs, dtype=torch.long).reshape(len(xs), block_size), torch.tensor(ys, dtype=torch.long)


def dataset_mistake(out, docs, stoi, block_size):
    """The mistake build_dataset's wrong (X, Y) shows, or None (only through oracle(...))."""
    variants = {
        "context_not_reset": [list(pairs_by_rule(docs, stoi, block_size, reset=False))],
        "no_end_boundary": [list(pairs_by_rule(docs, stoi, block_size, end=False)),
                            list(pairs_by_rule(docs, stoi, block_size, end=False, reset=False))],
        "target_in_context": [list(pairs_by_rule(docs, stoi, block_size, shift_first=True))],
    }
    return mistake_shown(list(out) if isinstance(out, (tuple, list)) else out, variants)


def make_weights(V, block_size, n_embd, n_hidden, direct, seed, dtype=torch.float32, scale=1.0):
    """Seeded weights in MLPLanguageModel's layout (loaded into your model and the test's)."""
    fan_in = block_size * n_embd
    weights = {
        "embedding.weight": randn(V, n_embd, seed=seed, dtype=dtype),
        "hidden.weight": randn(n_hidden, fan_in, seed=seed + 1, dtype=dtype, scale=scale * fan_in ** -0.5),
        "hidden.bias": randn(n_hidden, seed=seed + 2, dtype=dtype, scale=0.1),
        "output.weight": randn(V, n_hidden, seed=seed + 3, dtype=dtype, scale=scale * n_hidden ** -0.5),
        "output.bias": randn(V, seed=seed + 4, dtype=dtype, scale=0.1),
    }
    if direct:
        weights["direct.weight"] = randn(V, fan_in, seed=seed + 5, dtype=dtype, scale=scale * fan_in ** -0.5)
    return weights


def mlp_logits(weights, X, order="oldest first", direct=True):
    """The test's forward: output(tanh(hidden(x))) + direct(x), x the concatenated embeddings."""
    emb = weights["embedding.weight"][X]  # [B, block, n_embd]
    if order == "interleaved":
        emb = emb.transpose(1, 2)
    elif order == "newest first":
        emb = emb.flip(1)
    x = emb.reshape(X.shape[0], -1)
    logits = torch.tanh(x @ weights["hidden.weight"].T + weights["hidden.bias"]) @ weights["output.weight"].T
    logits = logits + weights["output.bias"]
    if direct and "direct.weight" in weights:
        logits = logits + x @ weights["direct.weight"].T
    return logits


def forward_mistake(out, weights, X):
    """The mistake the model's wrong logits show, or None (only through oracle(...))."""
    variants = {"embedding_order": [mlp_logits(weights, X, order) for order in ("interleaved", "newest first")]}
    if "direct.weight" in weights:
        variants["direct_connections"] = [mlp_logits(weights, X, direct=False)]
    return mistake_shown(out, variants)


def loaded_model(V, block_size, n_embd, n_hidden, direct, weights):
    """Your MLPLanguageModel with the test's weights."""
    model = mlp_lm.MLPLanguageModel(V, block_size, n_embd, n_hidden, direct=direct)
    model.load_state_dict(weights)
    return model


class FixedLM(nn.Module):
    """A language model the test owns (fixed weights, the kata's architecture): `generate`
    is tested on it, so that its tests do not depend on your MLPLanguageModel."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def forward(self, X):
        return mlp_logits(self.weights, X)


# --- build_vocab ------------------------------------------------------------------------------


def vocab_mistake(out, docs):
    """`boundary_id` when itos is the right characters in another order or without the boundary."""
    chars = sorted(set("".join(docs)))
    seen = list(dict.fromkeys("".join(docs)))
    itos = out[1] if isinstance(out, (tuple, list)) and len(out) == 2 else None
    return mistake_shown(itos, {"boundary_id": [chars, chars + ["\n"], ["\n"] + seen, seen]})


@pytest.mark.points(1)
def test_build_vocab_worked_example():
    docs = ["hello", "ab"]
    out = mlp_lm.build_vocab(docs)
    check.equal(list(out[1]), ["\n", "a", "b", "e", "h", "l", "o"], what="itos", hint=oracle(vocab_mistake, out, docs))
    check.equal(dict(out[0]), {"\n": 0, "a": 1, "b": 2, "e": 3, "h": 4, "l": 5, "o": 6}, what="stoi",
                hint="boundary_id")


@pytest.mark.points(1)
def test_build_vocab_of_the_corpus():
    train, val = corpus_split()
    docs = list(train + val)
    out = mlp_lm.build_vocab(docs)
    check.equal(list(out[1]), oracle(lambda: vocab_by_rule(docs)[1]), what="itos of the corpus",
                hint=oracle(vocab_mistake, out, docs))
    itos, stoi = out[1], out[0]
    check.that(type(itos) is list and type(stoi) is dict, "build_vocab returns (a dict, a list)", hint="boundary_id")
    check.that(all(stoi[ch] == i for i, ch in enumerate(itos)) and len(stoi) == len(itos),
               "stoi must be the inverse of itos: stoi[itos[i]] == i", hint="boundary_id")


@pytest.mark.points(1)
def test_build_vocab_rejects_a_newline_in_a_document():
    with check.raises(ValueError, hint="newline_not_rejected"):
        mlp_lm.build_vocab(["a story", "two\nlines"])


# --- build_dataset ----------------------------------------------------------------------------


@pytest.mark.points(1)
def test_build_dataset_worked_example():
    docs, stoi = ["ab"], {"\n": 0, "a": 1, "b": 2}
    out = mlp_lm.build_dataset(docs, stoi, 3)
    hint = oracle(dataset_mistake, out, docs, stoi, 3)
    check.equal(out[0], torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 2]]), what="X", hint=hint)
    check.equal(out[1], torch.tensor([1, 2, 0]), what="Y", hint=hint)


@pytest.mark.points(2)
@pytest.mark.parametrize("block_size", [1, 2, 4, 6])
def test_build_dataset_of_several_documents(block_size):
    """Three documents, one shorter than the block: every document starts from zeros and
    ends by predicting the boundary."""
    docs = ["abcab", "ca", "bbaccb"]
    stoi = {"\n": 0, "a": 1, "b": 2, "c": 3}
    out = mlp_lm.build_dataset(docs, stoi, block_size)
    expected = oracle(pairs_by_rule, docs, stoi, block_size)
    hint = oracle(dataset_mistake, out, docs, stoi, block_size)
    check.equal(out[0], expected[0], what=f"X (block_size {block_size})", hint=hint)
    check.equal(out[1], expected[1], what=f"Y (block_size {block_size})", hint=hint)


@pytest.mark.points(1)
def test_build_dataset_of_corpus_documents():
    """40 corpus stories: N = sum(len(doc) + 1) pairs, int64, as the rule gives them."""
    train, _ = corpus_split()
    docs = list(train[:40])
    stoi = vocab_by_rule(docs)[0]
    out = mlp_lm.build_dataset(docs, stoi, 8)
    expected = oracle(pairs_by_rule, docs, stoi, 8)
    hint = oracle(dataset_mistake, out, docs, stoi, 8)
    check.equal(out[0], expected[0], what="X of 40 stories", hint=hint)
    check.equal(out[1], expected[1], what="Y of 40 stories", hint=hint)


# --- MLPLanguageModel -------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("direct", [False, True])
def test_model_layout(direct):
    model = mlp_lm.MLPLanguageModel(11, 3, 5, 7, direct=direct)
    shapes = {name: list(t.shape) for name, t in model.state_dict().items()}
    check.equal({k: v for k, v in shapes.items() if not k.startswith("direct")},
                {"embedding.weight": [11, 5], "hidden.weight": [7, 15], "hidden.bias": [7],
                 "output.weight": [11, 7], "output.bias": [11]}, what="state_dict shapes")
    check.equal({k: v for k, v in shapes.items() if k.startswith("direct")},
                {"direct.weight": [11, 15]} if direct else {}, what=f"direct.* entries (direct={direct})",
                hint="direct_connections")


@pytest.mark.points(2)
@pytest.mark.parametrize("block_size,n_embd", [(3, 5), (4, 4), (1, 6)], ids=["rectangular", "square", "block-1"])
@pytest.mark.parametrize("direct", [False, True])
def test_forward_matches_the_test_model(block_size, n_embd, direct):
    V, n_hidden = 9, 16
    weights = make_weights(V, block_size, n_embd, n_hidden, direct, seed=10 + block_size)
    X = torch.randint(0, V, (6, block_size), generator=torch.Generator().manual_seed(block_size))
    model = loaded_model(V, block_size, n_embd, n_hidden, direct, weights)
    with torch.no_grad():
        out = model(X)
    check.close(out, mlp_logits(weights, X), hint=oracle(forward_mistake, out, weights, X), **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_forward_in_float64():
    V, block_size, n_embd, n_hidden = 7, 3, 4, 10
    weights = make_weights(V, block_size, n_embd, n_hidden, True, seed=20, dtype=torch.float64)
    X = torch.randint(0, V, (5, block_size), generator=torch.Generator().manual_seed(20))
    model = mlp_lm.MLPLanguageModel(V, block_size, n_embd, n_hidden, direct=True).double()
    model.load_state_dict(weights)
    with torch.no_grad():
        out = model(X)
    check.close(out, mlp_logits(weights, X), hint=oracle(forward_mistake, out, weights, X),
                what="logits of a float64 model (float64)")


@pytest.mark.points(1)
def test_gradients_reach_every_parameter():
    V, block_size, n_embd, n_hidden = 7, 3, 4, 10
    model = loaded_model(V, block_size, n_embd, n_hidden, True, make_weights(V, block_size, n_embd, n_hidden, True, 21))
    X = torch.randint(0, V, (8, block_size), generator=torch.Generator().manual_seed(21))
    got = model.with_grad(X)
    check.equal(sorted(got.parameters), ["direct.weight", "embedding.weight", "hidden.bias", "hidden.weight",
                                         "output.bias", "output.weight"], what="trainable parameters")
    for name, grad in got.parameters.items():
        check.that(grad is not None and bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0),
                   f"parameter {name} received no (finite, non-zero) gradient: is it used in forward?", about=grad)


# --- bigram_nll -------------------------------------------------------------------------------


def bigram_by_counts(x_train, y_train, x_val, y_val, V, alpha=1.0, axis=1, position=-1):
    """Add-alpha bigram NLL with np.add.at counts; axis=0 and position=0 give the mistakes'."""
    counts = np.zeros((V, V))
    np.add.at(counts, (x_train[:, position].numpy(), y_train.numpy()), 1.0)
    totals = counts.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        probs = (counts + alpha) / (totals + alpha * V)
        return float(-np.log(probs[x_val[:, position].numpy(), y_val.numpy()]).mean())


def bigram_mistake(out, x_train, y_train, x_val, y_val, V, alpha):
    """The mistake bigram_nll's wrong loss shows, or None (only through oracle(...)). The data
    holds a validation pair training never saw: without smoothing the loss is inf (or nan)."""
    if isinstance(out, float) and not np.isfinite(out):
        return "bigram_unsmoothed"
    args = (x_train, y_train, x_val, y_val, V)
    return mistake_shown(out, {
        "bigram_wrong_axis": [bigram_by_counts(*args, alpha, axis=0), bigram_by_counts(*args, alpha, axis=0, position=0)],
        "bigram_last_id": [bigram_by_counts(*args, alpha, position=0)],
    })


def bigram_data(V, block_size, n_train, n_val, seed):
    """Random pairs; the validation set holds a (last id, next id) pair the training set lacks."""
    g = torch.Generator().manual_seed(seed)
    x_train = torch.randint(0, V, (n_train, block_size), generator=g)
    y_train = torch.randint(0, V, (n_train,), generator=g)
    seen = set(zip(x_train[:, -1].tolist(), y_train.tolist()))
    unseen = next((i, j) for i in range(V) for j in range(V) if (i, j) not in seen)
    x_val = torch.randint(0, V, (n_val, block_size), generator=g)
    y_val = torch.randint(0, V, (n_val,), generator=g)
    x_val[0, -1], y_val[0] = unseen[0], unseen[1]
    return x_train, y_train, x_val, y_val


@pytest.mark.points(2)
@pytest.mark.parametrize("alpha", [None, 0.1, 2.0], ids=["default", "0.1", "2.0"])
def test_bigram_nll_matches_counting(alpha):
    V = 6
    x_train, y_train, x_val, y_val = bigram_data(V, 3, 80, 40, seed=30)
    options = {} if alpha is None else {"alpha": alpha}
    out = mlp_lm.bigram_nll(x_train, y_train, x_val, y_val, V, **options)
    a = 1.0 if alpha is None else alpha
    check.that(type(out) is float, f"bigram_nll returns a Python float, got {type(out).__name__}", about=out)
    check.close(out, oracle(bigram_by_counts, x_train, y_train, x_val, y_val, V, a),
                hint=oracle(bigram_mistake, out, x_train, y_train, x_val, y_val, V, a),
                what=f"bigram NLL (alpha={a})")


@pytest.mark.points(1)
def test_bigram_nll_is_finite_for_an_unseen_pair():
    V = 5
    x_train, y_train, x_val, y_val = bigram_data(V, 2, 30, 10, seed=31)
    out = mlp_lm.bigram_nll(x_train, y_train, x_val, y_val, V, alpha=0.5)
    check.that(isinstance(out, float) and np.isfinite(out),
               f"the validation set holds a pair training never saw: with smoothing its loss is finite, got {out!r}",
               hint="bigram_unsmoothed", about=out)


# --- nearest_neighbours -----------------------------------------------------------------------


def rows_of_many_lengths(V, d, seed):
    """Random directions with norms from ~0.05 to ~20: cosine and Euclidean rankings differ."""
    return randn(V, d, seed=seed) * randn(V, 1, seed=seed + 1, scale=1.2).exp()


def cosine_ranking(embedding, index, k, include_self=False, euclidean=False):
    """The k most similar rows by F.cosine_similarity (or nearest by distance), most similar first."""
    if euclidean:
        score = -(embedding - embedding[index]).norm(dim=1)
    else:
        score = F.cosine_similarity(embedding, embedding[index][None], dim=1)
    if not include_self:
        score[index] = float("-inf")
    return score.argsort(descending=True)[:k].tolist()


def neighbours_mistake(out, embedding, index, k):
    return mistake_shown(out, {
        "neighbours_include_query": [cosine_ranking(embedding, index, k, include_self=True)],
        "neighbours_euclidean": [cosine_ranking(embedding, index, k, euclidean=True),
                                 cosine_ranking(embedding, index, k, include_self=True, euclidean=True)],
    })


@pytest.mark.points(2)
@pytest.mark.parametrize("index,k", [(0, 3), (7, 5), (14, 1)])
def test_nearest_neighbours_by_cosine(index, k):
    embedding = rows_of_many_lengths(15, 4, seed=40)
    out = mlp_lm.nearest_neighbours(embedding, index, k)
    check.equal(out, oracle(cosine_ranking, embedding, index, k), what=f"the {k} nearest neighbours of row {index}",
                hint=oracle(neighbours_mistake, out, embedding, index, k))


@pytest.mark.points(1)
def test_nearest_neighbours_exclude_the_query():
    embedding = randn(10, 3, seed=41)
    out = mlp_lm.nearest_neighbours(embedding, 4, 9)
    check.that(isinstance(out, list) and 4 not in out and len(out) == 9,
               f"the 9 neighbours of row 4 among 10 rows are every other row, got {out!r}",
               hint="neighbours_include_query", about=out)
    check.equal(out, oracle(cosine_ranking, embedding, 4, 9), what="the 9 neighbours of row 4",
                hint=oracle(neighbours_mistake, out, embedding, 4, 9))


# --- generate ---------------------------------------------------------------------------------

ITOS = ["\n", "a", "b", "c", "d", "e", "f", "g"]


def generator_model(seed, boundary_bias=0.0, scale=1.0, block_size=3):
    """A FixedLM over ITOS; `boundary_bias` added to the boundary's logit."""
    weights = make_weights(len(ITOS), block_size, 4, 12, True, seed=seed, scale=scale)
    weights["output.bias"][0] += boundary_bias
    return FixedLM(weights)


def greedy_by_rule(model, block_size, max_len, keep_boundary=False, stop=True):
    """Greedy decoding as the docstring defines it; the flags give the mistakes' strings."""
    context, out = [0] * block_size, []
    with torch.no_grad():
        while len(out) < max_len:
            ix = int(model(torch.tensor([context]))[0].argmax())
            if ix == 0 and stop:
                if keep_boundary:
                    out.append(ITOS[0])
                break
            out.append(ITOS[ix])
            context = context[1:] + [ix]
    return "".join(out)


def generation_mistake(out, model, block_size, max_len):
    return mistake_shown(out, {
        "returns_boundary": [greedy_by_rule(model, block_size, max_len, keep_boundary=True)],
        "never_stops": [greedy_by_rule(model, block_size, max_len, stop=False),
                        greedy_by_rule(model, block_size, max_len, stop=False).replace("\n", "")],
    })


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [68, 73, 81])
def test_greedy_generation_stops_at_the_boundary(seed):
    """temperature 0: the argmax at every step, until the boundary (not returned). For these
    models greedy decoding reaches the boundary after 7 or 8 characters, and then (were it
    not to stop) would go on with other text."""
    model = generator_model(seed)
    out = hinted("greedy_at_zero", mlp_lm.generate, model, ITOS, 3, max_len=60, temperature=0)
    check.equal(out, oracle(greedy_by_rule, model, 3, 60), what="greedy text",
                hint=oracle(generation_mistake, out, model, 3, 60))


@pytest.mark.points(1)
@pytest.mark.parametrize("max_len", [1, 17])
def test_generation_stops_at_max_len(max_len):
    model = generator_model(53, boundary_bias=-30.0)  # the boundary is never the argmax
    out = hinted("greedy_at_zero", mlp_lm.generate, model, ITOS, 3, max_len=max_len, temperature=0)
    check.equal(out, oracle(greedy_by_rule, model, 3, max_len), what=f"greedy text with max_len={max_len}")


@pytest.mark.points(2)
def test_sampled_documents_end_at_the_boundary():
    """The boundary has probability ~0.2-0.5 at each step here: 20 sampled documents all end
    long before max_len=200 (the chance that one does not is below 1e-15)."""
    model = generator_model(54, boundary_bias=1.0)
    g = torch.Generator().manual_seed(54)
    texts = [mlp_lm.generate(model, ITOS, 3, 200, 1.0, g) for _ in range(20)]
    check.that(all(isinstance(t, str) and len(t) < 200 for t in texts),
               f"sampled documents should stop at the boundary; lengths {[len(t) for t in texts]}",
               hint="never_stops", about=texts[0])
    check.that(all("\n" not in t for t in texts), "the boundary '\\n' must not be part of the returned text",
               hint="returns_boundary", about=texts[0])
    check.that(all(set(t) <= set(ITOS[1:]) for t in texts), f"characters outside itos: {texts!r:.200}", about=texts[0])


def _first_characters(generate, model, n, temperature, seed):
    """Glue: n one-character documents from one generator; how often each id came first
    (an empty document, or "\\n", is the boundary)."""
    g = torch.Generator().manual_seed(seed)
    options = {} if temperature is None else {"temperature": temperature}
    counts = [0] * len(ITOS)
    for _ in range(n):
        text = unwrap(generate)(model, ITOS, 3, max_len=1, generator=g, **options)
        counts[ITOS.index(text[:1]) if text[:1] in ITOS else 0] += 1
    return counts


def chi_square_p_value(counts, probs):
    """P(X >= stat), X ~ chi^2 with (cells - 1) degrees of freedom."""
    counts, probs = torch.tensor(counts, dtype=torch.float64), probs.double()
    expected = counts.sum() * probs
    stat = ((counts - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((len(probs) - 1) / 2, dtype=torch.float64), stat / 2))


def first_step_probs(model, temperature, multiply=False):
    logits = model(torch.zeros(1, 3, dtype=torch.long))[0].double()
    return torch.softmax(logits * temperature if multiply else logits / temperature, dim=-1)


def sampling_p_value(counts, model, temperature):
    return chi_square_p_value(counts, first_step_probs(model, temperature))


def sampling_mistake(counts, model, temperature):
    """`temperature` when the draws fit softmax(logits * T) instead of softmax(logits / T)."""
    if temperature != 1.0 and chi_square_p_value(counts, first_step_probs(model, temperature, True)) > P_VALUE_FLOOR:
        return "temperature"
    return None


@pytest.mark.points(2)
@pytest.mark.parametrize("temperature", [None, 0.5, 2.0], ids=["default", "0.5", "2.0"])
def test_first_characters_follow_the_softmax(temperature):
    """2,000 first characters follow softmax(logits / T) of the all-boundary context
    (chi-square at p > 1e-6; seeded, so a result never changes). temperature None: not
    passed, so the default 1.0. The 8 probabilities here range from 0.015 to 0.38 (at least
    ~30 expected draws per character)."""
    model = generator_model(55, scale=0.5)
    T = 1.0 if temperature is None else temperature
    counts = in_one_crossing(mlp_lm, _first_characters, mlp_lm.generate, model, 2000, temperature, 55)
    p = oracle(sampling_p_value, counts, model, T)
    check.that(p > P_VALUE_FLOOR, f"2,000 first characters do not follow softmax(logits / {T}): chi-square p = {p:.2g}",
               hint=oracle(sampling_mistake, counts, model, T), about=counts)


@pytest.mark.points(1)
def test_generation_draws_from_the_generator():
    """Generators seeded alike give the same text; another seed other text (40 characters
    at temperature 1.5, boundary suppressed: equal by chance with negligible probability)."""
    model = generator_model(56, boundary_bias=-30.0)
    torch.manual_seed(0)  # the global generator, which a seeded call must not use
    first = mlp_lm.generate(model, ITOS, 3, 40, 1.5, torch.Generator().manual_seed(1))
    again = mlp_lm.generate(model, ITOS, 3, 40, 1.5, torch.Generator().manual_seed(1))
    other = mlp_lm.generate(model, ITOS, 3, 40, 1.5, torch.Generator().manual_seed(2))
    check.equal(again, first, what="text from a generator seeded like the first call's", hint="generator_ignored")
    check.that(other != first, "generators with different seeds gave the same 40 characters", hint="generator_ignored")


# --- train ------------------------------------------------------------------------------------


def adamw_trajectory(weights, X, Y, steps, batch_size, lr, seed, weight_decay=0.0):
    """[losses, final weights] of torch's AdamW on the test's forward, with the same batches."""
    params = {k: v.clone().requires_grad_() for k, v in weights.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        ix = torch.randint(0, len(X), (batch_size,), generator=g)
        loss = F.cross_entropy(mlp_logits(params, X[ix]), Y[ix])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return [torch.tensor(losses, dtype=torch.float64), {k: v.detach() for k, v in params.items()}]


def training_mistake(got, part, weights, X, Y, steps, batch_size, lr, seed):
    """`weight_decay` when your losses (part 0) or parameters (part 1) are what AdamW's default
    weight decay gives (only through oracle(...))."""
    decayed = adamw_trajectory(weights, X, Y, steps, batch_size, lr, seed, weight_decay=0.01)[part]
    if part == 0:
        close = torch.allclose(got, decayed, rtol=FLOAT32_REDUCTION.rtol, atol=FLOAT32_REDUCTION.atol)
        return "weight_decay" if close else None
    return mistake_shown({k: v for k, v in got.items() if k in decayed}, {"weight_decay": [decayed]})


def toy_pairs(V, block_size, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (n, block_size), generator=g), torch.randint(0, V, (n,), generator=g)


@pytest.mark.points(2)
def test_train_replays_adamw_on_the_same_batches():
    """6 steps of batch 8 at lr 0.1: your losses and parameters match torch's AdamW (no weight
    decay) on the test's forward with batches drawn as the docstring says."""
    V, block_size, n_embd, n_hidden = 7, 3, 4, 8
    weights = make_weights(V, block_size, n_embd, n_hidden, True, seed=60)
    X, Y = toy_pairs(V, block_size, 40, seed=60)
    model = loaded_model(V, block_size, n_embd, n_hidden, True, weights)
    expected = oracle(adamw_trajectory, weights, X, Y, 6, 8, 0.1, 61)
    losses = mlp_lm.train(model, X, Y, 6, batch_size=8, lr=0.1, generator=torch.Generator().manual_seed(61))
    check.that(isinstance(losses, list) and len(losses) == 6 and all(type(v) is float for v in losses),
               f"train returns a list of 6 Python floats, got {losses!r:.120}", about=losses)
    state = model.state_dict()
    got = torch.tensor(losses, dtype=torch.float64)
    check.close(got, expected[0], what="losses of the 6 steps", **FLOAT32_REDUCTION,
                hint=oracle(training_mistake, got, 0, weights, X, Y, 6, 8, 0.1, 61))
    hint = oracle(training_mistake, state, 1, weights, X, Y, 6, 8, 0.1, 61)
    for name in weights:
        check.close(state[name], expected[1][name], what=f"{name} after 6 steps", hint=hint, **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_train_defaults():
    """Not passed: batch_size 64 and lr 3e-3 (3 steps, replayed as above)."""
    V, block_size, n_embd, n_hidden = 6, 2, 3, 8
    weights = make_weights(V, block_size, n_embd, n_hidden, False, seed=62)
    X, Y = toy_pairs(V, block_size, 100, seed=62)
    model = loaded_model(V, block_size, n_embd, n_hidden, False, weights)
    expected = oracle(adamw_trajectory, weights, X, Y, 3, 64, 3e-3, 63)
    losses = mlp_lm.train(model, X, Y, 3, generator=torch.Generator().manual_seed(63))
    state = model.state_dict()
    check.close(torch.tensor(losses, dtype=torch.float64), expected[0], what="losses (batch_size 64 by default)",
                **FLOAT32_REDUCTION)
    for name in weights:
        check.close(state[name], expected[1][name], what=f"{name} after 3 steps (lr 3e-3 by default)",
                    **FLOAT32_REDUCTION)


@pytest.mark.points(1)
def test_train_draws_batches_from_the_generator():
    V, block_size, n_embd, n_hidden = 6, 2, 3, 8
    weights = make_weights(V, block_size, n_embd, n_hidden, False, seed=64)
    X, Y = toy_pairs(V, block_size, 200, seed=64)
    torch.manual_seed(0)  # the global generator, which a seeded call must not use
    runs = []
    for seed in (1, 1, 2):
        model = loaded_model(V, block_size, n_embd, n_hidden, False, weights)
        runs.append(mlp_lm.train(model, X, Y, 4, batch_size=4, lr=0.01, generator=torch.Generator().manual_seed(seed)))
    check.equal(runs[1], runs[0], what="losses with a generator seeded like the first run's", hint="generator_ignored")
    check.that(runs[2] != runs[0], "generators with different seeds drew the same batches", hint="generator_ignored")


# --- the language model on the corpus ---------------------------------------------------------


def validation_pairs(block_size):
    """The validation split's (X, Y), for the oracles (your code never sees them)."""
    train, val = corpus_split()
    return corpus_pairs(val, vocab_by_rule(train + val)[0], block_size)


def validation_loss(state, block_size, order="oldest first"):
    """Cross-entropy of the test's forward with your trained weights (only through oracle(...))."""
    X, Y = validation_pairs(block_size)
    with torch.no_grad():
        return F.cross_entropy(mlp_logits(dict(state), X, order), Y).item()


def corpus_bigram(X, Y, block_size, V, alpha=1.0):
    """The add-alpha bigram loss on the validation split (only through oracle(...))."""
    return bigram_by_counts(X, Y, *validation_pairs(block_size), V, alpha)


def bar_mistake(state, block_size, limit):
    """`embedding_order` when your weights pass the bar with the embeddings interleaved."""
    return "embedding_order" if validation_loss(state, block_size, "interleaved") <= limit else None


def initial_weights(V, block_size, n_embd, n_hidden, seed):
    """The test's initialisation (PyTorch's scale), so that training does not depend on yours."""
    return make_weights(V, block_size, n_embd, n_hidden, False, seed=seed)


@pytest.mark.points(3)
def test_model_beats_the_bigram_baseline():
    """Block 8, n_embd 10, n_hidden 200, 400 steps of batch 128 at lr 1e-2, from the test's
    initial weights: the validation loss (the test's forward on your trained weights) must be
    at most 0.40 x the add-one bigram loss on the same split (2.146).

    Measured with the reference (initial weights seeds 70-73, batches seeds 0-3): 0.643-0.685
    (0.30-0.32 x bigram), 1.1-1.8 s on the loaded 2-core machine; the bar leaves a 25% margin
    above the worst seed. The same run with block 3 reaches only 0.98-1.01 (0.46-0.47 x), and
    your weights evaluated with the embeddings interleaved (the embedding_order mistake)
    score 6.8-7.3."""
    train, val = corpus_split()
    stoi, itos = vocab_by_rule(train + val)
    X, Y = corpus_pairs(train, stoi, 8)
    V = len(itos)
    model = loaded_model(V, 8, 10, 200, False, initial_weights(V, 8, 10, 200, seed=70))
    mlp_lm.train(model, X, Y, 400, batch_size=128, lr=1e-2, generator=torch.Generator().manual_seed(0))
    state = model.state_dict()
    loss = oracle(validation_loss, state, 8)
    bigram = oracle(corpus_bigram, X, Y, 8, V)
    check.that(loss <= 0.40 * bigram, f"validation loss {loss:.3f} should be at most 0.40 x the bigram loss "
               f"{bigram:.3f} = {0.40 * bigram:.3f}", hint=oracle(bar_mistake, state, 8, 0.40 * bigram))
