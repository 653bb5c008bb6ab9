"""Week 2 — a character-level MLP language model (Bengio et al., 2003).

Before attention, Bengio, Ducharme, Vincent and Jauvin (2003) predicted the next token from a
fixed window of the previous `block_size` tokens: look each one up in a learned embedding
table, concatenate the vectors, and feed them through one tanh hidden layer to a softmax over
the vocabulary. The same model, on characters, is a few dozen lines of PyTorch, and it beats
a bigram count table by a wide margin. You will write:

1. `build_vocab` and `build_dataset`: characters to ids, and documents to (context, next
   character) training pairs, with a boundary character that starts and ends every document;
2. `MLPLanguageModel`: the paper's network (its "direct connections" optional);
3. `bigram_nll`: the baseline the MLP must beat, a smoothed table of counts;
4. `train`: mini-batch AdamW on the cross-entropy;
5. `generate`: sample a document, one character at a time;
6. `nearest_neighbours`: which characters the embedding puts close together.

The boundary: id 0 is the character "\\n", which never occurs inside a document. A context
starts as `block_size` boundaries (nothing seen yet) and a document ends by predicting the
boundary, so one model learns how documents start, continue and stop.

Data in the tests: the documents of `fixtures/corpus/corpus.txt` (split at `<|endoftext|>`)
that are ASCII with no "\\n" or "\\t": 900 short templated stories, 47 distinct characters.

Mistakes the tests are built to catch:
- the context not reset between documents (the next story seeing the end of the last one);
- no boundary target at a document's end (the model never learns to stop);
- targets off by one (the character to predict already in its own context);
- embeddings concatenated in another order than oldest position first;
- a bigram table not smoothed (infinite loss on an unseen pair) or normalised on the wrong
  axis, or keyed on the oldest context id instead of the last;
- generation that returns the boundary, or never stops at it;
- nearest neighbours that include the query, or rank by Euclidean distance.

Run time: `pytest katas/week2/test_mlp_lm.py` takes about 4 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BOUNDARY = "\n"


def build_vocab(docs: list[str]) -> tuple[dict[str, int], list[str]]:
    """The character vocabulary of `docs`: (stoi, itos).

    itos[0] is the boundary "\\n"; then every distinct character of the documents, sorted
    (Python's string order, i.e. by code point). stoi is the inverse: stoi[itos[i]] == i.

        build_vocab(["hello", "ab"]) -> ({"\\n": 0, "a": 1, "b": 2, "e": 3, "h": 4, "l": 5, "o": 6},
                                          ["\\n", "a", "b", "e", "h", "l", "o"])

    Raises ValueError if a document contains "\\n": it would be indistinguishable from the
    boundary. Returns a plain dict and a plain list.
    """
    raise NotImplementedError


def build_dataset(docs: list[str], stoi: dict[str, int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) pair of the documents: X int64 [N, block_size], Y int64 [N].

    Per document, the context starts as `block_size` zeros (boundaries). For each character
    of `doc + "\\n"` in turn: emit the pair (context, id of the character), THEN shift the
    character into the context (drop its oldest id, append the new one). So the last pair of
    a document predicts the boundary, and N = sum(len(doc) + 1). Contexts are listed oldest
    id first. Every document starts from a fresh context: the first pairs of a story never
    see the previous story.

    Worked example, docs ["ab"], stoi {"\\n": 0, "a": 1, "b": 2}, block_size 3:

        X = [[0, 0, 0],      Y = [1,     "a" follows nothing
             [0, 0, 1],           2,     "b" follows "a"
             [0, 1, 2]]           0]     the boundary follows "ab"

    A context never contains its own target (that would make the task "copy the last id").
    """
    raise NotImplementedError


class MLPLanguageModel(nn.Module):
    """Bengio et al.'s MLP language model over contexts of `block_size` ids.

    Layout (the tests load weights into it by these names, so it must be exactly this):
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(block_size * n_embd, n_hidden)
        self.output = nn.Linear(n_hidden, vocab_size)
        self.direct = nn.Linear(block_size * n_embd, vocab_size, bias=False) if direct else None

    forward(X: int64 [B, block_size]) -> logits float [B, vocab_size]:
        x = embedding(X) viewed as [B, block_size * n_embd]
        logits = output(tanh(hidden(x)))         (+ direct(x) when direct connections are on)

    `x` concatenates the context's embeddings in context order: features
    [i * n_embd, (i + 1) * n_embd) are the embedding of X[:, i], the oldest id first. That is
    what `embedding(X).view(B, -1)` gives. `embedding(X).transpose(1, 2).reshape(B, -1)` has
    the same shape but interleaves the positions feature by feature: for block 2, n_embd 2,
    embeddings [a0, a1] then [b0, b1] must give [a0, a1, b0, b1], not [a0, b0, a1, b1].

    The direct connections (the paper's W x term) let the output read the embeddings
    linearly, besides through the hidden layer. With direct=False `self.direct` is None and
    the state dict has no "direct.*" entry; the direct layer has no bias (the output layer's
    bias already plays that role). Logits come out in the parameters' dtype.
    """

    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, direct: bool = False):
        super().__init__()
        raise NotImplementedError

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def bigram_nll(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               vocab_size: int, alpha: float = 1.0) -> float:
    """Mean validation negative log-likelihood (nats) of an add-alpha smoothed bigram model.

    The bigram model predicts the next id from the LAST id of the context alone (x[:, -1], the
    previous character). Count c[i, j] = how often id j follows id i in the training pairs
    (x_train[:, -1], y_train); then each ROW is a distribution over the next id:

        P(j | i) = (c[i, j] + alpha) / (sum_j' c[i, j'] + alpha * vocab_size)

    and the result is -mean(log P(y_val[n] | x_val[n, -1])) as a Python float.

    Why smoothing: without it (alpha = 0) a pair the training set never showed has P = 0 and
    the validation loss is infinite. Normalise over the next id (each row sums to 1), not over
    the previous one. Counting in a Python loop over 250k pairs is slow: count with tensor ops
    (`index_put_(..., accumulate=True)`, `bincount` of i * V + j).
    """
    raise NotImplementedError


def train(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, batch_size: int = 64,
          lr: float = 3e-3, generator: torch.Generator | None = None) -> list[float]:
    """Train `model` in place for `steps` mini-batch steps; return each step's loss.

    Make ONE `torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)` (no weight decay:
    AdamW's default is 0.01). Then per step, in this order:

        ix = torch.randint(0, N, (batch_size,), generator=generator)   # N = len(X)
        loss = F.cross_entropy(model(X[ix]), Y[ix])
        zero the gradients, loss.backward(), optimizer.step()

    and append `loss.item()` (the batch's loss BEFORE the step) to the returned list of
    `steps` Python floats. Draw the batches exactly so, from `generator` (the global RNG when
    it is None): the tests replay your training with the same draws and compare parameters.
    Do not change X or Y.
    """
    raise NotImplementedError


def generate(model: nn.Module, itos: list[str], block_size: int, max_len: int = 200, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> str:
    """Sample one document from `model`, character by character.

    `model(X)` maps int64 contexts [B, block_size] to logits [B, V] (any such module, not only
    yours). Start from the all-boundary context [[0] * block_size]; at each step compute the
    logits of the current context (no gradients needed), pick the next id, and:
    - if it is the boundary (id 0), stop: the boundary ends the document and is NOT part of
      the returned string;
    - else append `itos[id]` and shift the id into the context.
    Stop also once the string has `max_len` characters (no boundary then).

    Picking the next id: temperature 0 is greedy (`argmax` of the logits); otherwise
    `torch.multinomial(softmax(logits / temperature), 1, generator=generator)`. Temperature
    divides the logits: below 1 sharpens the distribution, above 1 flattens it. Draw only
    from `generator` (the global RNG when it is None): the same seed must give the same text.
    """
    raise NotImplementedError


def nearest_neighbours(embedding: torch.Tensor, index: int, k: int) -> list[int]:
    """The `k` rows of `embedding` [V, d] most similar to row `index`, by cosine similarity.

    cos(u, v) = u . v / (|u| |v|): it compares directions, not lengths. Euclidean distance
    ranks differently whenever rows have different norms (a short vector pointing the same
    way is far in distance, identical in angle). Return a list of k Python ints, the most
    similar first, never `index` itself (every row is most similar to itself). Tests use
    embeddings without ties.
    """
    raise NotImplementedError
