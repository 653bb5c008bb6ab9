"""Keep expected values out of the grading sandbox: the test source it gets, and the rules.

The sandbox runs the kata tests beside the student's code only to record what student code
returns (`graders.recording`); the checks do nothing there and the trusted replay judges.
So the sandbox needs the test's *inputs* and its *student calls*, never its expected
values: an expected value there is in the student's process, where student code can read
it off the heap or out of the calling frames, or read the test file it came from. The
sandbox builder therefore copies every kata test file through `strip_expected`, which
rewrites it (an AST transform; the result is `ast.unparse`d) as follows:

1. Every `oracle(...)` call (`graders.oracle(...)` too) becomes the name `WITHHELD`; its
   arguments are not evaluated. (`a, b = oracle(...)` becomes `a, b = WITHHELD, WITHHELD`.)
2. Every function whose name is handed to `oracle` as its first argument anywhere in the
   file (a module-level function, or one defined inside a function) keeps its signature
   and decorators, and its body becomes `return WITHHELD`: the literals and the
   computation of an oracle helper are not in the sandbox's source.
3. In `check.close(actual, expected, ...)` and `check.equal(actual, expected, ...)` the
   expected argument (the second positional one, or `expected=`) becomes `WITHHELD`;
   every other argument but the first (`what=`, `rtol=`, `atol=`, `reason=`,
   `check_dtype=`) becomes `None`, except `hint=` when it is a string constant (kept);
   `**options` is dropped. A check with `*args` is left alone (and fails the lint).
4. In `check.that(condition, message, ...)` the condition becomes `True`, the message
   `""`, `about=` and any other argument `None` (a constant `hint=` is kept). In
   `check.raises(Exception, ...)` the exception stays (the sandbox must still catch it)
   and `match=` becomes `None`.
5. `from graders import WITHHELD` is added after the module docstring and `__future__`
   imports, so the name resolves.

Checks do nothing in the sandbox, so none of this changes what it does there, as long as
every student call survives the rewrite and no input is computed from what was removed.
What the rewrite cannot see is an expected value computed *before* the check and bound to
a name (`expected = F.scaled_dot_product_attention(q, k, v)`): that line stays. Hence the
rules every kata test follows (`lint` below; `tests/test_withhold.py` applies it to every
kata test file, and, in the slow stage, records the reference with the stripped copies and
replays the original tests from that recording):

- An expected value bound to a name comes from `oracle(fn, ...)`, from a reference call
  (`model = reference("weekN.kata")`, then `model.f(...)`), or from indexing, attributes,
  method calls or arithmetic on such values; otherwise it is written inline in the check.
  Library oracles of several lines go into a small helper called through `oracle`.
- Such a withheld value only goes to checks (or into another withheld value): it is never
  handed to a library function or to student code, branched on, unpacked (index it) or
  iterated over by a loop that calls student code. In the sandbox it is a placeholder.
- No student call (nor a read of a student object's attribute) happens inside
  `oracle(...)`, inside a check's stripped arguments, or inside an oracle helper: the
  sandbox would not record it and the replay would find no answer. An oracle helper is
  used only through `oracle(...)` (elsewhere its body is gone).
- A check's first argument is the student's value (what the test computes goes into the
  expected argument); a helper that calls student code returns only the student's results;
  an expected value handed to a helper that checks it is passed as `oracle(...)`. Hints
  worked out from expected values are `hint=oracle(fn, ...)`.
- Names in stripped arguments that are not withheld must be the student's own results
  (bound from a student call or a read of a student value), fixture data, or *inputs*:
  values that also flow into some student call. In a public test file a parameter, a
  module-level or local literal, or a loop variable over literals is fine too (the
  student has the file); a hidden test file is in the sandbox, so there it is not:
  hidden expected values come from the reference or an oracle, never from a literal in
  a parametrize list or a module constant.
- A binding (or a helper's `return`) that the lint cannot see to be an input can be marked
  `# withhold: input` on its line; use it only for a value the student's code is given
  anyway, or one that student code computed out of the lint's sight.

The lint reads the source, so it approximates: it tracks what each name is bound to
(withheld, a student result, fixture data, a literal, a parameter, an input, or a
computation), through helpers of the same file and the public file a hidden one imports
from, and it treats attributes of the plain values student code returns (tensor and
container attributes) as data. A class of the test's is code to it: a computation hidden
inside its methods is the author's to keep out of the sandbox (write it as an oracle).
- The names `oracle`, `check` and `WITHHELD` are never rebound in a test file.

The shared test helpers of `graders.testing` (`randn`, `hinted`) are read as if the test
file defined them itself: `from graders.testing import randn` puts that function's source
in the file's place for the lint, so `hinted(hint, student_fn, ...)` is a student call and
`x = randn(..., seed=1)` a computation (an input once student code gets it), just as with
the local definitions they replace. `reference` imported from there is `graders.reference`.

Hypothesis derives a derandomized test's examples from a digest of the test function's
*source*; the stripped source differs, so `graders.plugin` digests the test's name and
signature instead, and the recording run and the replay draw the same examples.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

WITHHELD_NAME = "WITHHELD"
STRIPPED_CHECKS = ("close", "equal", "that", "raises")
INPUT_MARK = re.compile(r"#\s*withhold:\s*input\b")
SHARED_HELPERS = "graders.testing"  # functions a test imports, linted as if the file defined them


@functools.cache
def _shared_helper_definitions() -> dict[str, ast.FunctionDef]:
    """The module-level functions of graders/testing.py, parsed."""
    path = Path(__file__).with_name("testing.py")
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _shared_helper(node: ast.AST, alias: ast.alias) -> ast.FunctionDef | None:
    """For `from graders.testing import randn`: a copy of randn's definition, named as the
    test binds it and placed on the import's line (where any problem in it is reported)."""
    if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == SHARED_HELPERS):
        return None
    definition = _shared_helper_definitions().get(alias.name)
    if definition is None:
        return None
    definition = copy.deepcopy(definition)
    definition.name = alias.asname or alias.name
    for n in ast.walk(definition):
        if hasattr(n, "lineno"):
            n.lineno = n.end_lineno = node.lineno
    return definition


# --- what names mean in a test file ---------------------------------------------------------


@dataclass
class _Names:
    """How a test file reaches the harness: its names for check, oracle, student, ..."""

    check: set[str] = field(default_factory=set)  # names bound to graders.check
    oracle: set[str] = field(default_factory=set)  # names bound to graders.oracle
    graders: set[str] = field(default_factory=set)  # names bound to the graders package
    student: set[str] = field(default_factory=set)  # names bound to graders.student
    reference: set[str] = field(default_factory=set)
    in_one_crossing: set[str] = field(default_factory=set)
    fixtures: set[str] = field(default_factory=set)
    withheld: set[str] = field(default_factory=set)  # names bound to graders.WITHHELD


def _harness_names(tree: ast.Module) -> _Names:
    names = _Names()
    kinds = {"check": names.check, "oracle": names.oracle, "student": names.student,
             "reference": names.reference, "in_one_crossing": names.in_one_crossing,
             "fixtures": names.fixtures, WITHHELD_NAME: names.withheld}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "graders" or alias.name.startswith("graders."):
                    if alias.asname is None:
                        names.graders.add("graders")
                    elif alias.name == "graders":
                        names.graders.add(alias.asname)
                    elif alias.name == "graders.check":
                        names.check.add(alias.asname)
                    elif alias.name == "graders.fixtures":
                        names.fixtures.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                bound = alias.asname or alias.name
                if node.module == "graders" and alias.name in kinds:
                    kinds[alias.name].add(bound)
                elif node.module == "graders.oracle" and alias.name in ("oracle", WITHHELD_NAME):
                    kinds[alias.name].add(bound)
                elif node.module == "graders.boundary" and alias.name in kinds:
                    kinds[alias.name].add(bound)
                elif node.module == SHARED_HELPERS and alias.name == "reference":
                    names.reference.add(bound)
    return names


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None for anything that is not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _is_harness(func: ast.AST, names: _Names, kind: str) -> bool:
    """`func` names graders.<kind> (a bare alias, or graders.<kind>)."""
    dotted = _dotted(func)
    if dotted is None:
        return False
    if len(dotted) == 1:
        return dotted[0] in getattr(names, kind)
    return len(dotted) == 2 and dotted[0] in names.graders and dotted[1] == kind


def _check_kind(call: ast.Call, names: _Names) -> str | None:
    """"close" / "equal" / "that" / "raises" when `call` is that check helper."""
    dotted = _dotted(call.func)
    if dotted is None or len(dotted) < 2 or dotted[-1] not in STRIPPED_CHECKS:
        return None
    head = dotted[:-1]
    if len(head) == 1 and head[0] in names.check:
        return dotted[-1]
    if len(head) == 2 and head[0] in names.graders and head[1] == "check":
        return dotted[-1]
    return None


def _is_oracle_call(node: ast.AST, names: _Names) -> bool:
    return isinstance(node, ast.Call) and _is_harness(node.func, names, "oracle")


def _oracle_helpers(tree: ast.Module, names: _Names) -> set[str]:
    """Names of functions handed to oracle(...) as the computation."""
    helpers = set()
    for node in ast.walk(tree):
        if _is_oracle_call(node, names) and node.args and isinstance(node.args[0], ast.Name):
            helpers.add(node.args[0].id)
    return helpers


@dataclass
class _Stripped:
    """The parts of one check call that the sandbox does not get."""

    kind: str
    kept: list[ast.expr]  # evaluated in the sandbox (the actual value; raises' exception)
    stripped: list[tuple[str, ast.expr]]  # (which argument, expression) removed from it
    starred: bool  # *args: which argument is which cannot be known
    double_starred: list[ast.expr]  # **options: dropped in the sandbox (tolerances, never the expected value)


def _split_check(call: ast.Call, kind: str) -> _Stripped:
    kept, stripped = [], []
    starred = any(isinstance(a, ast.Starred) for a in call.args)
    double_starred = [k.value for k in call.keywords if k.arg is None]
    first = "exception" if kind == "raises" else "condition" if kind == "that" else "actual"
    second = {"that": "message", "raises": None}.get(kind, "expected")
    for i, arg in enumerate(call.args):
        if i == 0 and not isinstance(arg, ast.Starred):
            kept.append(arg)
            if kind == "that":
                stripped.append(("condition", arg))
                kept.pop()
        else:
            stripped.append((second if i == 1 and second else f"argument {i + 1}", arg))
    for keyword in call.keywords:
        if keyword.arg == first and kind != "that":
            kept.append(keyword.value)
        elif keyword.arg is not None:
            stripped.append((keyword.arg, keyword.value))
    return _Stripped(kind, kept, stripped, starred, double_starred)


# --- the transform ----------------------------------------------------------------------------


def _withheld(at: ast.AST) -> ast.expr:
    return ast.copy_location(ast.Name(id=WITHHELD_NAME, ctx=ast.Load()), at)


def _constant(value, at: ast.AST) -> ast.expr:
    return ast.copy_location(ast.Constant(value=value), at)


class _Strip(ast.NodeTransformer):
    def __init__(self, names: _Names, helpers: set[str]):
        self.names = names
        self.helpers = helpers
        self.scopes: list[ast.AST] = []

    def _function(self, node):
        parent = self.scopes[-1] if self.scopes else None
        in_function_or_module = parent is None or isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
        if node.name in self.helpers and in_function_or_module:
            node.decorator_list = [self.visit(d) for d in node.decorator_list]
            node.body = [ast.copy_location(ast.Return(value=_withheld(node)), node.body[0])]
            return node
        self.scopes.append(node)
        try:
            return self.generic_visit(node)
        finally:
            self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node):
        self.scopes.append(node)
        try:
            return self.generic_visit(node)
        finally:
            self.scopes.pop()

    def visit_Assign(self, node):
        # `a, b = oracle(...)`: the placeholder cannot be unpacked, a tuple of them can
        if _is_oracle_call(node.value, self.names) and len(node.targets) == 1 \
                and isinstance(node.targets[0], (ast.Tuple, ast.List)) \
                and not any(isinstance(e, ast.Starred) for e in node.targets[0].elts):
            node.value = ast.copy_location(
                ast.Tuple(elts=[_withheld(node.value) for _ in node.targets[0].elts], ctx=ast.Load()), node.value)
            node.targets = [self.visit(t) for t in node.targets]
            return node
        return self.generic_visit(node)

    def visit_Call(self, node):
        if _is_oracle_call(node, self.names):
            return _withheld(node)
        kind = _check_kind(node, self.names)
        if kind is None or any(isinstance(a, ast.Starred) for a in node.args):
            return self.generic_visit(node)
        node.func = self.visit(node.func)
        node.keywords = [k for k in node.keywords if k.arg is not None]  # **options: not needed there
        args = []
        for i, arg in enumerate(node.args):
            if i == 0:
                args.append(_constant(True, arg) if kind == "that" else self.visit(arg))
            elif i == 1 and kind in ("close", "equal"):
                args.append(_withheld(arg))
            elif i == 1 and kind == "that":
                args.append(_constant("", arg))
            else:
                args.append(_constant(None, arg))
        node.args = args
        first = {"that": "condition", "raises": "exception"}.get(kind, "actual")
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg == first:
                keyword.value = _constant(True, value) if kind == "that" else self.visit(value)
            elif keyword.arg == "expected":
                keyword.value = _withheld(value)
            elif keyword.arg == "message" and kind == "that":
                keyword.value = _constant("", value)
            elif keyword.arg == "hint" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                pass
            else:
                keyword.value = _constant(None, value)
        return node


def strip_expected(source: str, filename: str = "<test>") -> str:
    """The test file as the grading sandbox gets it: no expected value left (see the module doc)."""
    tree = ast.parse(source, filename=filename)
    names = _harness_names(tree)
    helpers = _oracle_helpers(tree, names)
    tree = _Strip(names, helpers).visit(tree)
    if not names.withheld & {WITHHELD_NAME}:
        index = 0
        body = tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            index = 1
        while index < len(body) and isinstance(body[index], ast.ImportFrom) and body[index].module == "__future__":
            index += 1
        anchor = body[index] if index < len(body) else (body[-1] if body else tree)
        body.insert(index, ast.copy_location(
            ast.ImportFrom(module="graders", names=[ast.alias(name=WITHHELD_NAME)], level=0), anchor))
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


# --- the lint ----------------------------------------------------------------------------------

# Attributes of the plain values student code returns (tensors, arrays, containers, numbers,
# `Gradients`): reading one is no crossing. Any other attribute of a student result may be
# an attribute of a student object, which the replay must find in the recording.
def _data_attributes() -> frozenset[str]:
    import numpy as np
    import torch

    found: set[str] = {"output", "inputs"}
    for kind in (torch.Tensor, np.ndarray, np.generic, list, dict, tuple, set, str, bytes, float, int, complex):
        found.update(a for a in dir(kind) if not a.startswith("__"))
    # names a student object has as well (micrograd's Value.data and .grad, an nn.Module's methods)
    found -= {"data", "grad", "backward"} | {a for a in dir(torch.nn.Module) if not a.startswith("__")}
    return frozenset(found)


TRANSPARENT = {"range", "enumerate", "zip", "reversed", "sorted", "list", "tuple", "dict", "set", "frozenset",
               "int", "float", "str", "bool", "bytes", "len", "abs", "min", "max", "sum", "round",
               "tensor", "as_tensor", "from_numpy", "asarray", "array", "Counter"}
TRANSPARENT_DOTTED = {("torch", "tensor"), ("torch", "as_tensor"), ("torch", "from_numpy"), ("np", "asarray"),
                      ("np", "array"), ("numpy", "asarray"), ("numpy", "array")}
LOOP_ONLY = {"zip", "enumerate"}
FILLERS = {"append", "extend", "insert", "add", "update", "setdefault", "appendleft"}  # over a withheld value: the loop simply does not run in the sandbox


@dataclass
class Problem:
    line: int
    message: str

    def __str__(self):
        return f"line {self.line}: {self.message}"


@dataclass
class _Binding:
    kind: str  # param, assign, unpack, mutate, loop, with, except, import, def, global
    value: ast.expr | None
    line: int
    marked_input: bool = False


class _Module:
    """What a test file's module level provides to its functions."""

    def __init__(self, tree: ast.Module, source: str, path: Path | None, hidden: bool,
                 siblings: dict[str, "_Module"] | None = None):
        self.tree, self.source, self.path, self.hidden = tree, source, path, hidden
        self.lines = source.splitlines()
        self.names = _harness_names(tree)
        self.helpers = _oracle_helpers(tree, self.names)
        self.bindings: dict[str, list[_Binding]] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        self.classes: set[str] = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        self.student_handles: set[str] = set()
        self.reference_handles: set[str] = set()
        self.imported_student_helpers: set[str] = set()
        self.imported_oracle_helpers: set[str] = set()
        for node in tree.body:
            self._module_binding(node)
        self._import_siblings(siblings or {})
        self.student_helpers = self._student_helpers()
        self.glue = self._glue()
        self.parameter_kinds: dict[str, dict[str, frozenset[str]]] = {}
        self._scoped: dict[int, ast.FunctionDef] = {}
        self.infer_parameters()

    def scoped(self, node: ast.FunctionDef) -> ast.FunctionDef:
        """A copy of a function of this file with comprehension and lambda variables renamed
        apart (made once: every analysis of the function reads the same copy)."""
        if id(node) not in self._scoped:
            self._scoped[id(node)] = _ScopeNames().visit(copy.deepcopy(node))
        return self._scoped[id(node)]

    def infer_parameters(self, rounds: int = 3) -> None:
        """For each module-level helper, what kind of value each parameter gets from its callers
        here: the union of the categories of the arguments at every call site."""
        for _ in range(rounds):
            found: dict[str, dict[str, set[str]]] = {}
            for name, node in self.functions.items():
                if name in self.helpers:
                    continue  # an oracle helper's calls never happen in the sandbox
                fn = _Function(self, node)
                inside_oracles = {id(n) for c in ast.walk(fn.node) if _is_oracle_call(c, self.names)
                                  for n in ast.walk(c)}
                for call, parts in _check_calls(fn):  # nor do the calls in a check's stripped arguments
                    inside_oracles |= {id(n) for _, e in parts.stripped for n in ast.walk(e)}
                for call in ast.walk(fn.node):
                    if id(call) in inside_oracles:
                        continue
                    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                            and call.func.id in self.functions and fn.bindings_of(call.func.id) is None):
                        continue
                    target = self.functions[call.func.id].args
                    params = [x.arg for x in [*target.posonlyargs, *target.args]]
                    given = {params[i]: arg for i, arg in enumerate(call.args)
                             if i < len(params) and not isinstance(arg, ast.Starred)}
                    given.update({k.arg: k.value for k in call.keywords if k.arg})
                    kinds = found.setdefault(call.func.id, {})
                    for param, arg in given.items():
                        kinds.setdefault(param, set()).update(fn.category(arg))
            new = {f: {p: frozenset(k) for p, k in kinds.items()} for f, kinds in found.items()}
            if new == self.parameter_kinds:
                return
            self.parameter_kinds = new

    def _glue(self) -> set[str]:
        """Functions run by in_one_crossing (directly or through a wrapper): raw student code."""
        found = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                parts = [node.func, *node.args]
                for i, part in enumerate(parts[:-2]):
                    if isinstance(part, ast.Name) and part.id in self.names.in_one_crossing \
                            and isinstance(parts[i + 2], ast.Name):
                        found.add(parts[i + 2].id)
        return found

    def marked(self, line: int) -> bool:
        return 0 < line <= len(self.lines) and bool(INPUT_MARK.search(self.lines[line - 1]))

    def _module_binding(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.bindings.setdefault(node.name, []).append(_Binding("def", None, node.lineno))
            if not isinstance(node, ast.ClassDef):
                self.functions[node.name] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                shared = _shared_helper(node, alias)
                if shared is not None:  # graders.testing's randn, hinted: as if defined here
                    self.bindings.setdefault(bound, []).append(_Binding("def", None, node.lineno))
                    self.functions[bound] = shared
                    continue
                self.bindings.setdefault(bound, []).append(_Binding("import", None, node.lineno))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            for target in targets:
                for name, kind in _target_names(target):
                    self.bindings.setdefault(name, []).append(
                        _Binding(kind, value, node.lineno, self.marked(node.lineno)))
                    if isinstance(target, ast.Name) and isinstance(value, ast.Call):
                        if _is_harness(value.func, self.names, "student"):
                            self.student_handles.add(name)
                        elif _is_harness(value.func, self.names, "reference"):
                            self.reference_handles.add(name)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._module_binding(child)

    def _import_siblings(self, siblings):
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in siblings:
                sibling = siblings[node.module]
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if alias.name in sibling.student_helpers:
                        self.imported_student_helpers.add(bound)
                    if alias.name in sibling.helpers:
                        self.imported_oracle_helpers.add(bound)

    def _student_helpers(self) -> set[str]:
        """Module-level functions that reach student code (directly or through each other)."""
        reach = set(self.student_handles) | self.names.student | self.names.in_one_crossing \
            | self.imported_student_helpers
        helpers: set[str] = set(self.imported_student_helpers)
        changed = True
        while changed:
            changed = False
            for name, function in self.functions.items():
                if name in helpers:
                    continue
                if any(isinstance(n, ast.Name) and n.id in reach | helpers for n in ast.walk(function)):
                    helpers.add(name)
                    changed = True
        return helpers


def _target_names(target: ast.AST, kind: str = "assign") -> Iterable[tuple[str, str]]:
    if isinstance(target, ast.Name):
        yield target.id, kind
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element, "unpack")
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value, "unpack")
    elif isinstance(target, (ast.Subscript, ast.Attribute)):
        root = _root(target)
        if isinstance(root, ast.Name):
            yield root.id, "mutate"


def _is_counter(iterable: ast.AST) -> bool:
    return isinstance(iterable, ast.Name) and iterable.id == "range" or (
        isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) and iterable.func.id == "range")


def _chain(node: ast.AST, root: ast.AST) -> Iterable[ast.AST]:
    """The links of a chain of attributes, subscripts and method calls from `node` down to `root`."""
    while node is not root:
        yield node
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Call, ast.Subscript)):
            node = node.func
        else:
            return


def _loop_pairs(target: ast.AST, iterable: ast.expr) -> Iterable[tuple[str, ast.expr]]:
    """Each name a loop binds, with the iterable it takes its values from: in
    `for name, want in zip("qkv", expected)`, `name` comes from "qkv" and `want` from `expected`."""
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(iterable, ast.Call) \
            and isinstance(iterable.func, ast.Name) and not iterable.keywords \
            and not any(isinstance(a, ast.Starred) for a in iterable.args) \
            and not any(isinstance(e, ast.Starred) for e in target.elts):
        if iterable.func.id == "zip" and len(iterable.args) == len(target.elts):
            for element, source in zip(target.elts, iterable.args):
                yield from _loop_pairs(element, source)
            return
        if iterable.func.id == "enumerate" and len(target.elts) == 2 and len(iterable.args) == 1:
            yield from _loop_pairs(target.elts[0], ast.copy_location(ast.Name(id="range", ctx=ast.Load()), iterable))
            yield from _loop_pairs(target.elts[1], iterable.args[0])
            return
    for name, _ in _target_names(target):
        yield name, iterable


class _ScopeNames(ast.NodeTransformer):
    """Give the variables of each comprehension and lambda names of their own (`v@3`): they
    live in their own scope, and one function's analysis must not mix them up."""

    def __init__(self):
        self.count = 0
        self.top_done = False

    def _rename(self, node: ast.AST, names: set[str], suffix: str) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in names:
                n.id = f"{n.id}@{suffix}"
            elif isinstance(n, ast.arg) and n.arg in names:
                n.arg = f"{n.arg}@{suffix}"

    def _comprehension(self, node):
        self.generic_visit(node)  # inner scopes first
        self.count += 1
        names = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        first = node.generators[0].iter  # evaluated in the enclosing scope
        for part in [*(getattr(node, f) for f in ("elt", "key", "value") if hasattr(node, f)),
                     *(g.target for g in node.generators), *(i for g in node.generators for i in g.ifs),
                     *(g.iter for g in node.generators if g.iter is not first)]:
            self._rename(part, names, str(self.count))
        return node

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def _nested_function(self, node):
        self.generic_visit(node)
        if not self.top_done:  # the function under analysis itself keeps its names
            return node
        self.count += 1
        a = node.args
        names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x is not None}
        declared = {n for s in ast.walk(node) if isinstance(s, (ast.Global, ast.Nonlocal)) for n in s.names}
        for statement in node.body:
            for n in ast.walk(statement):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    names.add(n.id)
        names -= declared
        self._rename(node.args, names, str(self.count))
        for statement in node.body:
            self._rename(statement, names, str(self.count))
        return node

    def visit_FunctionDef(self, node):
        if not self.top_done:
            self.top_done = True
            self.generic_visit(node)
            return node
        return self._nested_function(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.generic_visit(node)
        self.count += 1
        a = node.args
        names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x is not None}
        self._rename(node.args, names, str(self.count))
        self._rename(node.body, names, str(self.count))
        return node


def _root(node: ast.AST) -> ast.AST:
    """The object at the bottom of a chain of attributes, subscripts and method calls."""
    while True:
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        else:
            return node


def _names_in(node: ast.AST) -> set[str]:
    """Names read in an expression, less those bound inside it (comprehensions, lambdas)."""
    read, bound = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (read if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
    return read - bound


class _Function:
    """One module-level function (with everything nested in it) of a test file."""

    def __init__(self, module: _Module, node: ast.FunctionDef):
        node = module.scoped(node)
        self.module, self.node = module, node
        self.bindings: dict[str, list[_Binding]] = {}
        self.globals: set[str] = set()
        self._collect(node)
        a = node.args
        # what the callers in this file pass (see _Module.infer_parameters): a helper's `cache`
        # parameter is a student object when every call hands it one
        given = module.parameter_kinds.get(node.name, {})
        self.parameter_kinds = {x.arg: given[x.arg] for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]
                                if given.get(x.arg)}
        self._categories: dict[str, frozenset[str]] = {}
        self._student_names = self._fixpoint_student_names()

    # bindings
    def _bind(self, name, kind, value, line):
        self.bindings.setdefault(name, []).append(_Binding(kind, value, line, self.module.marked(line)))

    def _collect(self, root):
        for node in ast.walk(root):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                args = node.args
                for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                    if a is not None:
                        self._bind(a.arg, "param", None, node.lineno)
                if node is not root and not isinstance(node, ast.Lambda):
                    self._bind(node.name, "def", node, node.lineno)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List)) \
                    and len(node.targets[0].elts) == len(node.value.elts) \
                    and not any(isinstance(e, ast.Starred) for e in [*node.targets[0].elts, *node.value.elts]):
                for target, value in zip(node.targets[0].elts, node.value.elts):  # a, b = f(), g()
                    for name, kind in _target_names(target):
                        self._bind(name, kind if kind != "unpack" or not isinstance(target, ast.Name) else "assign",
                                   value, node.lineno)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for name, kind in _target_names(target):
                        value = node.value
                        if isinstance(node, ast.AugAssign):
                            value = ast.BinOp(left=ast.Name(id=name, ctx=ast.Load()), op=node.op, right=node.value)
                        if value is not None:
                            self._bind(name, kind, value, node.lineno)
                        if kind == "mutate":  # counts[i] += 1: which element changed is part of what it holds
                            for index in ast.walk(target):
                                if isinstance(index, ast.Subscript):
                                    self._bind(name, "mutate", index.slice, node.lineno)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                line = getattr(node, "lineno", getattr(node.target, "lineno", 0))
                for name, iterable in _loop_pairs(node.target, node.iter):
                    self._bind(name, "loop", iterable, line)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                    and isinstance(node.value.func, ast.Attribute) and node.value.func.attr in FILLERS:
                # xs.append(v), d.update(v), counts.setdefault(k, v): what xs holds is v too
                root = _root(node.value.func.value)
                if isinstance(root, ast.Name):
                    for part in [*node.value.args, *(k.value for k in node.value.keywords)]:
                        self._bind(root.id, "fill", part, node.lineno)
            elif isinstance(node, ast.NamedExpr):
                self._bind(node.target.id, "assign", node.value, node.lineno)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                for name, _ in _target_names(node.optional_vars):
                    self._bind(name, "with", node.context_expr, node.context_expr.lineno)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self._bind(node.name, "except", None, node.lineno)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    self._bind(alias.asname or alias.name.split(".")[0], "import", None, node.lineno)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                self.globals.update(node.names)

    def bindings_of(self, name: str) -> list[_Binding] | None:
        if name in self.bindings and name not in self.globals:
            return self.bindings[name]
        return None

    # student values
    def is_student_handle(self, name: str) -> bool:
        return self.bindings_of(name) is None and name in self.module.student_handles

    def is_reference_handle(self, name: str) -> bool:
        return self.bindings_of(name) is None and name in self.module.reference_handles

    def _fixpoint_student_names(self) -> set[str]:
        names: set[str] = set()
        self._student_names = names
        changed = True
        while changed:
            changed = False
            for name, bindings in self.bindings.items():
                if name in names or name in self.globals:
                    continue
                if self.parameter_kinds.get(name) == frozenset("S") or any(
                        b.kind in ("assign", "unpack", "loop", "with") and b.value is not None
                        and self.is_student_value(b.value, loop=b.kind == "loop") for b in bindings):
                    names.add(name)
                    changed = True
        return names

    def student_name(self, name: str) -> bool:
        return name in self._student_names and self.bindings_of(name) is not None

    def local_student_helpers(self) -> set[str]:
        """Functions defined inside this one that call student code (`def score(pq, pk): ...`)."""
        if not hasattr(self, "_local_helpers"):
            self._local_helpers = set()
            changed = True
            while changed:
                changed = False
                for name, bindings in self.bindings.items():
                    if name in self._local_helpers:
                        continue
                    for b in bindings:
                        if b.kind == "def" and isinstance(b.value, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                                isinstance(n, ast.Call) and self.is_student_call(n) for n in ast.walk(b.value)):
                            self._local_helpers.add(name)
                            changed = True
        return self._local_helpers

    def is_student_callable(self, node: ast.AST, objects: bool = True) -> bool:
        """An argument that hands student code to a helper (`hinted(hint, student_run, ...)`,
        `train(model, ...)`); with `objects=False` only functions, not student results."""
        if isinstance(node, ast.Lambda):
            return any(isinstance(n, ast.Call) and self.is_student_call(n) for n in ast.walk(node.body))
        if isinstance(node, ast.Name):
            return self.bindings_of(node.id) is None and node.id in self.module.student_helpers \
                or self.is_student_handle(node.id) or (objects and self.student_name(node.id))
        root = _root(node)
        return isinstance(node, ast.Attribute) and isinstance(root, ast.Name) \
            and (self.is_student_handle(root.id) or (objects and self.student_name(root.id)))

    def is_student_call(self, call: ast.Call) -> bool:
        root = _root(call.func)
        if isinstance(root, ast.Name) and (self.is_student_handle(root.id) or self.student_name(root.id)):
            return True
        if isinstance(root, ast.Call) and root is not call and self.is_student_call(root):
            return True  # load(gpt2, hf).generate(...): a method of what a student call returned
        if isinstance(call.func, ast.Name) and self.bindings_of(call.func.id) is None and (
                call.func.id in self.module.student_helpers or call.func.id in self.module.names.in_one_crossing):
            return True
        if isinstance(call.func, ast.Name) and call.func.id in self.local_student_helpers():
            return True
        library = _is_library(call, self) or (isinstance(call.func, ast.Name) and self.bindings_of(call.func.id) is None
                                              and call.func.id not in self.module.bindings)
        parts = [a.value if isinstance(a, ast.Starred) else a for a in call.args] + [k.value for k in call.keywords]
        # a helper handed student code (a function, a lambda calling it, a student object) runs it; a library
        # function (`torch.isfinite(out)`) or builtin handed a student result only reads the data
        return any(self.is_student_callable(p, objects=not library) for p in parts)

    def is_student_value(self, node: ast.AST, loop: bool = False) -> bool:
        """A student result: a student call, or a read (attribute, item, method) of one."""
        if loop and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in TRANSPARENT:
            parts = [a for a in node.args if not isinstance(a, ast.Constant)]
            return bool(parts) and all(self.is_student_value(p, loop=True) for p in parts) if node.func.id != "zip" \
                else any(self.is_student_value(p, loop=True) for p in parts)
        if isinstance(node, ast.Call) and self.is_student_call(node):
            return True
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            root = _root(node)
            if isinstance(root, ast.Call):
                return self.is_student_call(root)
            return isinstance(root, ast.Name) and (self.is_student_handle(root.id) or self.student_name(root.id))
        if isinstance(node, ast.Name):
            return self.student_name(node.id) or self.is_student_handle(node.id)
        if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
            return all(self.is_student_value(e) for e in node.elts)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            return self.is_student_value(node.elt)
        if isinstance(node, ast.IfExp):  # `fn = vision.clip_loss if clip else vision.siglip_loss`
            return self.is_student_value(node.body) and self.is_student_value(node.orelse)
        if isinstance(node, ast.Lambda):  # `lr = lambda step: optim.cosine_lr(step, ...)`: a student callable
            return any(isinstance(n, ast.Call) and self.is_student_call(n) for n in ast.walk(node.body))
        return False

    # categories of values: W withheld, S student result, F fixture data, L literal, P parameter, O computed
    def category(self, node: ast.AST, loop: bool = False) -> frozenset[str]:
        names = self.module.names
        if isinstance(node, ast.Constant):
            return frozenset("L")
        if _is_oracle_call(node, names):
            return frozenset("W")
        if self.is_student_value(node, loop=loop):
            return frozenset("S")
        if isinstance(node, ast.Name):
            return self.name_category(node.id)
        if isinstance(node, (ast.Attribute, ast.Subscript)) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not _is_library(node, self)) or (
                isinstance(node, ast.Call) and isinstance(node.func, (ast.Call, ast.Subscript))):
            root = self.chain_root(node)
            if isinstance(root, ast.Call):
                dotted = _dotted(root.func)
                if dotted and dotted[0] in names.fixtures and dotted[-1] == "load":
                    return frozenset("F")
                category = self.category(root)
            elif isinstance(root, ast.Name):
                if self.is_reference_handle(root.id):
                    return frozenset("W")
                category = self.name_category(root.id)
                category = category if category != frozenset("N") else frozenset("L")
            else:
                category = self.category(root)
            # reading a literal or a parameter (`shape[0]`) gives one; a method of one computes
            computes = any(isinstance(n, ast.Call) for n in _chain(node, root))
            if computes and not category & frozenset("WSF"):
                return frozenset("O")
            return category
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            if dotted and dotted[0] in names.fixtures and dotted[-1] == "load":
                return frozenset("F")
            parts = [a.value if isinstance(a, ast.Starred) else a for a in node.args] + [k.value for k in node.keywords]
            found = frozenset().union(*(self.category(p) for p in parts)) if parts else frozenset("L")
            if "W" in found:
                return frozenset("W")
            if dotted and (dotted[-1] in TRANSPARENT and len(dotted) == 1 or tuple(dotted[-2:]) in TRANSPARENT_DOTTED):
                return found or frozenset("L")
            if _is_library(node, self) and all(_is_literal(p) for p in parts):
                return frozenset("L")  # torch.zeros(27), math.sqrt(2): made from literals written here
            if dotted and len(dotted) == 1 and self.bindings_of(dotted[0]) is None and dotted[0] in self.module.classes:
                return frozenset("N")  # an object of a class of the test's (a toy model): code, like a function
            if isinstance(node.func, ast.Name) and self.name_category(node.func.id) == frozenset("N") \
                    and "S" in found and found <= frozenset("SLN"):
                return frozenset("S")  # the test's own toy model run on the student's results
            if "S" in found and found <= frozenset("SLN") and (_is_library(node, self) or (
                    dotted and len(dotted) == 1 and dotted[0] in self.module.functions
                    and self.bindings_of(dotted[0]) is None and dotted[0] not in self.module.helpers)):
                return frozenset("S")  # `torch.cat(parts)`, `sorted_pairs(got)`: of the student's results alone
            return frozenset("O")
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            parts = [e.value if isinstance(e, ast.Starred) else e for e in node.elts]
            return frozenset().union(*(self.category(p) for p in parts)) if parts else frozenset("L")
        if isinstance(node, ast.Dict):
            parts = [p for p in [*node.keys, *node.values] if p is not None]
            return frozenset().union(*(self.category(p) for p in parts)) if parts else frozenset("L")
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp)):
            parts = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
            # an input used as it is (`out - x`) adds nothing beside a student result: the student has it
            inputs = self.inputs()
            found = frozenset().union(*(
                frozenset("I") if isinstance(p, ast.Name) and p.id in inputs and "O" in self.category(p)
                else self.category(p) for p in parts))
            if "W" in found:
                return frozenset("W")
            if found <= frozenset("LN"):
                return frozenset("L")
            if "S" in found and found <= frozenset("SLNI"):
                return frozenset("S")  # arithmetic on student results (and the inputs they came from)
            found = found - frozenset("I") | (frozenset("O") if "I" in found else frozenset())
            if found <= frozenset("PLN") and not isinstance(node, (ast.BinOp, ast.UnaryOp)):
                return frozenset("P")  # a choice between parameters and literals (`"a" if x else "b"`)
            return frozenset("O")
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            parts = [node.elt] if hasattr(node, "elt") else [node.key, node.value]
            found = frozenset().union(*(self.category(p) for p in parts))
            # what the filters read decides which elements there are (`if labels[i] == labels[j]`)
            filters = frozenset().union(frozenset(), *(self.category(c) for g in node.generators for c in g.ifs))
            found |= filters - frozenset("LN")
            if "W" in found:
                return frozenset("W")
            return found if "O" not in found or found == frozenset("O") else frozenset("O") | (found & frozenset("W"))
        if isinstance(node, ast.Lambda):
            return frozenset("N")  # code, not a value (a lambda calling student code is a student value, above)
        if isinstance(node, ast.JoinedStr):  # a label: as much as the values it shows
            shown = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
            return frozenset().union(*(self.category(v) for v in shown)) if shown else frozenset("L")
        return frozenset("O")

    def name_category(self, name: str) -> frozenset[str]:
        if name in self._categories:
            return self._categories[name]
        self._categories[name] = frozenset()  # in progress: a cycle adds nothing of its own
        bindings = self.bindings_of(name)
        if bindings is None:
            result = self.module_category(name)
        else:
            found: set[str] = set()
            fills = [b for b in bindings if b.kind == "fill"]
            bindings = [b for b in bindings if b.kind != "fill"]
            for b in bindings:
                if b.kind == "param":
                    found |= self.parameter_kinds.get(name, frozenset("P"))
                elif b.kind in ("import", "def"):
                    found.add("N")
                elif b.kind == "except":
                    found.add("S")  # what a call in the `try` raised: a student failure, not an expected value
                elif b.kind == "loop" and _is_counter(b.value):
                    found.add("N")  # `for i in range(n)`: a counter, no value of its own
                elif b.kind == "loop":
                    found |= self.category(b.value, loop=True)
                elif b.kind == "mutate":
                    # x[i] = v: what x holds is v too (a container of nothing yet stays what v is)
                    found |= self.category(b.value) - frozenset("LN") if b.value is not None else frozenset()
                elif b.kind == "with":
                    found.add("O")
                else:
                    found |= self.category(b.value)
            if not found & set("SW"):  # a container of the test's (not a student or reference object): its contents
                for b in fills:
                    found |= self.category(b.value) - frozenset("LN")
            result = frozenset(found or "O")
        self._categories[name] = result
        return result

    def module_category(self, name: str) -> frozenset[str]:
        module = self.module
        if name in module.student_handles:
            return frozenset("S")
        if name in module.reference_handles:
            return frozenset("W")
        bindings = module.bindings.get(name)
        if bindings is None:
            return frozenset("N")  # a builtin
        found: set[str] = set()
        for b in bindings:
            if b.kind in ("import", "def"):
                found.add("N")
            elif b.value is not None:
                found |= _module_value_category(b.value)
        return frozenset(found or "N")

    def inputs(self) -> set[str]:
        if not hasattr(self, "_inputs_cache"):
            self._inputs_cache: set[str] = set()  # while computing: nothing is an input yet
            self._inputs_cache = _inputs(self)
        return self._inputs_cache

    def chain_root(self, node: ast.AST) -> ast.AST:
        """Like `_root`, but a library call (`F.pad(x).float()`) is where the chain starts."""
        while True:
            if isinstance(node, (ast.Attribute, ast.Subscript)):
                node = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not _is_library(node, self):
                node = node.func.value
            elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Call, ast.Subscript)):
                node = node.func  # want.merge()(x): calling what a chain gave
            else:
                return node

    def is_withheld(self, node: ast.AST) -> bool:
        return "W" in self.category(node)


def _is_library(call: ast.Call, fn: _Function) -> bool:
    """`torch.softmax(...)`, `np.exp(...)`, `F.pad(...)`: a function of a module, not a method."""
    dotted = _dotted(call.func)
    if not dotted:
        return False
    head = dotted[0]
    bindings = fn.bindings_of(head)
    if bindings is not None:
        return all(b.kind == "import" for b in bindings)
    module_bindings = fn.module.bindings.get(head)
    return head not in fn.module.student_handles and head not in fn.module.reference_handles and (
        module_bindings is None or all(b.kind == "import" for b in module_bindings))


def _is_literal(node: ast.AST) -> bool:
    """Constants, containers of them, `dict(a=1)`, arithmetic on constants: written out in the source."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_literal(node.left) and _is_literal(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in ("dict", "list", "tuple", "set", "frozenset"):
        return all(_is_literal(a) for a in node.args) and all(k.arg and _is_literal(k.value) for k in node.keywords)
    return False


def _module_value_category(value: ast.expr) -> set[str]:
    return {"L"} if _is_literal(value) else {"O"}


@functools.lru_cache(maxsize=32)
def _sibling_module(name: str, source: str) -> _Module:
    """A sibling test file's module, read once for all the files of its directory."""
    return _Module(ast.parse(source), source, None, name.endswith("_hidden"))


def lint(source: str, filename: str = "<test>", hidden: bool | None = None,
         siblings: dict[str, str] | None = None) -> list[Problem]:
    """Where a kata test file breaks the rules that keep expected values out of the sandbox.

    `hidden`: a hidden test file (default: its name ends in `_hidden.py`), whose literals
    are in the sandbox. `siblings`: the sources of the other test files of its directory by
    module name (`test_micrograd`), for the helpers it imports from them.
    """
    path = Path(filename)
    if hidden is None:
        hidden = path.stem.endswith("_hidden")
    tree = ast.parse(source, filename=filename)
    imported = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1}
    sibling_modules = {name: _sibling_module(name, text) for name, text in (siblings or {}).items() if name in imported}
    module = _Module(tree, source, path, hidden, sibling_modules)
    problems: list[Problem] = []
    problems += _shadowing(module)
    problems += _oracle_helper_problems(module)
    for node in tree.body:
        functions = [node] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else [
            n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ] if isinstance(node, ast.ClassDef) else []
        for function in functions:
            problems += _function_problems(_Function(module, function))
    seen, unique = set(), []
    for p in sorted(problems, key=lambda p: (p.line, p.message)):
        if (p.line, p.message) not in seen:
            seen.add((p.line, p.message))
            unique.append(p)
    return unique


def _shadowing(module: _Module) -> list[Problem]:
    protected = module.names.check | module.names.oracle | {WITHHELD_NAME}
    problems = []
    for node in ast.walk(module.tree):
        bound: list[tuple[str, int]] = []
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.append((node.id, node.lineno))
        elif isinstance(node, ast.arg):
            bound.append((node.arg, node.lineno))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.append((node.name, node.lineno))
        for name, line in bound:
            if name in protected:
                problems.append(Problem(line, f"`{name}` is rebound: the sandbox's rewrite finds checks and oracles "
                                              f"by this name; call the local value something else"))
    return problems


def _oracle_helper_problems(module: _Module) -> list[Problem]:
    problems = []
    names = module.names
    helper_defs = {}
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in module.helpers:
            helper_defs.setdefault(node.name, node)
    oracle_firsts = {id(n.args[0]) for n in ast.walk(module.tree) if _is_oracle_call(n, names) and n.args}
    # inside an oracle helper (or an oracle call, or a check's stripped arguments) an oracle helper may be
    # used directly: none of them runs in the sandbox
    oracle_firsts |= {id(n) for d in helper_defs.values() for n in ast.walk(d)}
    for call in ast.walk(module.tree):
        kind = _check_kind(call, names) if isinstance(call, ast.Call) else None
        if kind:
            oracle_firsts |= {id(n) for _, e in _split_check(call, kind).stripped for n in ast.walk(e)}
    oracle_firsts |= {id(n) for c in ast.walk(module.tree) if _is_oracle_call(c, names) for n in ast.walk(c)}
    for name, node in helper_defs.items():
        reach = module.student_handles | module.names.student | module.names.in_one_crossing | module.student_helpers
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in reach - {name}:
                problems.append(Problem(n.lineno, f"the oracle helper `{name}` reaches student code (`{n.id}`): "
                                                  f"in the sandbox its body is removed, so that call would never "
                                                  f"be recorded; call student code in the test, not in the oracle"))
                break
    for n in ast.walk(module.tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in oracle_firsts \
                and (n.id in module.helpers and n.id in helper_defs or n.id in module.imported_oracle_helpers):
            problems.append(Problem(n.lineno, f"`{n.id}` is an oracle helper (handed to oracle(...)), so its body is "
                                              f"removed in the sandbox; use it only as oracle({n.id}, ...)"))
    for n in ast.walk(module.tree):
        if _is_oracle_call(n, names):
            if not n.args:
                problems.append(Problem(n.lineno, "oracle() needs the function to call: oracle(fn, *args)"))
            fn = _function_for(module, n)
            for part in [*n.args, *(k.value for k in n.keywords)]:
                problems += _crossings(fn, part, "inside oracle(...)") if fn else []
    return problems


def _function_for(module: _Module, node: ast.AST) -> _Function | None:
    for top in module.tree.body:
        candidates = [top] if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else [
            n for n in top.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ] if isinstance(top, ast.ClassDef) else []
        for candidate in candidates:
            if any(n is node for n in ast.walk(candidate)):
                return _Function(module, candidate)
    return None


def _crossings(fn: _Function, expr: ast.AST, where: str) -> list[Problem]:
    """Student calls (and reads of student objects) in an expression the sandbox never evaluates."""
    problems = []
    data = _data_attributes()
    for n in ast.walk(expr):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and fn.is_student_handle(n.id):
            problems.append(Problem(n.lineno, f"student code (`{n.id}`) is reached {where}, which the sandbox never "
                                              f"evaluates: the call would not be recorded. Make the call first, "
                                              f"bind its result to a name, and use the name here"))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and fn.bindings_of(n.func.id) is None \
                and n.func.id in fn.module.student_helpers:
            problems.append(Problem(n.lineno, f"`{n.func.id}(...)` calls student code {where}, which the sandbox "
                                              f"never evaluates: call it first and use its result here"))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and (
                fn.student_name(n.func.id) or n.func.id in fn.local_student_helpers()):
            problems.append(Problem(n.lineno, f"`{n.func.id}(...)` calls student code {where}, which the sandbox "
                                              f"never evaluates: call it first and use its result here"))
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and fn.student_name(n.value.id) \
                and n.attr not in data:
            problems.append(Problem(n.lineno, f"`{n.value.id}.{n.attr}` may read a student object {where}, which "
                                              f"the sandbox never evaluates (the replay would find no recording "
                                              f"of it): read it into a name first and use the name here"))
    return problems


def _check_calls(fn: _Function) -> list[tuple[ast.Call, _Stripped]]:
    found = []
    for n in ast.walk(fn.node):
        if isinstance(n, ast.Call):
            kind = _check_kind(n, fn.module.names)
            if kind:
                found.append((n, _split_check(n, kind)))
    return found


def _inputs(fn: _Function) -> set[str]:
    """Names whose values flow into student calls: what the student is given anyway.

    Seeds: the arguments of every student call, and bindings marked `# withhold: input`.
    Then, until nothing changes: the names a binding of an input is computed from; what is
    written into an input or into a parameter (`x[i] = v`, `p.grad = g`: the caller's objects,
    which it gives to student code); the body of a nested function that is an input (a
    closure handed to student code); and the elements of an input a loop walks over (not of
    a literal: in a hidden file each element of a literal table must itself be an input).
    """
    found: set[str] = set()
    for n in ast.walk(fn.node):
        if isinstance(n, ast.Call) and fn.is_student_call(n):
            for part in [*n.args, *(k.value for k in n.keywords)]:
                found |= _names_in(part)
    params = {name for name, bindings in fn.bindings.items() if any(b.kind == "param" for b in bindings)}
    for name, bindings in fn.bindings.items():
        if any(b.marked_input for b in bindings):
            found.add(name)
    changed = True
    while changed:
        changed = False
        for name in list(found):
            for b in fn.bindings_of(name) or []:
                if b.value is not None and b.kind in ("assign", "unpack", "mutate", "loop", "with", "def"):
                    new = _names_in(b.value) - found
                    if new:
                        found |= new
                        changed = True
        for name, bindings in fn.bindings.items():
            if name in found or name in fn.globals:
                continue
            loops = [b for b in bindings if b.kind == "loop"]
            if loops and all(not _is_literal(b.value) and _names_in(b.value) & (found | params) for b in loops):
                found.add(name)
                changed = True
        # a record of inputs: `dense = Dense(); dense.append(seq, k, v)` with inputs only
        for name in _records_of(fn, found | params) - found:
            found.add(name)
            changed = True
        # x[i] = v and x.attr = v where x is an input or a parameter: v is part of the input
        for n in ast.walk(fn.node):
            if isinstance(n, (ast.Assign, ast.AugAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for target in targets:
                    if isinstance(target, (ast.Subscript, ast.Attribute)):
                        root = _root(target)
                        if isinstance(root, ast.Name) and root.id in found | params:
                            new = (_names_in(n.value) | _names_in(target)) - found
                            if new:
                                found |= new
                                changed = True
    return found


def _selector_names(expr: ast.AST) -> set[str]:
    """Names that occur in `expr` only as subscript keys or indexes (`want[i]`, `data[f"{k}_loss"]`)."""
    inside, outside = set(), set()
    slices = {id(n) for s in ast.walk(expr) if isinstance(s, ast.Subscript) for n in ast.walk(s.slice)}
    for n in ast.walk(expr):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            (inside if id(n) in slices else outside).add(n.id)
    return inside - outside


def _records_of(fn: _Function, inputs: set[str]) -> set[str]:
    """Names of containers the test only fills with inputs (`given.append(k)`, `log[i].extend(xs)`):
    made empty (a literal, or a call with literal arguments) and changed only by method calls
    whose every argument is an input name (or a literal), never by a computation."""
    uses: dict[str, list[ast.Call]] = {}
    for n in ast.walk(fn.node):
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Attribute):
            root = _root(n.value.func.value)
            if isinstance(root, ast.Name):
                uses.setdefault(root.id, []).append(n.value)
    found = set()
    for name, calls in uses.items():
        bindings = [b for b in fn.bindings_of(name) or [] if b.kind != "fill"]
        if not bindings or any(b.kind not in ("assign", "unpack") or b.value is None for b in bindings):
            continue
        if not all(_is_literal(b.value) or isinstance(b.value, (ast.ListComp, ast.DictComp)) and _is_literal(
                b.value.elt if isinstance(b.value, ast.ListComp) else b.value.value) or isinstance(b.value, ast.Call)
                and not b.value.args and not b.value.keywords for b in bindings):
            continue
        arguments = [a for c in calls for a in [*c.args, *(k.value for k in c.keywords)]]
        def an_input(a):  # an input, or an element of one (`examples[k]`), as it is
            while isinstance(a, ast.Subscript):
                a = a.value
            return isinstance(a, ast.Name) and a.id in inputs

        if arguments and all(_is_literal(a) or an_input(a) for a in arguments):
            found.add(name)
    return found


def _function_problems(fn: _Function) -> list[Problem]:
    problems: list[Problem] = []
    names = fn.module.names
    checks = _check_calls(fn)
    stripped_ids: set[int] = set()
    inputs = _inputs(fn)
    hidden = fn.module.hidden
    for call, parts in checks:
        if parts.starred:
            problems.append(Problem(call.lineno, f"check.{parts.kind}(*...): the sandbox's rewrite must see which "
                                                 f"argument is the expected value; pass them one by one"))
            continue
        for options in parts.double_starred:
            if not (isinstance(options, ast.Name) and fn.bindings_of(options.id) is None
                    and fn.module_category(options.id) <= frozenset("LN")):
                problems.append(Problem(call.lineno, f"check.{parts.kind}(**{ast.unparse(options)}): only a "
                                                     f"module-level dict of literal options (tolerances) may be "
                                                     f"passed with **; the sandbox drops it"))
        for which, expr in parts.stripped:
            for n in ast.walk(expr):
                stripped_ids.add(id(n))
            problems += _crossings(fn, expr, f"in check.{parts.kind}'s {which}")
            if which == "about":
                continue  # the student value the message is about
            label = which in ("hint", "what", "reason")  # labels: literals are fine, computations are not
            selectors = _selector_names(expr)
            for name in sorted(_names_in(expr)):
                if label and _label_of_inputs(fn, name, inputs):
                    continue
                if name in selectors and fn.name_category(name) <= frozenset("LPNSF"):
                    continue  # `want_grads[name]`: a key or index that only picks among expected values
                if name in _expected_parameters(fn.module).get(fn.node.name, ()):
                    continue  # a helper's expected parameter: its callers' arguments are checked instead
                problem = _name_problem(fn, name, inputs, hidden and not label, f"check.{parts.kind}'s {which}")
                if problem:
                    problems.append(Problem(expr.lineno, problem))
        for kept in parts.kept:
            if parts.kind != "raises":
                for name in sorted(_names_in(kept)):
                    if name in inputs or fn.is_student_handle(name) or "O" not in fn.name_category(name):
                        continue
                    problems.append(Problem(kept.lineno, (
                        f"`{name}` is computed in the test and used in check.{parts.kind}'s first argument, which "
                        f"the sandbox evaluates: that argument is the student's value alone; put what the test "
                        f"computes into the expected (second) argument, or compute it with oracle(...)")))
            if fn.is_withheld(kept) and parts.kind != "raises":
                problems.append(Problem(kept.lineno, f"an expected (withheld) value is the first argument of "
                                                     f"check.{parts.kind}: the student's value goes first, the "
                                                     f"expected one second"))
    for call in ast.walk(fn.node):
        if _is_oracle_call(call, names):
            for part in [*call.args[1:], *(k.value for k in call.keywords)]:
                for name in sorted(_names_in(part)):
                    problem = _name_problem(fn, name, inputs, hidden, "the arguments of oracle(...)")
                    if problem:
                        problems.append(Problem(part.lineno, problem))
    if fn.node.name in fn.module.student_helpers and fn.node.name not in fn.module.glue:
        problems += _helper_returns(fn)
    problems += _expected_handed_to_helpers(fn, inputs, hidden)
    oracle_arg_ids = {id(n) for c in ast.walk(fn.node) if _is_oracle_call(c, names) for n in ast.walk(c)}
    if fn.node.name not in fn.module.helpers:  # an oracle helper's body never runs in the sandbox
        problems += _withheld_uses(fn, stripped_ids | oracle_arg_ids)
    return problems


def _expected_parameters(module: _Module) -> dict[str, list[str]]:
    """Module-level helpers that pass a parameter on as a check's expected value (`def same(out,
    want): check.close(out, want)`), with those parameters: a caller's argument there is an
    expected value, which no rewrite removes from the sandbox."""
    if hasattr(module, "_expected_parameters"):
        return module._expected_parameters
    module._expected_parameters = found = {}
    called = {n.func.id for n in ast.walk(module.tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    for name, node in module.functions.items():
        if name.startswith("test_") or name not in called:
            continue  # a test's parameters come from pytest, not from callers here
        fn = _Function(module, node)
        params = [a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]]
        inputs = _inputs(fn)
        expected = set()
        for _, parts in _check_calls(fn):
            for which, expr in parts.stripped:
                if which not in ("hint", "what", "reason", "about", "message"):
                    expected |= _names_in(expr) & set(params)
        expected -= inputs
        if expected:
            found[name] = [p for p in params if p in expected]
    return found


def _expected_handed_to_helpers(fn: _Function, inputs: set[str], hidden: bool) -> list[Problem]:
    problems = []
    helpers = _expected_parameters(fn.module)
    for call in ast.walk(fn.node):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in helpers
                and fn.bindings_of(call.func.id) is None):
            continue
        node = fn.module.functions[call.func.id]
        params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
        given = {params[i]: a for i, a in enumerate(call.args) if i < len(params) and not isinstance(a, ast.Starred)}
        given.update({k.arg: k.value for k in call.keywords if k.arg})
        for param in helpers[call.func.id]:
            arg = given.get(param)
            if arg is None or _is_oracle_call(arg, fn.module.names):
                continue
            where = f"`{call.func.id}`'s `{param}` (which it checks against)"
            root = fn.chain_root(arg)
            a_part_of_an_input = isinstance(root, ast.Name) and root.id in inputs and not any(
                isinstance(n, ast.Call) for n in _chain(arg, root))
            if not isinstance(arg, ast.Name) and "O" in fn.category(arg) and not a_part_of_an_input:
                problems.append(Problem(arg.lineno, f"the expected value handed to {where} is computed here, in the "
                                                    f"sandbox: pass oracle(...) instead"))
                continue
            for name in sorted(_names_in(arg)):
                problem = _name_problem(fn, name, inputs, hidden, where)
                if problem:
                    problems.append(Problem(arg.lineno, problem))
    return problems


def _label_of_inputs(fn: _Function, name: str, inputs: set[str]) -> bool:
    """A hint or label worked out from inputs, parameters and literals alone (`"a" if step < w else "b"`)."""
    bindings = fn.bindings_of(name)
    if not bindings:
        return False
    for b in bindings:
        if b.kind == "param" or b.kind == "loop" and _is_counter(b.value):
            continue
        if b.value is None or b.kind not in ("assign", "loop"):
            return False
        for other in _names_in(b.value):
            if other in inputs or other == name:
                continue
            if not fn.name_category(other) <= frozenset("SFNLP"):
                return False
    return True


def _drawn_parameters(fn: _Function) -> set[str]:
    """Parameters a `@given(...)` decorator draws (by keyword, or positionally from the last one)."""
    node = fn.node
    params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    found = set()
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and (_dotted(decorator.func) or [""])[-1] == "given":
            found |= {k.arg for k in decorator.keywords if k.arg}
            if decorator.args:
                found |= set(params[-len(decorator.args):])
    return found


def _filled_by_reference(fn: _Function) -> set[str]:
    """Names handed directly to a reference call: what they hold when checked, the reference
    wrote into them (in the sandbox, where the reference is withheld, they keep their input)."""
    found = set()
    for n in ast.walk(fn.node):
        if isinstance(n, ast.Call):
            root = _root(n.func)
            if isinstance(root, ast.Name) and fn.is_reference_handle(root.id):
                found |= {a.id for a in n.args if isinstance(a, ast.Name)}
                found |= {k.value.id for k in n.keywords if isinstance(k.value, ast.Name)}
    return found


def _helper_returns(fn: _Function) -> list[Problem]:
    """A helper that calls student code returns the student's results only: anything it
    computes itself beside them would be an expected value computed in the sandbox."""
    problems = []
    nested = [n for n in ast.walk(fn.node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
              and n is not fn.node]
    inner = {id(r) for n in nested for r in ast.walk(n)}
    inputs = _inputs(fn)
    for node in ast.walk(fn.node):
        if isinstance(node, ast.Return) and node.value is not None and id(node) not in inner \
                and not fn.module.marked(node.lineno):
            parts = node.value.elts if isinstance(node.value, (ast.Tuple, ast.List)) else [node.value]
            for part in parts:
                inner_parts = part.elts if isinstance(part, (ast.Tuple, ast.List)) else [part]
                for item in inner_parts:
                    if isinstance(item, ast.Name) and item.id in inputs:
                        continue  # what the student's code was given (a record of the inputs)
                    category = fn.category(item)
                    if "O" in category or "W" in category:
                        problems.append(Problem(item.lineno, (
                            f"`{fn.node.name}` calls student code and also returns `{ast.unparse(item)[:60]}`, "
                            f"which it computes itself: in the sandbox that is an expected value beside the "
                            f"student's code. Return only the student's results and compute the expected ones in "
                            f"a separate function called through oracle(...)")))
    return problems


def _name_problem(fn: _Function, name: str, inputs: set[str], hidden: bool, where: str) -> str | None:
    if name in inputs:
        return None
    if name == WITHHELD_NAME or name in fn.module.names.oracle:
        return None
    bindings = fn.bindings_of(name)
    category = fn.name_category(name)
    if fn.is_student_handle(name):
        return None  # reported as a crossing
    if category <= frozenset("WSFN"):
        return None
    if category & frozenset("WSF") and category <= frozenset("WSFNLP"):
        return None  # e.g. a literal empty container the test fills with student results
    if name in _filled_by_reference(fn):
        return None  # `theirs = dict(start); ref.get_pair_counts(ids, theirs)`: the reference fills it in
    fix = ("wrap the computation in oracle(...) (a helper function for several lines: "
           "`expected = oracle(torch_fn, inputs...)`), or write it inline in the check")
    if "O" in category:
        where_bound = f" (bound on line {bindings[0].line})" if bindings else ""
        return (f"`{name}`{where_bound} is used in {where} but is computed in the test itself, so the sandbox "
                f"computes it beside the student's code: {fix}")
    if not hidden:
        return None  # a parameter or literal of a public test: the student has the file
    if category <= frozenset("PN") and name in _drawn_parameters(fn):
        return None  # drawn by hypothesis (`@given(final=st.booleans())`): no value written in the file
    kind = "a parameter" if "P" in category else "a literal"
    return (f"`{name}` is {kind} of this hidden test used in {where}: literals of a hidden test file are in the "
            f"sandbox, beside the student's code. Compute the expected value from the reference or with "
            f"oracle(...) instead (or give the value to the student's code too if it is an input)")


def _withheld_uses(fn: _Function, allowed: set[int]) -> list[Problem]:
    """Withheld values only go to checks or into other withheld values."""
    problems: list[Problem] = []
    withheld = {name for name in fn.bindings if fn.bindings_of(name) and "W" in fn.name_category(name)}
    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(fn.node):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    reported: set[int] = set()

    def binding_value(node: ast.AST) -> bool:
        """`node` is (inside) the value of an assignment to a name: a withheld chain is fine there."""
        child, parent = node, parents.get(id(node))
        while parent is not None:
            if isinstance(parent, (ast.Attribute, ast.Subscript, ast.BinOp, ast.UnaryOp, ast.Compare)) \
                    or (isinstance(parent, ast.Call) and parent.func is child):
                child, parent = parent, parents.get(id(parent))
                continue
            if isinstance(parent, (ast.Tuple, ast.List)) and isinstance(parents.get(id(parent)), ast.Assign):
                child, parent = parent, parents.get(id(parent))
                continue
            if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and parent.value is child:
                targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
                if any(isinstance(t, (ast.Tuple, ast.List)) for t in targets) and not isinstance(child, ast.Tuple):
                    problems.append(Problem(parent.lineno, "an expected (withheld) value is unpacked: in the sandbox "
                                                           "it is a placeholder, which cannot be unpacked; bind it to "
                                                           "one name and index it (`want[0]`)"))
                return True
            if isinstance(parent, ast.Call) and child is not parent.func:
                dotted = _dotted(parent.func) or []
                if isinstance(parents.get(id(parent)), (ast.For, ast.comprehension)) \
                        and parents[id(parent)].iter is parent and dotted and dotted[-1] in LOOP_ONLY:
                    return loop_over(parents[id(parent)])
                return False
            if isinstance(parent, (ast.For, ast.comprehension)) and parent.iter is child:
                return loop_over(parent)
            return False
        return False

    def loop_over(loop: ast.AST) -> bool:
        """A loop over a withheld value runs zero times in the sandbox: no student code in it."""
        body = loop.body if isinstance(loop, ast.For) else []
        for statement in body:
            for n in ast.walk(statement):
                if id(n) in allowed:
                    continue
                if isinstance(n, ast.Call) and fn.is_student_call(n) or isinstance(n, ast.Name) and (
                        fn.is_student_handle(n.id) or fn.student_name(n.id)) and isinstance(n.ctx, ast.Load):
                    problems.append(Problem(loop.lineno, "a loop over an expected (withheld) value reaches student "
                                                         "code: in the sandbox the placeholder is empty and the loop "
                                                         "never runs, so those calls would not be recorded. Loop over "
                                                         "the inputs (or indices) and index the expected value"))
                    return True
        return True

    for n in ast.walk(fn.node):
        if id(n) in allowed or id(n) in reported:
            continue
        is_withheld_name = isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and (
            n.id in withheld or fn.is_reference_handle(n.id))
        is_oracle = _is_oracle_call(n, fn.module.names)
        if not (is_withheld_name or is_oracle):
            continue
        if isinstance(n, ast.Name):
            # want.load_state_dict(weights) as a statement: absorbed by the placeholder in the sandbox
            parent, top = parents.get(id(n)), n
            while parent is not None and (isinstance(parent, (ast.Attribute, ast.Subscript))
                                          or isinstance(parent, ast.Call) and parent.func is top):
                top, parent = parent, parents.get(id(parent))
            if top is not n and isinstance(parent, ast.Expr):
                given = [c for c in ast.walk(top) if isinstance(c, ast.Call) for c in [*c.args, *(k.value for k in c.keywords)]]
                if any(fn.is_student_value(g) or any(isinstance(m, ast.Name) and (fn.student_name(m.id)
                       or fn.is_student_handle(m.id)) for m in ast.walk(g)) for g in given):
                    problems.append(Problem(n.lineno, f"student values go into the expected side (`{ast.unparse(top)[:80]}`): "
                                                      f"a degenerate student (all-zero weights, say) then agrees with "
                                                      f"itself. Create the weights in the test (seeded) and load the "
                                                      f"same ones into both"))
                continue
        if binding_value(n):
            continue
        if isinstance(n, ast.Name) and fn.is_reference_handle(n.id):
            parent, top = parents.get(id(n)), n
            while parent is not None and (isinstance(parent, (ast.Attribute, ast.Subscript))
                                          or isinstance(parent, ast.Call) and parent.func is top):
                top, parent = parent, parents.get(id(parent))
            if id(top) in allowed or binding_value(top):
                continue
        reported.add(id(n))
        problems.append(Problem(n.lineno, _misuse(n.id if isinstance(n, ast.Name) else "oracle(...)")))
    return problems


def _misuse(what: str) -> str:
    return (f"`{what}` is an expected value (withheld in the sandbox, where it is a placeholder) used outside a "
            f"check: it may only be indexed, read or combined into another expected value and given to "
            f"check.close / check.equal / check.that; never to a library function, student code, an `if` "
            f"or a loop that calls student code. Compute what you need inside the oracle")


def student_calls(source: str) -> list[str]:
    """The calls on student handles in a test file, as source text (to compare before and after)."""
    tree = ast.parse(source)
    module = _Module(tree, source, None, False)
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            root = _root(n.func)
            if isinstance(root, ast.Name) and root.id in module.student_handles:
                found.append(ast.unparse(n.func))
    return sorted(found)
