"""Forbidden APIs found by reading the submission's source (the grader never runs it).

The run-time guard catches forbidden calls inside the sandbox; this scan is the grader's
own, independent check, and it must never accuse a correct solution. It looks for two things.

Forbidden names. The scan resolves names the way Python would: import aliases
(`import torch.nn.functional as F`) are followed, and a use counts only when it spells a
forbidden dotted name in full — `F.softmax`, `torch.nn.MultiheadAttention`,
`getattr(F, "scaled_dot_product_attention")`, `from torch.autograd import grad`,
`torch.ops.aten._softmax`. Tensor methods (`torch.Tensor.softmax`) cannot be told apart from
a student's own methods by reading, so they are left to the run-time guard. "*" entries apply
to the whole module, per-function entries to that function's or class's body.

Dynamic access. Reading only works if the names are written out. So, in a kata with any
forbidden entry at all ("*" or per-function), the scan also reports every construct that
could hide a forbidden call from it or from the run-time guard. That is a class, not a list:

- a name the scan cannot read: `getattr`/`setattr`/`delattr` with a computed name (a
  constant string is fine: it is resolved like `F.name`), those builtins passed around as
  values, `__getattribute__`/`__getattr__` called by hand, the library helpers that turn a
  string into an object (`importlib`, `__import__`, `operator.attrgetter`, `pickle`, ...),
  and a module that holds a forbidden or dynamic API (`torch`, `F`, `sys`) stored or passed
  on as a value (`m = F`, `self.t = torch`, `helper(F)`): the scan follows a module only
  through its import name (nor bare names after `from torch import *`). Calling it, reading
  its attributes and `F is None` are fine;
- a namespace read as a dict: `vars()`, `globals()`, `locals()`, `__dict__`, `sys.modules`,
  `__builtins__`, function and frame internals (`__globals__`, `__code__`, `f_globals`, ...)
  and class-graph walks (`__subclasses__`), `gc.get_objects`;
- code built from text or from outside Python: `eval`, `exec`, `compile`, `ctypes`, ...;
- work on another thread or process (`threading`, `concurrent.futures`, `multiprocessing`,
  `subprocess`, `os.fork`, ...): the run-time guard is per thread;
- rewriting the grader or torch at run time: assigning or deleting an attribute of an
  imported module or class (`torch.softmax = ...`, `setattr(F, ...)`), importing the harness
  (`graders`, `pytest`, `unittest.mock`, `builtins`), tracing hooks, and private torch
  internals (`torch._C`, `torch.overrides`, `torch.library`), which can switch the guard off.

Choices, so that a correct solution is never accused:
- computed names on `self` (`getattr(self, f"layer{i}")`, `setattr(self, name, p)`,
  `vars(self)`, `self.__dict__`, `object.__setattr__(self, ...)`, `super().__getattr__(...)`)
  are allowed: student classes use them, and they only reach the student's own object. A
  method called with a module as `self` (`Box.get(F, name)`) passes the module as a value,
  which is reported. Computed names on anything else are reported, even a walk down the
  student's own submodules (`obj = getattr(obj, part)`): `self.get_submodule(path)`,
  `self.get_parameter(path)` or `dict(self.named_parameters())` do that without reaching
  outside the model.
- the whole module is scanned, whatever the forbidden entries name: a helper can serve any
  function. A finding is reported under the top-level function or class that contains it,
  or "*" for module-level code; `problem_for` fails a call when the function called can reach
  that definition by name (or when the finding is at module level).
- katas without any forbidden entry (`"*" = []`) are not scanned for dynamic access at all:
  there is nothing to hide, and their solutions may use `getattr(module, name)` freely.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
from dataclasses import dataclass, field
from pathlib import Path

DYNAMIC = "dynamic access: "

# Why each construct is reported (the finding names the construct, then the reason).
_NAMES = "reaches an object by a name the scan cannot read"
_NAMESPACE = "reads a namespace as a dict"
_CODE = "runs code the scan cannot read"
_THREADS = "runs work on another thread or process, where the guard does not look"
_REWRITE = "can rewrite the grader or torch at run time"
_LATER = "runs code later, outside the call the guard watches"

# Modules and functions, as dotted names (a module also covers everything inside it).
_DYNAMIC_APIS = {
    "importlib": _NAMES, "imp": _NAMES, "pkgutil": _NAMES, "pydoc": _NAMES, "zipimport": _NAMES,
    "pickle": _NAMES, "_pickle": _NAMES, "copyreg": _NAMES, "shelve": _NAMES, "dill": _NAMES,
    "cloudpickle": _NAMES, "operator.attrgetter": _NAMES, "operator.methodcaller": _NAMES,
    "inspect.getattr_static": _NAMES, "inspect.getmembers": _NAMES,
    "inspect.getmembers_static": _NAMES, "inspect.unwrap": _NAMES, "string.Formatter": _NAMES,
    "typing.get_type_hints": _NAMES,
    "sys.modules": _NAMESPACE, "sys.meta_path": _NAMESPACE, "sys.path_hooks": _NAMESPACE,
    "sys.path_importer_cache": _NAMESPACE, "sys._getframe": _NAMESPACE,
    "sys._current_frames": _NAMESPACE, "inspect.currentframe": _NAMESPACE,
    "inspect.stack": _NAMESPACE, "inspect.trace": _NAMESPACE, "inspect.getouterframes": _NAMESPACE,
    "inspect.getinnerframes": _NAMESPACE, "gc.get_objects": _NAMESPACE,
    "gc.get_referrers": _NAMESPACE, "gc.get_referents": _NAMESPACE, "gc.garbage": _NAMESPACE,
    "code": _CODE, "codeop": _CODE, "runpy": _CODE, "marshal": _CODE, "types.CodeType": _CODE,
    "ctypes": _CODE, "_ctypes": _CODE, "cffi": _CODE, "torch.utils.cpp_extension": _CODE,
    "threading": _THREADS, "_thread": _THREADS, "concurrent": _THREADS,
    "multiprocessing": _THREADS, "subprocess": _THREADS, "asyncio": _THREADS, "pty": _THREADS,
    "os.system": _THREADS, "os.popen": _THREADS, "os.fork": _THREADS, "os.forkpty": _THREADS,
    "os.exec*": _THREADS, "os.spawn*": _THREADS, "os.posix_spawn*": _THREADS,
    "torch.multiprocessing": _THREADS, "torch.jit.fork": _THREADS,
    "builtins": _REWRITE, "__builtin__": _REWRITE, "graders": _REWRITE, "conftest": _REWRITE,
    "pytest": _REWRITE, "_pytest": _REWRITE, "unittest.mock": _REWRITE, "mock": _REWRITE,
    "sys.settrace": _REWRITE, "sys.setprofile": _REWRITE, "sys.addaudithook": _REWRITE,
    "sys.monitoring": _REWRITE, "torch.overrides": _REWRITE, "torch.library": _REWRITE,
    # Frames reached through tracebacks, and code that runs later, outside the guarded call:
    "traceback": _NAMESPACE, "inspect.getargvalues": _NAMESPACE, "inspect.getframeinfo": _NAMESPACE,
    "gc.callbacks": _LATER, "weakref": _LATER,
    "atexit": _LATER, "signal": _LATER, "sys.excepthook": _LATER, "sys.unraisablehook": _LATER,
    "threading.excepthook": _LATER,
    # The process layer under os, and loaders that run whatever a pickle names:
    "posix": _THREADS, "nt": _THREADS, "_posixsubprocess": _THREADS, "torch.load": _CODE,
    "numpy.load": _CODE, "torch.serialization": _CODE, "joblib": _CODE,
}

# Builtins that read or run names as data. getattr & co. are fine when called with a constant
# name; passed around as values (`reduce(getattr, names, F)`) they are not.
_DYNAMIC_BUILTINS = {"eval": _CODE, "exec": _CODE, "compile": _CODE, "__import__": _NAMES,
                     "globals": _NAMESPACE, "locals": _NAMESPACE, "vars": _NAMESPACE,
                     "__builtins__": _NAMESPACE, "__loader__": _NAMES, "__spec__": _NAMES}
_ATTRIBUTE_BUILTINS = ("getattr", "setattr", "delattr")

# Attributes that open an object's namespace, its code, or its frame, whatever the object.
_NAMESPACE_ATTRS = {
    "__dict__", "__globals__", "__builtins__", "__closure__", "__code__", "__subclasses__",
    "__self__", "__wrapped__", "__loader__", "__spec__", "__import__", "__reduce__",
    "__reduce_ex__", "__defaults__", "__kwdefaults__",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "gi_frame",
    "cr_frame", "ag_frame", "__traceback__", "tb_next", "__del__",
}
# Attribute access by name, called by hand: allowed on the student's own object only.
_ACCESSOR_DUNDERS = {"__getattribute__", "__getattr__", "__setattr__", "__delattr__"}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted module or object it was imported as."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    names[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def _is_forbidden(dotted: str, entries: tuple[str, ...]) -> str | None:
    for entry in entries:
        if entry.startswith("aten::"):
            pattern = "torch.ops.aten." + entry.removeprefix("aten::")
            if fnmatch.fnmatchcase(dotted, pattern) or fnmatch.fnmatchcase(dotted, pattern + ".*"):
                return entry
        elif not entry.startswith("torch.Tensor.") and dotted == entry:
            return entry
    return None


def _mentions(body: list[ast.stmt], aliases: dict[str, str], entries: tuple[str, ...]) -> str | None:
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        candidate = None
        if isinstance(node, ast.Attribute):
            candidate = _dotted(node, aliases)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                hit = _is_forbidden(f"{node.module}.{a.name}", entries)
                if hit:
                    return hit
        elif isinstance(node, ast.Import):
            for a in node.names:
                hit = _is_forbidden(a.name, entries)
                if hit:
                    return hit
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            base = _dotted(node.args[0], aliases) if not isinstance(node.args[0], ast.Name) else aliases.get(node.args[0].id)
            candidate = f"{base}.{node.args[1].value}" if base else None
        if candidate:
            hit = _is_forbidden(candidate, entries)
            if hit:
                return hit
    return None


# --- dynamic access ----------------------------------------------------------------------


@dataclass
class _Reader:
    """What the dynamic-access scan knows about one module while it walks a statement."""

    aliases: dict[str, str]  # local name -> the dotted module or object it was imported as
    bound: set[str]  # names the module imports or defines: its own `compile` is not the builtin
    namespaces: frozenset[str]  # modules the scan must follow by their import name
    excused: set[int] = field(default_factory=set)  # nodes a parent node found harmless

    def dotted(self, node: ast.AST) -> str | None:
        return _dotted(node, self.aliases)

    def builtin(self, node: ast.AST, names) -> bool:
        return isinstance(node, ast.Name) and node.id in names and node.id not in self.bound


def _namespaces(forbidden: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """The modules holding a forbidden or dynamic API: `torch`, `torch.nn.functional`, `sys`, ..."""
    dotted = [e for entries in forbidden.values() for e in entries if not e.startswith("torch.Tensor.")]
    dotted = [f"torch.ops.aten.{e.removeprefix('aten::')}" if e.startswith("aten::") else e for e in dotted]
    parts = [name.split(".") for name in dotted + list(_DYNAMIC_APIS)]
    return frozenset(".".join(p[:i]) for p in parts for i in range(1, len(p)))


def _bound_names(tree: ast.Module, aliases: dict[str, str]) -> set[str]:
    """Imported names and top-level defs: `from re import compile` or the student's own `def
    compile` is not the builtin. Plain assignments do not count (`eval = eval` is the builtin)."""
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return (set(aliases) | defined) - set(_ATTRIBUTE_BUILTINS) - {"__builtins__", "__import__"}


def _dynamic_api(dotted: str) -> str | None:
    """Why the module or function `dotted` is reported, or None."""
    for pattern, why in _DYNAMIC_APIS.items():
        if fnmatch.fnmatchcase(dotted, pattern) or fnmatch.fnmatchcase(dotted, pattern + ".*"):
            return why
    parts = dotted.split(".")
    if parts[0] == "torch" and parts[1:2] != ["ops"] and any(
            p.startswith("_") and not p.endswith("__") for p in parts[1:]):
        return _REWRITE  # torch._C, torch.utils._python_dispatch: they can turn the guard off
    return None


def _is_self(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_super(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _attribute_call(call: ast.Call, reader: _Reader) -> str | None:
    """getattr/setattr/delattr(target, name): fine on `self`, or with a written-out name."""
    name, args = call.func.id, call.args
    target = args[0] if args else None
    if _is_self(target):
        return None
    if len(args) < 2 or not _is_text(args[1]):
        return f"{name} with a computed name: {_NAMES}"
    if name != "getattr" and reader.dotted(target):
        return f"{name} on `{reader.dotted(target)}`: {_REWRITE}"
    reader.excused.add(id(target))  # getattr(F, "gelu") reads like F.gelu
    return None


def _call_finding(call: ast.Call, reader: _Reader) -> str | None:
    """A call, judged with its callee and first argument; marks the harmless parts as excused."""
    func, first = call.func, (call.args[0] if call.args else None)
    if isinstance(func, ast.Name) and not reader.builtin(func, _DYNAMIC_BUILTINS):
        reader.excused.add(id(func))  # calling an imported function is not passing it around
    if reader.builtin(func, ("vars",)) and _is_self(first):
        reader.excused.add(id(func))  # the student's own object
    if reader.builtin(func, ("hasattr",)) and first is not None:
        reader.excused.add(id(first))  # a yes or no: it reaches nothing
    if isinstance(func, ast.Attribute) and func.attr in _ACCESSOR_DUNDERS and (
            _is_self(func.value) or _is_super(func.value) or _is_self(first)):
        reader.excused.add(id(func))  # super().__getattr__(name), object.__setattr__(self, ...)
    if reader.builtin(func, _ATTRIBUTE_BUILTINS):
        return _attribute_call(call, reader)
    return None


def _patched(target: ast.AST, reader: _Reader) -> str | None:
    """`torch.softmax = ...`, `del F.gelu`: an assignment that rewrites an imported module or class."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return next(filter(None, (_patched(t, reader) for t in target.elts)), None)
    if isinstance(target, ast.Attribute) and reader.dotted(target):
        return f"assignment to `{reader.dotted(target)}`: {_REWRITE}"
    return None


def _import_finding(node: ast.Import | ast.ImportFrom, reader: _Reader) -> str | None:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif node.module and node.level == 0:
        if node.module in reader.namespaces and any(a.name == "*" for a in node.names):
            return f"`from {node.module} import *`: {_NAMES}"  # bare names from it cannot be told apart
        names = [f"{node.module}.{a.name}" for a in node.names]
    else:
        return None  # relative imports: the student's own package
    return next((f"import of `{n}`: {_dynamic_api(n)}" for n in names if _dynamic_api(n)), None)


def _name_finding(node: ast.Name, reader: _Reader) -> str | None:
    if id(node) in reader.excused or not isinstance(node.ctx, ast.Load):
        return None
    if reader.builtin(node, _DYNAMIC_BUILTINS):
        return f"`{node.id}`: {_DYNAMIC_BUILTINS[node.id]}"
    if reader.builtin(node, _ATTRIBUTE_BUILTINS):
        return f"`{node.id}` passed as a value: {_NAMES}"
    if reader.aliases.get(node.id) in reader.namespaces:
        return (f"module `{node.id}` stored or passed as a value: the scan follows a module only "
                f"through its import name")
    return None


def _attribute_finding(node: ast.Attribute, reader: _Reader) -> str | None:
    if isinstance(node.value, ast.Name) and node.value.id in reader.aliases:
        reader.excused.add(id(node.value))  # F.gelu: F is read through its import name
    if id(node) in reader.excused:
        return None
    dotted = reader.dotted(node)
    if dotted and _dynamic_api(dotted):
        return f"`{dotted}`: {_dynamic_api(dotted)}"
    if node.attr in _NAMESPACE_ATTRS and not (node.attr == "__dict__" and _is_self(node.value)):
        return f"`.{node.attr}`: {_NAMESPACE}"
    if node.attr in _ACCESSOR_DUNDERS:
        return f"`.{node.attr}` called by hand: {_NAMES}"
    return None


def _node_finding(node: ast.AST, reader: _Reader) -> str | None:
    """What is dynamic about this one node (its parents were looked at first), or None."""
    if isinstance(node, ast.Call):
        return _call_finding(node, reader)
    if isinstance(node, ast.Compare):
        reader.excused.update(map(id, [node.left, *node.comparators]))  # `F is None` passes nothing on
    if isinstance(node, (ast.Assign, ast.Delete)):
        return next(filter(None, (_patched(t, reader) for t in node.targets)), None)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return _patched(node.target, reader)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return _import_finding(node, reader)
    if isinstance(node, ast.Name):
        return _name_finding(node, reader)
    if isinstance(node, ast.Attribute):
        return _attribute_finding(node, reader)
    return None


def _dynamic(stmt: ast.stmt, reader: _Reader) -> str | None:
    """The first dynamic-access construct in one top-level statement, as a finding."""
    for node in ast.walk(stmt):  # breadth first: a node is judged after its parent
        found = _node_finding(node, reader)
        if found:
            return f"{DYNAMIC}{found} (line {node.lineno})"
    return None


def _definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Top-level name -> the statement that defines it (def, class, or assignment)."""
    defined = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defined[name.id] = node
    return defined


@functools.lru_cache(maxsize=256)
def _reachable(tree: ast.Module, name: str) -> frozenset[str]:
    """The top-level names a call to `name` can reach by naming them, `name` included."""
    defined = _definitions(tree)
    seen, todo = {name}, [name]
    while todo:
        node = defined.get(todo.pop())
        for ref in ast.walk(node) if node is not None else ():
            if isinstance(ref, ast.Name) and ref.id in defined and ref.id not in seen:
                seen.add(ref.id)
                todo.append(ref.id)
    return frozenset(seen)


# --- the scan ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parse(path: Path, mtime: float) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _tree(path: Path) -> ast.Module | None:
    if not path.is_file() or path.is_symlink():
        return None
    return _parse(path, path.stat().st_mtime)


def violations(path: Path, forbidden: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """{function or class name, or "*": the forbidden API its source names, or its dynamic access}."""
    tree = _tree(path)
    if tree is None:
        return {}
    return dict(_scan(tree, tuple((k, tuple(v)) for k, v in forbidden.items())))


@functools.lru_cache(maxsize=256)
def _scan(tree: ast.Module, forbidden_items: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, str]:
    """`violations`, once per parsed source and forbidden list (every replayed call asks)."""
    forbidden = dict(forbidden_items)
    aliases = _aliases(tree)
    found = {}
    everywhere = tuple(forbidden.get("*", ()))
    if everywhere:
        hit = _mentions(tree.body, aliases, everywhere)
        if hit:
            found["*"] = hit
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and forbidden.get(node.name):
            hit = _mentions(node.body, aliases, tuple(forbidden[node.name]))
            if hit:
                found[node.name] = hit
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id  # softmax = lambda x, dim=-1: F.softmax(x, dim)
            if forbidden.get(name):
                hit = _mentions([node], aliases, tuple(forbidden[name]))
                if hit:
                    found[name] = hit
    if any(forbidden.values()):
        reader = _Reader(aliases, _bound_names(tree, aliases), _namespaces(forbidden))
        for node in tree.body:
            hit = _dynamic(node, reader)
            if hit:
                named = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                found.setdefault(node.name if named else "*", hit)
    return found


def problem_for(module, name: str) -> str | None:
    """The failure for a replayed call to `name` (e.g. "softmax", "GPT.forward"), if any."""
    kata = module.kata
    if not kata.forbidden:
        return None
    path = module.implementation.path_of(module._dotted)
    found = violations(path, kata.forbidden)
    function = name.split(".")[0]
    where = module.implementation.display_path(module._dotted)
    hit = found.get(function) or found.get("*")
    if hit is None and found:  # a dynamic finding in a helper fails every function that reaches it
        reached = sorted(_reachable(_tree(path), function))
        hit = next((found[n] for n in reached if found.get(n, "").startswith(DYNAMIC)), None)
    if hit is None:
        return None
    if hit.startswith(DYNAMIC):
        return (f"FORBIDDEN: {where} uses {hit}. In katas with forbidden APIs ({kata.id}), write "
                f"attribute and module names out: computed getattr, importlib/__import__, eval/exec, "
                f"namespace dicts (__dict__, vars, globals, sys.modules), threads or processes, and "
                f"patching torch or the grader are not allowed, because the grader cannot check what "
                f"they reach (getattr(self, name) is fine; for your own submodules use "
                f"self.get_submodule(path)). Found by reading your source; every test that calls "
                f"`{function}` loses its points.")
    return (f"FORBIDDEN: {where} uses `{hit}`, which is not "
            f"allowed in {kata.id} (found by reading your source; every test that calls `{function}` "
            f"loses its points).")
