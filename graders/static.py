"""Forbidden APIs found by reading the submission's source (the grader never runs it).

The run-time guard catches forbidden calls inside the sandbox; this scan is the grader's
own, independent check, and it must never accuse a correct solution. So it resolves names
the way Python would: import aliases (`import torch.nn.functional as F`) are followed, and a
use counts only when it spells a forbidden dotted name in full — `F.softmax`,
`torch.nn.MultiheadAttention`, `getattr(F, "scaled_dot_product_attention")`,
`from torch.autograd import grad`, `torch.ops.aten._softmax`. Tensor methods
(`torch.Tensor.softmax`) cannot be told apart from a student's own methods by reading, so
they are left to the run-time guard. "*" entries apply to the whole module, per-function
entries to that function's or class's body.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
from pathlib import Path


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


@functools.lru_cache(maxsize=256)
def _parse(path: Path, mtime: float) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def violations(path: Path, forbidden: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """{function or class name, or "*": the forbidden API its source names}."""
    if not path.is_file() or path.is_symlink():
        return {}
    tree = _parse(path, path.stat().st_mtime)
    if tree is None:
        return {}
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
    return found


def problem_for(module, name: str) -> str | None:
    """The failure for a replayed call to `name` (e.g. "softmax", "GPT.forward"), if any."""
    kata = module.kata
    if not kata.forbidden:
        return None
    found = violations(module.implementation.path_of(module._dotted), kata.forbidden)
    function = name.split(".")[0]
    hit = found.get(function) or found.get("*")
    if hit is None:
        return None
    return (f"FORBIDDEN: {module.implementation.display_path(module._dotted)} uses `{hit}`, which is not "
            f"allowed in {kata.id} (found by reading your source; every test that calls `{function}` "
            f"loses its points).")
