"""Check helpers: compare what student code returned with what it should have returned.

Every graded assertion goes through one of these, so that every failure reads the same way:

    Called scaled_dot_product_attention(q[2,4,5,8], k[2,4,7,8], v[2,4,7,8], is_causal=True)
    output values differ: 34 of 320 elements outside rtol=1e-05, atol=1e-05
      max abs error 0.41 at [0, 1, 3, 2] (got 0.12, expected 0.53); max rel error 3.4
    Hint (missing_scale): scores must be divided by sqrt(d) before the softmax.

Shape and dtype are compared before values (a wrong shape makes value errors meaningless).
Tolerances come from one table per dtype; a check that needs another tolerance passes
`rtol`/`atol` together with the `reason` it needs them.

A hint claims a cause, so a check names one only where its failure shows that cause:

- `hint="top_k_ties"`: any failure of this check is that mistake (the check can fail no
  other way that the tests before it have not ruled out);
- `hint=oracle(which_mistake, out, ...)`: worked out from the failure, where the test knows
  what each mistake returns; `matches(out, wrong)` compares as the checks do, so a result
  that reproduces a mistake exactly names it, and one that reproduces none names nothing;
- `hint="wrong_tie_break", likely_if="your pair counts are right"`: the probable cause,
  printed as "Likely cause, if your pair counts are right:" above the hint;
- no hint: the failure says what differs, and that is all it can say.

A failure that only follows from another function's failure says so instead of its hint
(graders.plugin, at the end of the session).
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from . import catalog, recording, session
from .values import call_that_made, expecting


def _sandboxed() -> bool:
    """In the grading sandbox checks do nothing: the trusted replay makes every judgement."""
    return recording.current_mode() == "record"


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str


# Correct implementations differ from an oracle by summation order (matmul vs einsum vs
# loops), by float64 internals, and by fused kernels. The tolerances allow that, and no
# more: each is a small multiple of the dtype's machine epsilon times a typical reduction.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(1e-7, 1e-9, "float64 eps is 2.2e-16; reductions of ~1e3 terms in another order, plus margin"),
    torch.float32: Tolerance(1e-5, 1e-5, "float32 eps is 1.2e-7; ~1e2-term reductions in another order or in float64"),
    torch.float16: Tolerance(2e-3, 2e-3, "float16 eps is 9.8e-4; one rounding of the result plus accumulation order"),
    torch.bfloat16: Tolerance(1.6e-2, 1.6e-2, "bfloat16 eps is 7.8e-3; two roundings (inputs to float32 and back)"),
}


def tolerance_for(dtype: torch.dtype) -> Tolerance:
    return TOLERANCES.get(dtype, TOLERANCES[torch.float32])


# --- messages ---------------------------------------------------------------------------


def _current_kata() -> catalog.Kata | None:
    return session.active().kata()


def _hint_text(hint: str | None, likely_if: str | None = None) -> str:
    if not hint:
        return ""
    kata = _current_kata()
    qualifier = f"\nLikely cause, if {likely_if}:" if likely_if else ""
    if kata is None or hint not in kata.mistakes:
        return f"{qualifier}\nHint ({hint})"
    return f"{qualifier}\nHint ({hint}): {kata.mistakes[hint]}"


def _fail(problem: str, actual: Any = None, hint: str | None = None, likely_if: str | None = None) -> None:
    __tracebackhide__ = True
    call = call_that_made(actual) if actual is not None else None
    header = f"Called {call}\n" if call else ""
    pytest.fail(f"{header}{problem}{_hint_text(hint, likely_if)}", pytrace=False)


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (bool, int, float, np.floating, np.integer)):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def _index(flat_index: int, shape: torch.Size) -> list[int]:
    return [int(i) for i in np.unravel_index(flat_index, tuple(shape))] if len(shape) else []


def _dtype_name(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"numpy {value.dtype}"
    return str(value.dtype).removeprefix("torch.")


# --- checks -----------------------------------------------------------------------------


def close(actual: Any, expected: Any, *, hint: str | None = None, rtol: float | None = None,
          atol: float | None = None, reason: str | None = None, what: str = "output",
          check_dtype: bool = True, likely_if: str | None = None) -> None:
    """Numbers, tensors or arrays equal up to the dtype table's tolerance."""
    __tracebackhide__ = True
    if _sandboxed():
        return
    if (rtol is None) != (atol is None):
        raise TypeError("check.close: give rtol and atol together")
    if rtol is not None and not reason:
        raise TypeError("check.close: a custom tolerance needs a reason=")
    problem = _not_close(actual, expected, rtol, atol, what, check_dtype)
    if problem:
        _fail(problem, actual, hint, likely_if)


def _not_close(actual: Any, expected: Any, rtol: float | None, atol: float | None, what: str,
               check_dtype: bool) -> str | None:
    """What makes `actual` not close to `expected`, or None."""
    a, e = _as_tensor(actual), _as_tensor(expected)
    if e is None:
        raise TypeError(f"check.close: cannot compare against {type(expected).__name__}")
    if a is None:
        return f"{what} should be a {type(expected).__name__}, got {type(actual).__name__}: {actual!r:.80}"
    array_like = isinstance(expected, (torch.Tensor, np.ndarray))
    if array_like and tuple(a.shape) != tuple(e.shape):
        return (f"{what} has the wrong shape: expected [{', '.join(map(str, e.shape))}], "
                f"got [{', '.join(map(str, a.shape))}]")
    if array_like and check_dtype and type(actual) is type(expected) and a.dtype != e.dtype:
        return f"{what} has the wrong dtype: expected {_dtype_name(expected)}, got {_dtype_name(actual)}"
    if array_like and check_dtype and type(actual) is not type(expected):
        return f"{what} should be a {type(expected).__name__}, got {type(actual).__name__}"
    if a.device != e.device:
        a = a.to(e.device)
    if a.is_complex() or e.is_complex():
        a, e = torch.view_as_real(a.to(torch.complex128)), torch.view_as_real(e.to(torch.complex128))
    if rtol is None:  # the looser of the two dtypes' tolerances (a float32 tensor vs a Python float)
        tol = max((tolerance_for(t.dtype if t.is_floating_point() else torch.float32) for t in (a, e)),
                  key=lambda t: t.rtol)
        rtol, atol = tol.rtol, tol.atol
    a64, e64 = a.detach().to(torch.float64), e.detach().to(torch.float64)
    same_nonfinite = (a64 == e64) | (torch.isnan(a64) & torch.isnan(e64))
    diff = (a64 - e64).abs()
    # an infinite expected value allows an infinite error: it matches only itself
    bad = ~same_nonfinite & (~torch.isfinite(e64) | ~(diff <= atol + rtol * e64.abs()))
    if not bool(bad.any()):
        return None
    diff = torch.where(same_nonfinite, torch.zeros_like(diff), diff)
    diff = torch.nan_to_num(diff, nan=math.inf)
    worst = int(diff.reshape(-1).argmax())
    where = _index(worst, e64.shape)
    got, want = a64.reshape(-1)[worst].item(), e64.reshape(-1)[worst].item()
    rel = (diff / e64.abs().clamp_min(1e-30)).max().item()
    n_bad, n = int(bad.sum()), bad.numel()
    location = f" at {where}" if where else ""
    unexpected_nan = int((torch.isnan(a64) & ~torch.isnan(e64)).sum())
    nan_note = f"; {unexpected_nan} of them nan where a number was expected" if unexpected_nan else ""
    return (f"{what} values differ: {n_bad} of {n} element{'s' * (n != 1)} outside rtol={rtol:g}, atol={atol:g}"
            f"{nan_note}\n"
            f"  max abs error {diff.reshape(-1)[worst].item():.4g}{location} (got {got:.6g}, expected {want:.6g}); "
            f"max rel error {rel:.3g}")


def matches(actual: Any, expected: Any) -> bool:
    """Whether `actual` passes the check `expected` calls for: `check.close` for numbers,
    tensors and arrays (the dtype table's tolerance), `check.equal` for anything else.

    For working a hint out from a failure (called only through `oracle(...)`): compare the
    student's result with what each mistake would return, and name the mistake it matches.

    >>> matches(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7])), matches([1, 2], [2, 1])
    (True, False)
    """
    if isinstance(expected, (torch.Tensor, np.ndarray, float, np.floating)) and not isinstance(expected, bool):
        return _not_close(actual, expected, None, None, "output", True) is None
    return _difference(actual, expected, "output") is None


def equal(actual: Any, expected: Any, *, hint: str | None = None, what: str = "output",
          likely_if: str | None = None) -> None:
    """Exact equality: tensors (same shape and dtype), containers, strings, numbers."""
    __tracebackhide__ = True
    if _sandboxed():
        return
    problem = _difference(actual, expected, what)
    if problem:
        _fail(problem, actual, hint, likely_if)


def _difference(actual: Any, expected: Any, what: str) -> str | None:
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        if type(actual) is not type(expected):
            return f"{what} should be a {type(expected).__name__}, got {type(actual).__name__}"
        a, e = _as_tensor(actual), _as_tensor(expected)
        if tuple(a.shape) != tuple(e.shape):
            return f"{what} has the wrong shape: expected {list(e.shape)}, got {list(a.shape)}"
        if a.dtype != e.dtype:
            return f"{what} has the wrong dtype: expected {_dtype_name(expected)}, got {_dtype_name(actual)}"
        mismatch = a.cpu() != e.cpu()
        if a.is_floating_point():
            mismatch &= ~(torch.isnan(a.cpu()) & torch.isnan(e.cpu()))
        if bool(mismatch.any()):
            first = int(mismatch.reshape(-1).nonzero()[0])
            where = _index(first, e.shape)
            return (f"{what} differs in {int(mismatch.sum())} of {mismatch.numel()} elements; first at {where}: "
                    f"got {a.reshape(-1)[first].item()!r}, expected {e.reshape(-1)[first].item()!r}")
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return f"{what} should be a {type(expected).__name__}, got {type(actual).__name__}"
        if len(actual) != len(expected):
            first = next((i for i, (x, y) in enumerate(zip(actual, expected)) if x != y), min(len(actual), len(expected)))
            return (f"{what} has length {len(actual)}, expected {len(expected)} "
                    f"(first difference at index {first}: got {_short(actual, first)}, expected {_short(expected, first)})")
        for i, (x, y) in enumerate(zip(actual, expected)):
            inner = _difference(x, y, f"{what}[{i}]")
            if inner:
                return inner
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{what} should be a dict, got {type(actual).__name__}"
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing or extra:
            return f"{what} keys differ: missing {missing[:5]!r}, unexpected {extra[:5]!r}"
        for k in expected:
            inner = _difference(actual[k], expected[k], f"{what}[{k!r}]")
            if inner:
                return inner
        return None
    if isinstance(expected, bool) or expected is None:
        return None if actual is expected or (isinstance(actual, (bool, np.bool_)) and bool(actual) == expected) else f"{what}: expected {expected!r}, got {actual!r:.200}"
    if isinstance(expected, (int, float, str, bytes)):
        try:
            same = type(actual) in (int, float, str, bytes, bool, np.int64, np.float64) and actual == expected
        except Exception:  # a student object with a broken __eq__
            same = False
        if not same or (isinstance(expected, str) != isinstance(actual, str)) or (isinstance(expected, bytes) != isinstance(actual, bytes)):
            return f"{what}: expected {expected!r:.200}, got {actual!r:.200}"
        return None
    raise TypeError(f"check.equal: unsupported expected type {type(expected).__name__}")


def _short(seq, i):
    return repr(seq[i]) if i < len(seq) else "<end>"


def that(condition: Any, message: str, *, hint: str | None = None, about: Any = None,
         likely_if: str | None = None) -> None:
    """A property holds. `message` says what should have been true."""
    __tracebackhide__ = True
    if _sandboxed():
        return
    if not (condition is True or (isinstance(condition, (bool, np.bool_)) and bool(condition))
            or (isinstance(condition, torch.Tensor) and condition.dtype == torch.bool
                and condition.numel() == 1 and bool(condition))):
        _fail(message, about, hint, likely_if)


@contextlib.contextmanager
def raises(exception: type[BaseException], *, match: str | None = None, hint: str | None = None):
    """The student call inside the block must raise `exception` (or a subclass)."""
    __tracebackhide__ = True
    with expecting(exception):
        try:
            yield
        except exception as exc:
            if _sandboxed():
                return
            if match and not re.search(match, str(exc)):
                _fail(f"raised {type(exc).__name__} as expected, but its message {str(exc)!r:.200} "
                      f"does not match {match!r}", None, hint)
            return
    if _sandboxed():
        return
    _fail(f"expected {exception.__name__} to be raised, but the call returned normally", None, hint)
