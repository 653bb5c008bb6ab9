"""Public tests for week7/sft.

Oracles: the documented rule for `build_example` (checked as properties), a hand-shifted
`F.cross_entropy(ignore_index=-100)` for `sft_loss`, golden packed rows made by the
reference, and -- for leakage -- a toy attention LM run on each example alone versus on
the packed row with your `position_ids` and `attention_mask`.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student
from graders.testing import hinted, randn

sft = student("week7.sft")

token_lists = st.lists(st.integers(3, 99), max_size=8)


def shifted_cross_entropy(logits, labels, reduction="mean"):
    """The oracle: logits at t score the label at t + 1; -100 is ignored."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[..., :-1, :].reshape(-1, V), labels[..., 1:].reshape(-1),
                           ignore_index=-100, reduction=reduction)


# --- build_example -------------------------------------------------------------------------


@pytest.mark.points(2)
@given(prompt=token_lists, response=token_lists, eos=st.integers(0, 2))
def test_prompt_positions_are_masked(prompt, response, eos):
    ids, labels = sft.build_example(prompt, response, 64, eos)
    check.equal(list(labels[:len(prompt)]), [-100] * len(prompt), hint="prompt_not_masked",
                what="labels of the prompt positions")


@pytest.mark.points(2)
@given(prompt=token_lists, response=token_lists, max_len=st.integers(1, 20))
def test_labels_are_aligned_with_input_ids(prompt, response, max_len):
    ids, labels = sft.build_example(prompt, response, max_len, 0)
    check.equal(len(labels), len(ids), hint="labels_shifted_twice", what="len(labels)")
    check.equal([lab for t, lab in enumerate(labels) if t >= len(prompt)],
                [tok for t, tok in enumerate(ids) if t >= len(prompt)], hint="labels_shifted_twice",
                what="labels after the prompt (they equal input_ids there: the loss shifts, not the data)")


@pytest.mark.points(2)
@given(prompt=token_lists, response=token_lists, eos=st.integers(0, 2))
def test_response_ends_with_eos_when_it_fits(prompt, response, eos):
    max_len = len(prompt) + len(response) + 1
    ids, labels = sft.build_example(prompt, response, max_len, eos)
    check.equal(list(ids), prompt + response + [eos], hint="eos_missing", what="input_ids")
    check.equal(list(labels), [-100] * len(prompt) + response + [eos], hint="eos_missing", what="labels")


@pytest.mark.points(2)
@given(prompt=token_lists, response=token_lists, max_len=st.integers(1, 12))
def test_truncation_keeps_the_start(prompt, response, max_len):
    ids, labels = sft.build_example(prompt, response, max_len, 1)
    check.equal(list(ids), (prompt + response + [1])[:max_len], what="truncated input_ids",
                hint=oracle(truncation_mistake, ids, prompt, response, max_len, 1))
    check.equal(list(labels), ([-100] * len(prompt) + response + [1])[:max_len], hint="prompt_not_masked",
                what="truncated labels")


def truncation_mistake(ids, prompt, response, max_len, eos):
    """Which truncation gives `ids` (called only through oracle(...)): EOS kept at the end of a cut
    example, the end kept instead of the start, or else EOS missing."""
    ids, full = list(ids), prompt + response + [eos]
    if len(full) > max_len and ids == (prompt + response)[:max_len - 1] + [eos]:
        return "eos_after_cut"
    if len(full) > max_len and ids == full[-max_len:]:
        return "truncation_side"
    return "eos_missing"


@pytest.mark.points(1)
@pytest.mark.parametrize("max_len", [4, 6, 8])
def test_a_cut_example_has_no_eos(max_len):
    # worked example of the docstring: prompt [5, 6, 7], response [8, 9], eos 2; max_len 6 keeps all of it
    ids, labels = sft.build_example([5, 6, 7], [8, 9], max_len, 2)
    check.equal(list(ids), [5, 6, 7, 8, 9, 2][:max_len], what=f"input_ids (max_len={max_len})",
                hint=oracle(truncation_mistake, ids, [5, 6, 7], [8, 9], max_len, 2))
    check.equal(list(labels), [-100, -100, -100, 8, 9, 2][:max_len], what=f"labels (max_len={max_len})",
                hint="eos_after_cut")


@pytest.mark.points(1)
def test_build_example_returns_plain_lists_of_ints():
    ids, labels = sft.build_example([5, 6, 7], [8, 9], 10, 2)
    for name, value in (("input_ids", ids), ("labels", labels)):
        check.that(type(value) is list and all(type(t) is int for t in value),
                   f"{name} should be a plain list of Python ints, got {type(value).__name__} of "
                   f"{sorted({type(t).__name__ for t in value})}", about=value, hint="not_lists")


@pytest.mark.points(1)
def test_build_example_golden():
    data = fixtures.load("week7/sft")
    for (prompt, response, max_len, eos), expected in zip(data["build_cases"], data["build_expected"]):
        ids, labels = sft.build_example(prompt, response, max_len, eos)
        check.equal([list(ids), list(labels)], expected,
                    what=f"build_example({prompt}, {response}, max_len={max_len}, eos_id={eos})")


# --- sft_loss ------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("shape", [(1, 6), (3, 9), (2, 2, 5)])
def test_sft_loss_is_shifted_cross_entropy(shape):
    V = 13
    g = torch.Generator().manual_seed(sum(shape))
    logits = randn(*shape, V, seed=len(shape), scale=2.0)
    labels = torch.randint(0, V, shape, generator=g)
    labels[torch.rand(shape, generator=g) < 0.4] = -100
    labels[..., -1] = 5  # at least one counted target in every row
    check.close(sft.sft_loss(logits, labels), shifted_cross_entropy(logits, labels), hint="no_shift")


@pytest.mark.points(1)
def test_sft_loss_ignores_prompt_and_keeps_dtype():
    labels = [-100, -100, -100, 6, 7, 2]  # token ids [3, 4, 5, 6, 7, 2]; the prompt 3, 4, 5 is masked out
    logits = randn(1, 6, 11, seed=3, dtype=torch.float64)
    loss = sft.sft_loss(logits, torch.tensor([labels]))
    # the targets labels[3:] are predicted from positions 2, 3, 4
    check.close(loss, F.cross_entropy(logits[0, 2:5], torch.tensor(labels[3:])), hint="no_shift")


@pytest.mark.points(2)
def test_loss_of_a_built_example_trains_exactly_the_response():
    """build_example + sft_loss together: only response tokens and EOS, each predicted once."""
    prompt, response, eos = [10, 11, 12], [20, 21, 22, 23], 2
    ids, labels = sft.build_example(prompt, response, 32, eos)
    logits = randn(1, len(ids), 30, seed=4)
    loss = sft.sft_loss(logits, torch.tensor([labels]))
    # target j of the response (and EOS) is predicted by the logits at the position just before it
    check.close(loss, oracle(response_loss, logits, len(prompt), response + [eos]), hint="labels_shifted_twice")


def response_loss(logits, n_prompt, targets):
    """Cross-entropy of the targets, each from the logits just before it (only through oracle(...))."""
    targets = torch.tensor(targets)
    return F.cross_entropy(logits[0, n_prompt - 1:n_prompt - 1 + len(targets)], targets)


def random_labels(shape, V, seed, p_ignore=0.4):
    """Labels in [0, V) with about p_ignore of them -100, and the last of every row counted."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, shape, generator=g)
    labels[torch.rand(shape, generator=g) < p_ignore] = -100
    labels[..., -1] = int(torch.randint(0, V, (), generator=g))
    return labels


def float64_loss(logits, labels):
    """The oracle in float64, cast back to the logits' dtype (only through oracle(...))."""
    return shifted_cross_entropy(logits.double(), labels).to(logits.dtype)


def dtype_or(out, dtype, hint):
    """`dtype_changed` when the student's loss is not in `dtype`, else `hint` (only through oracle(...))."""
    return "dtype_changed" if getattr(out, "dtype", dtype) != dtype else hint


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_sft_loss_keeps_the_logits_dtype(dtype):
    labels = random_labels((2, 7), 11, seed=40)
    logits = randn(2, 7, 11, seed=41, dtype=dtype, scale=2.0)
    loss = sft.sft_loss(logits, labels)
    check.close(loss, oracle(float64_loss, logits, labels), what=f"sft_loss of {dtype} logits (a 0-dim tensor)",
                hint=oracle(dtype_or, loss, dtype, "no_shift"))


# Per dtype, the spread of the logits of a row: wide enough that most probabilities underflow to 0
# (so log(softmax) gives -inf), kept to hundreds in half precision so that the loss stays in range.
SPREAD = {torch.float16: 100.0, torch.bfloat16: 100.0, torch.float32: 3e3, torch.float64: 3e3}


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_sft_loss_of_extreme_logits(dtype):
    # rows: a wide spread around 0, the same around +1e4, and around -1e4 (every logit very negative)
    labels = random_labels((3, 8), 10, seed=42)
    logits = (randn(3, 8, 10, seed=43, dtype=torch.float64, scale=SPREAD[dtype])
              + torch.tensor([0.0, 1e4, -1e4], dtype=torch.float64)[:, None, None]).to(dtype)
    loss = sft.sft_loss(logits, labels)
    check.close(loss, oracle(float64_loss, logits, labels), what=f"sft_loss of {dtype} logits near +-1e4",
                hint=oracle(dtype_or, loss, dtype, "log_of_softmax"))


@pytest.mark.points(1)
def test_sft_loss_divides_by_the_counted_tokens():
    labels = torch.tensor([[-100, -100, -100, -100, 4, -100, 7, 2]])  # 2 of 7 shifted targets count
    logits = randn(1, 8, 9, seed=44, scale=2.0)
    check.close(sft.sft_loss(logits, labels), shifted_cross_entropy(logits, labels), hint="mean_over_ignored",
                what="loss of a row with 5 ignored targets (the mean is over the 2 counted ones)")


@pytest.mark.points(1)
def test_sft_loss_is_one_token_mean_over_the_batch():
    # rows with 6, 1 and 0 counted targets: a mean of per-row means differs (and is nan for the last row)
    labels = torch.tensor([[3, 1, 4, 1, 5, 9, 2],
                           [-100, -100, -100, -100, -100, -100, 6],
                           [-100, -100, -100, -100, -100, -100, -100]])
    logits = randn(3, 7, 10, seed=45, scale=2.0)
    check.close(sft.sft_loss(logits, labels), shifted_cross_entropy(logits, labels), hint="mean_per_row",
                what="loss of rows with 6, 1 and 0 counted targets (one mean over the 7 tokens)")


@pytest.mark.points(1)
@pytest.mark.parametrize("T,V", [(9, 8), (9, 5), (4, 3)], ids=["square", "rectangular", "small-square"])
def test_sft_loss_reads_the_vocabulary_from_the_last_axis(T, V):
    # square: after the shift logits are [2, T - 1, V] with T - 1 == V, where reading classes from
    # dim 1 (F.cross_entropy's layout for 3-D input) gives a wrong number instead of an error
    labels = random_labels((2, T), V, seed=46 + T + V)
    logits = randn(2, T, V, seed=47 + T + V, scale=2.0)
    loss = hinted("class_axis", sft.sft_loss, logits, labels)
    check.close(loss, shifted_cross_entropy(logits, labels), hint="class_axis",
                what=f"sft_loss of logits [2, {T}, {V}]")


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", [(7,), (2, 3, 6)], ids=["no-batch", "two-batch-dims"])
def test_sft_loss_takes_any_leading_dims(shape):
    labels = random_labels(shape, 12, seed=48 + len(shape))
    logits = randn(*shape, 12, seed=49 + len(shape), scale=2.0)
    loss = hinted("leading_dims", sft.sft_loss, logits, labels)
    check.close(loss, shifted_cross_entropy(logits, labels), hint="leading_dims", what=f"sft_loss of logits {[*shape, 12]}")


def loss_gradient(logits, labels):
    """d(weight * loss) / d logits, with with_grad's fixed weight (only through oracle(...))."""
    x = logits.detach().clone().requires_grad_(True)
    loss = shifted_cross_entropy(x, labels)
    weight = torch.randn(loss.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.autograd.grad((loss * weight.to(loss.dtype)).sum(), x)[0]


@pytest.mark.points(1)
def test_sft_loss_gradient_reaches_the_logits():
    labels = random_labels((2, 6), 7, seed=50)
    logits = randn(2, 6, 7, seed=51).requires_grad_()
    got = hinted("no_gradient", sft.sft_loss.with_grad, logits, labels)
    grad = got.inputs.get("logits")
    check.that(grad is not None, "sft_loss's result should depend differentiably on the logits (no .detach(), "
               ".item() or torch.tensor(...) of a number)", hint="no_gradient")
    check.close(grad, oracle(loss_gradient, logits, labels), hint="no_gradient", what="d loss / d logits")


# --- pack ----------------------------------------------------------------------------------


@pytest.mark.points(3)
def test_pack_golden():
    data = fixtures.load("week7/sft")
    examples = [tuple(e) for e in data["pack_examples"]]
    rows = sft.pack(examples, data["pack_max_len"])
    check.equal(len(rows), data["pack_n_rows"], hint="packing_rule", what="number of packed rows")
    for i, row in enumerate(rows):
        check.equal(row["input_ids"], data[f"pack_{i}_input_ids"], hint="packing_rule", what=f"rows[{i}]['input_ids']")
        check.equal(row["position_ids"], data[f"pack_{i}_position_ids"], hint="positions_not_reset",
                    what=f"rows[{i}]['position_ids']")
        check.equal(row["labels"], data[f"pack_{i}_labels"], hint="packing_leaks_loss", what=f"rows[{i}]['labels']")
        check.equal(row["attention_mask"], data[f"pack_{i}_attention_mask"], hint="packing_leaks_attention",
                    what=f"rows[{i}]['attention_mask']")


example_lists = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=8)


def make_examples(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n_prompt, n_response in lengths:
        ids = torch.randint(3, 60, (n_prompt + n_response + 1,), generator=g).tolist()
        out.append((ids, [-100] * n_prompt + ids[n_prompt:]))
    return out


@pytest.mark.points(2)
@given(lengths=example_lists, max_len=st.integers(9, 16), seed=st.integers(0, 1000))
def test_pack_keeps_order_and_is_greedy(lengths, max_len, seed):
    examples = make_examples(lengths, seed)
    rows = sft.pack(examples, max_len)
    check.equal(torch.cat([r["input_ids"] for r in rows]).tolist(), [t for ids, _ in examples for t in ids],
                hint="packing_rule", what="all rows' input_ids, concatenated")
    sizes = [len(r["input_ids"]) for r in rows]
    check.that(all(0 < n <= max_len for n in sizes), f"row lengths {sizes} should be in 1..{max_len}",
               hint="packing_rule")
    problem = oracle(greedy_packing_problem, sizes, examples, max_len)
    check.that(problem is None, problem, hint="packing_rule")


def greedy_packing_problem(sizes, examples, max_len):
    """None when rows of these lengths hold whole examples, in order, each closed only because the
    next example did not fit in it; else what is wrong (called only through oracle(...))."""
    starts, k = [], 0
    for n in sizes:
        starts.append(k)
        total = 0
        while total < n and k < len(examples):
            total += len(examples[k][0])
            k += 1
        if total != n:
            return f"rows must hold whole examples; row lengths {sizes}"
    for row, nxt in zip(sizes, starts[1:]):
        if row + len(examples[nxt][0]) <= max_len:
            return (f"row of length {row} was closed although the next example (length "
                    f"{len(examples[nxt][0])}) fits in max_len={max_len}")
    return None


@pytest.mark.points(1)
def test_pack_rejects_an_example_longer_than_max_len():
    with check.raises(ValueError, hint="pack_validation"):
        sft.pack([([1, 2, 3], [1, 2, 3]), ([4] * 9, [4] * 9)], 8)


@pytest.mark.points(1)
@pytest.mark.parametrize("examples", [
    [([1, 2, 3], [1, 2, 3]), ([], [])],
    [([1, 2, 3], [1, 2, 3]), ([4, 5, 6], [-100, 5])],
    [([1, 2], [-100, 2, 3])],
], ids=["empty", "labels-shorter", "labels-longer"])
def test_pack_rejects_empty_and_mismatched_examples(examples):
    with check.raises(ValueError, hint="pack_validation"):
        sft.pack(examples, 8)


@pytest.mark.points(1)
def test_pack_an_example_of_exactly_max_len_fits():
    # the bound is inclusive: [4] * 8 fits max_len = 8, alone in its row
    examples = [([1, 2, 3], [-100, 2, 3]), ([4] * 8, [-100] * 4 + [4] * 4), ([5, 6], [5, 6])]
    rows = hinted("packing_rule", sft.pack, examples, 8)
    check.equal([r["input_ids"].tolist() for r in rows], [[1, 2, 3], [4] * 8, [5, 6]], what="rows' input_ids",
                hint="packing_rule")


@pytest.mark.points(1)
def test_pack_row_dtypes_and_shapes():
    examples = make_examples([(1, 2), (0, 3), (2, 1)], seed=3)
    rows = sft.pack(examples, 16)
    for i, row in enumerate(rows):
        L = len(row["input_ids"])
        for key in ("input_ids", "labels", "position_ids"):
            value = row[key]
            check.that(isinstance(value, torch.Tensor) and value.dtype == torch.int64 and tuple(value.shape) == (L,),
                       f"rows[{i}][{key!r}] should be an int64 tensor of shape [{L}], got "
                       f"{type(value).__name__} {getattr(value, 'dtype', '')} {list(getattr(value, 'shape', []))}",
                       hint="row_dtypes")
        mask = row["attention_mask"]
        check.that(isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and tuple(mask.shape) == (L, L),
                   f"rows[{i}]['attention_mask'] should be a bool tensor of shape [{L}, {L}], got "
                   f"{type(mask).__name__} {getattr(mask, 'dtype', '')} {list(getattr(mask, 'shape', []))}",
                   hint="row_dtypes")


class ToyLM:
    """One causal attention layer with learned positions: logits [L, V] for one sequence.

    Its output at a position depends on every visible token and on the position ids, so a
    packed row gives each example's own logits only if nothing leaks across examples.
    """

    def __init__(self, vocab=64, d=16, max_pos=32, seed=0):
        self.tok, self.pos = randn(vocab, d, seed=seed), randn(max_pos, d, seed=seed + 1)
        self.wq, self.wk, self.wv, self.wo = (randn(d, d, seed=seed + 2 + i, scale=d ** -0.5) for i in range(4))
        self.head = randn(d, vocab, seed=seed + 6)

    def __call__(self, ids, position_ids, mask):
        h = self.tok[ids] + self.pos[position_ids]
        q, k, v = (h @ w for w in (self.wq, self.wk, self.wv))
        a = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask[None])[0]
        return (h + a @ self.wo) @ self.head

    def alone(self, ids):
        L = len(ids)
        return self(torch.tensor(ids), torch.arange(L), torch.ones(L, L, dtype=torch.bool).tril())


@pytest.mark.points(4)
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_rows_compute_what_each_example_computes_alone(seed):
    lengths = [(2, 3), (0, 2), (3, 1), (1, 4), (2, 0), (0, 5), (4, 2)]
    examples = make_examples(lengths, seed)
    model = ToyLM(seed=seed)
    rows = sft.pack(examples, 14)
    k = 0
    for row in rows:
        parts, n = [], 0
        while n < len(row["input_ids"]):
            parts.append(examples[k])
            n += len(examples[k][0])
            k += 1
        check.equal(row["position_ids"], torch.cat([torch.arange(len(ids)) for ids, _ in parts]),
                    hint="positions_not_reset", what="position_ids")
        mask, size = row["attention_mask"], len(row["input_ids"])
        check.that(mask.dtype == torch.bool and tuple(mask.shape) == (size, size),
                   f"attention_mask should be bool [{size}, {size}], got {mask.dtype} {list(mask.shape)}")
        packed = model(row["input_ids"], row["position_ids"], mask)
        check.close(packed, oracle(lambda: torch.cat([model.alone(ids) for ids, _ in parts])),
                    hint="packing_leaks_attention", what="toy-LM logits of the packed row vs each example alone")
        # (the toy LM's logits of the row equal each example's alone, checked just above)
        packed_loss = shifted_cross_entropy(packed, row["labels"], reduction="sum")
        alone_loss = oracle(lambda: sum(shifted_cross_entropy(model.alone(ids), torch.tensor(labels), reduction="sum")
                                        for ids, labels in parts))
        check.close(packed_loss, alone_loss, hint="packing_leaks_loss",
                    what="summed token loss of the packed row vs the examples' own losses")
