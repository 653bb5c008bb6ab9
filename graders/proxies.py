"""The proxies a test holds for student code: functions, classes, objects, gradients.

`student("week2.attention").softmax` is a `StudentCallable`; an instance of a student class
is a `StudentObject`; `f.with_grad(...)` returns `Gradients`. A proxy knows its target and the
student module it came from, and hands every crossing (a call, an attribute, an item, an
operator) to that module (`graders.boundary.StudentModule`), which runs, records or replays
it. The proxies import nothing of the harness, so the recorder can know them without
importing the boundary.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .boundary import StudentModule


def unwrap(value: Any) -> Any:
    """The raw object behind a proxy (for libraries that need the real thing)."""
    if isinstance(value, StudentObject):
        return value._kata_target
    if isinstance(value, StudentCallable):
        return value._kata_target
    return value



class StudentCallable:
    """A student function, class or bound method; calling it crosses the boundary."""

    def __init__(self, target: Callable, name: str, module: "StudentModule", ref: tuple = ("f", None)):
        self._kata_target = target
        self._kata_name = name
        self._kata_module = module
        self._kata_ref = ref

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return self._kata_module._call(self._kata_name, self._kata_target, args, kwargs, ref=self._kata_ref)

    def with_grad(self, *args, **kwargs) -> "Gradients":
        """Call, then backpropagate a fixed random weighting of the output, in ONE student call.

        Tensor arguments with `requires_grad=True` get their gradients; when the target is an
        nn.Module, so do its parameters. Everything happens inside the boundary, so the
        gradients are values that come out of student code like any other result (a grader
        can record them), and tests never need to reach into student objects.
        """
        __tracebackhide__ = True
        target, name = self._kata_target, self._kata_name

        def forward_and_backward(*a, **kw):
            return _backpropagate(target, a, kw)

        forward_and_backward.__signature__ = _signature_of(target)
        return self._kata_module._call(f"{name}.with_grad", forward_and_backward, args, kwargs, ref=self._kata_ref)

    def __getattr__(self, attr):
        value = getattr(self._kata_target, attr)
        if isinstance(self._kata_target, type) and not attr.startswith("_") and callable(value) \
                and not isinstance(value, type):
            # QuantizedLinear.from_linear(...): a classmethod is student code too
            name = f"{self._kata_name}.{attr}"
            return StudentCallable(value, name, self._kata_module, ref=("f", name))
        return value

    def __repr__(self):
        return f"<student {self._kata_name}>"


@dataclass
class Gradients:
    """What `with_grad` returns: the output, d(loss)/d(each input), d(loss)/d(each parameter).

    loss = (output * weight).sum(), with `weight` a fixed standard-normal tensor (seed 0) of
    the output's shape: every output element matters, with a different weight.
    """

    output: Any
    inputs: dict[str, Any]
    parameters: dict[str, Any]


def _signature_of(target):
    import torch.nn as nn

    try:
        return inspect.signature(target.forward if isinstance(target, nn.Module) else target)
    except (TypeError, ValueError):
        return None


def _backpropagate(target, args, kwargs) -> Gradients:
    import torch
    import torch.nn as nn

    output = target(*args, **kwargs)
    out = output[0] if isinstance(output, (tuple, list)) else output
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = (out * weight.to(out.dtype)).sum()
    signature = _signature_of(target)
    named_inputs = {}
    if signature is not None:
        bound = signature.bind(*args, **kwargs)
        named_inputs = {k: v for k, v in bound.arguments.items()
                        if isinstance(v, torch.Tensor) and v.requires_grad}
    params = dict(target.named_parameters()) if isinstance(target, nn.Module) else {}
    params = {k: p for k, p in params.items() if p.requires_grad}
    leaves = list(named_inputs.values()) + list(params.values())
    grads = torch.autograd.grad(loss, leaves, allow_unused=True) if leaves else ()
    grads = [g if g is None else g.detach() for g in grads]
    return Gradients(
        output=out.detach(),
        inputs=dict(zip(named_inputs, grads[:len(named_inputs)])),
        parameters=dict(zip(params, grads[len(named_inputs):])),
    )


class StudentObject:
    """An instance of a student class: methods cross the boundary, data passes through.

    Modules reached from it (e.g. `mha.w_qkv`, an nn.Linear) are wrapped too, so that every
    read a test makes of student state goes through here, where a grader can record it.
    """

    __slots__ = ("_kata_target", "_kata_module")

    def __init__(self, target: object, module: "StudentModule"):
        object.__setattr__(self, "_kata_target", target)
        object.__setattr__(self, "_kata_module", module)

    def __getattr__(self, attr):
        __tracebackhide__ = True
        return self._kata_module._getattr_of(self, attr)

    def __setattr__(self, attr, value):
        self._kata_module._simple(self, "set", lambda: setattr(self._kata_target, attr, unwrap(value)), attr, value)

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        cls_name = type(self._kata_target).__name__
        return self._kata_module._call(cls_name, self._kata_target, args, kwargs, ref=("o", self))

    def with_grad(self, *args, **kwargs) -> Gradients:
        """Call the object (e.g. a module's forward) and backpropagate; see StudentCallable.with_grad."""
        __tracebackhide__ = True
        callable_ = StudentCallable(self._kata_target, type(self._kata_target).__name__, self._kata_module,
                                    ref=("o", self))
        return callable_.with_grad(*args, **kwargs)

    def __getitem__(self, key):
        return self._kata_module._simple(self, "item", lambda: self._kata_module._wrap(self._kata_target[key]), key)

    def __len__(self):
        return self._kata_module._simple(self, "len", lambda: len(self._kata_target))

    def __iter__(self):
        return iter(self._kata_module._simple(
            self, "iter", lambda: [self._kata_module._wrap(v) for v in self._kata_target]))

    def __repr__(self):
        return f"<student {type(self._kata_target).__name__}>"


# Operators on student objects (micrograd's Value: a + b, 2 * a, a ** 3, -a) cross the
# boundary like any method call; Python looks these up on the type, not via __getattr__.
OPERATORS = ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
             "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__matmul__", "__rmatmul__")


def _operator(name: str):
    def apply(self, *args):
        __tracebackhide__ = True
        method = getattr(self._kata_target, name, None)
        if method is None:
            return NotImplemented
        cls = type(self._kata_target).__name__
        return self._kata_module._call(f"{cls}.{name}", method, args, {}, ref=("m", self, name))

    apply.__name__ = name
    return apply


for _name in OPERATORS:
    setattr(StudentObject, _name, _operator(_name))
del _name
