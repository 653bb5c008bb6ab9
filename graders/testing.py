"""What kata tests share besides the harness: seeded inputs, hinted crashes, named tolerances.

    from graders import check, oracle, student
    from graders.testing import FLOAT32_REDUCTION, hinted, randn

    attention = student("week2.attention")

    def test_rows_sum_to_one():
        x = randn(4, 7, seed=3)                                  # float32, from its own generator
        check.close(attention.softmax(x, dim=-1), torch.softmax(x, dim=-1), hint="wrong_axis")

- `randn(*shape, seed=...)`: the inputs every test builds, seeded explicitly, never from the
  global RNG (a test's numbers must not depend on which tests ran before it).
- `hinted(hint, fn, *args)`: run code that calls the student's, naming the mistake when it
  crashes rather than returning a wrong value (RecursionError on a deep graph, say).
- Tolerances: `check.close` takes its tolerance from the dtype table in `graders.check`
  (float32 1e-5, float64 1e-7 relative, ...), which fits elementwise results and short
  reductions. A check that needs more passes `rtol`, `atol` and a `reason`; the ones
  several tests share are named here (`check.close(out, want, **FLOAT32_REDUCTION)`).
- `reference("weekN.kata")`: the model solution, for hidden tests (the very function
  `graders.reference` is; either import works). Bind it once at module level
  (`model = reference("week3.llama")`): the sandbox's rules (`graders.withhold`) know a
  name bound that way as the reference, whose results are expected values.

Import the names themselves (`from graders.testing import randn`), not the module: the
lint that keeps expected values out of the grading sandbox (`graders.withhold`) reads
`randn(...)` and `hinted(...)` imported from here exactly as it reads them defined in the
test file, and it does not follow `testing.randn`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Callable

import pytest
import torch

from . import check
from .boundary import reference

__all__ = ["FLOAT32_REDUCTION", "Tolerance", "hinted", "randn", "reference"]


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0, shift: float = 0.0,
          draw_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal samples of `shape`, times `scale`, plus `shift`, as `dtype`.

    `seed` is required and keyword-only: each input of a test names its own seed
    (`q, k = randn(2, 5, 8, seed=1), randn(2, 7, 8, seed=2)`), so two inputs never share
    numbers by accident and a test draws the same numbers whatever ran before it (the
    samples come from a fresh `torch.Generator`, never from the global RNG).

    The samples are drawn in float64, then scaled and shifted in float64, and only then
    cast to `dtype`. So one seed gives the same numbers in every dtype: the float32 input a
    student gets is the float64 one an oracle might use, rounded once; and a float16 input
    is not a float16 computation (`scale` and `shift` are applied before rounding).

    `draw_dtype=torch.float32` draws in float32 instead (then scales in float32). Torch's
    float32 sampler is a different stream from its float64 one (for 16 or more elements),
    so this gives other numbers than the default; it exists only so that older hidden tests,
    written that way, keep drawing the very numbers they always drew. New tests leave it.

    >>> randn(2, 3, seed=0).shape, randn(2, 3, seed=0).dtype
    (torch.Size([2, 3]), torch.float32)
    >>> bool((randn(4, seed=7, dtype=torch.float64).float() == randn(4, seed=7)).all())
    True
    """
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator, dtype=draw_dtype) * scale + shift).to(dtype)



def mistake_shown(out: Any, variants: Mapping[str, Any]) -> str | None:
    """The mistake whose result `out` reproduces, or None: `variants` maps each mistake id to
    the results implementations with that mistake give (compared as the checks compare).
    A failing check names a mistake only when the result is what that mistake gives."""
    for mistake, wrongs in variants.items():
        if any(check.matches(out, wrong) for wrong in wrongs):
            return mistake
    return None


def hinted(hint: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`; if a student call inside it crashes, fail with the mistake `hint`.

    A crash in student code fails the test through the harness (`ERROR in your ...`, with
    the student's frames) but names no mistake: the harness cannot know which one a crash
    means. Some crashes are the mistake itself: a recursive backward pass hits
    RecursionError on a 10,000-node graph (`hinted("recursion_depth", ...)`), a parser
    raises on a line it should accept. Wrapping the call says so, and the failure ends
    with that hint from the kata's toml. `fn` is a student function, a helper of the test
    that calls student code, or `in_one_crossing` with its glue; `hint` is a mistake id of
    the kata under test (tests/test_hints.py checks it).

    A stub that raises NotImplementedError (`NOT STARTED`) gets no hint: nothing is wrong
    with code not yet written. Returns what `fn` returns. In the grading sandbox checks do
    nothing, so a crash there returns None and the trusted replay fails the test.
    """
    try:
        return fn(*args, **kwargs)
    except pytest.fail.Exception as exc:
        message = str(exc)
    check.that(False, message, hint=None if "NOT STARTED" in message else hint)


@dataclass(frozen=True)
class Tolerance(Mapping):
    """A tolerance for `check.close` with the reason it is needed, unpacked with `**`:
    `check.close(out, want, hint="...", **FLOAT32_REDUCTION)` passes rtol, atol and reason.

    (The checks need the name of a module-level value there: in the grading sandbox the
    `**` options are dropped, and the lint accepts only a literal dict of the file's own
    or a name imported from here.) `tol.rtol` and `tol.atol` are the numbers, for a
    `torch.allclose` that must agree with the check (diagnosing which mistake an output
    shows, say)."""

    rtol: float
    atol: float
    reason: str

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


# Elementwise results and short reductions need no name: check.close's dtype table covers them.

# float32 outputs of matmuls or of a whole network (GPT-2 logits, a quantized linear layer),
# compared with a float64 oracle or another summation order.
FLOAT32_REDUCTION = Tolerance(
    rtol=1e-4, atol=1e-4,
    reason="float32 through matmuls or a whole network differs from float64 or another summation order by "
           "~1e-5 (measured up to 1.5e-5 on GPT-2 logits); the smallest must-catch mistakes move outputs by >1e-3")
