"""Expected values that exist only in the trusted process: `oracle(fn, *args, **kwargs)`.

When grading, every kata test runs twice: in a sandbox, beside the student's code, where
student calls are recorded and checks do nothing; then in the trusted grader, where the
recording answers the student calls and the checks judge (see `graders.recording`). An
expected value computed in the sandbox would sit in the student's own process: on the heap
(`gc.get_objects()`), in the calling frames (`sys._getframe(1).f_locals`), ready to be
found and returned. A library oracle (`torch.softmax`, SDPA, `nn.MultiheadAttention`, a
Hugging Face model) is exactly such a computation, so a test never runs one directly:

    from graders import check, oracle, student

    attention = student("week2.attention")

    def torch_sdpa(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def test_sdpa_with_mask():
        q, k, v, mask = ...                                # inputs: the student sees them anyway
        expected = oracle(torch_sdpa, q, k, v, mask)       # computed only where it is judged
        out = attention.scaled_dot_product_attention(q, k, v, mask=mask)
        check.close(out, expected, hint="mask_polarity")

`oracle(fn, ...)` is `fn(...)` everywhere except in the grading sandbox (record mode),
where `fn` is never called and a `Withheld` placeholder comes back instead, like the
reference's (`graders.reference`), whose calls are withheld there too. The placeholder
absorbs what a test does to an expected value on its way to a check — indexing,
attributes, `.float()`, `.to(...)`, arithmetic, comparisons — and the checks ignore it in
the sandbox. The trusted replay computes the oracle from the test's own pristine inputs.

The sandbox goes one step further and does not even hold the source of expected values:
`graders.withhold.strip_expected` rewrites each test file copied there, replacing every
`oracle(...)` call, the bodies of the functions handed to it, and the expected arguments
of check calls with `WITHHELD`. `tests/test_withhold.py` holds every kata test to the rules
that make this safe (see `graders.withhold`):

- the expected value is an argument of `oracle(...)`, a reference call, or written inline
  in the check call;
- an expected value is only indexed, read or passed on to a check, never handed to a
  library function, branched on, unpacked (`a, b = oracle(...)`: index instead) or given
  to student code;
- no student call happens inside `oracle(...)` or inside a check's expected arguments.
"""

from __future__ import annotations

from typing import Any, Callable

from . import recording


class Withheld:
    """What an oracle (or the reference) gives inside the grading sandbox: nothing at all.

    Every operation a test may apply to an expected value on its way to a check returns the
    placeholder again (calls, attributes, items, arithmetic, comparisons, `.float()`,
    `.to(...)`, torch functions and tensor operators given it); it iterates as empty, has length 0, is falsy and converts to 0. Dunder
    attributes are not absorbed, so that copy, pickle and pytest's probes see a plain object.
    """

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> "Withheld":
        return self

    def __getattr__(self, attr: str) -> "Withheld":
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self

    def __setattr__(self, attr: str, value: Any) -> None:
        pass

    def __delattr__(self, attr: str) -> None:
        pass

    def __getitem__(self, key: Any) -> "Withheld":
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __delitem__(self, key: Any) -> None:
        pass

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, item: Any) -> bool:
        return False

    def __bool__(self) -> bool:
        return False

    def __int__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    def __float__(self) -> float:
        return 0.0

    def __complex__(self) -> complex:
        return 0j

    def __hash__(self) -> int:
        return 0

    def __enter__(self) -> "Withheld":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def __repr__(self) -> str:
        return "<withheld in the sandbox>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    # numpy defers its operators to ours (instead of reading the placeholder as an empty
    # sequence), and torch functions handed a placeholder give the placeholder back.
    __array_ufunc__ = None

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> "Withheld":
        return WITHHELD

    def __reduce__(self):
        return (_withheld, ())

    def __copy__(self) -> "Withheld":
        return self

    def __deepcopy__(self, memo: Any) -> "Withheld":
        return self


def _absorb(self: Withheld, *args: Any) -> Withheld:
    return self


for _name in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "divmod", "pow", "lshift",
              "rshift", "and", "xor", "or"):
    for _prefix in ("", "r", "i"):
        setattr(Withheld, f"__{_prefix}{_name}__", _absorb)
for _name in ("neg", "pos", "abs", "invert", "round", "trunc", "floor", "ceil",
              "lt", "le", "eq", "ne", "gt", "ge"):
    setattr(Withheld, f"__{_name}__", _absorb)
del _name, _prefix


WITHHELD = Withheld()


def _withheld() -> Withheld:
    return WITHHELD


def withheld() -> bool:
    """True where expected values must not exist: the grading sandbox (record mode)."""
    return recording.current_mode() == "record"


def oracle(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, the expected value; in the grading sandbox, `WITHHELD`.

    `fn` is never called in the sandbox, so nothing it would compute (and nothing it
    holds, once `graders.withhold` has replaced its body there) reaches the process that
    runs student code. Pass the computation and its inputs, not its result:
    `oracle(torch.softmax, x, dim=-1)`, or a small helper (`oracle(torch_mha, weights, x)`)
    for a computation of several lines. The arguments must be the test's own inputs,
    never values from student code whose crossing the replay needs (they are not
    evaluated in the sandbox).
    """
    if withheld():
        return WITHHELD
    return fn(*args, **kwargs)
