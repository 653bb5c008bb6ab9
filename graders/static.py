"""Forbidden APIs found by reading the submission's source (the grader never runs it).

The run-time guard catches forbidden calls inside the sandbox; this scan is the grader's
own, independent check. A name from the kata's `[forbidden]` list ("*" entries anywhere in
the module, per-function entries inside that function or class) appearing as a name, an
attribute or a string (`getattr(F, "scaled_dot_product_attention")`) costs every test that
calls the function its points.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path


def short_names(entries: tuple[str, ...]) -> set[str]:
    names = set()
    for entry in entries:
        name = entry.removeprefix("aten::").split(".")[-1]
        names.add(name.rstrip("*") + ("*" if name.endswith("*") else ""))
    return names


def _mentions(tree: ast.AST, names: set[str]) -> str | None:
    exact = {n for n in names if not n.endswith("*")}
    prefixes = tuple(n[:-1] for n in names if n.endswith("*"))
    for node in ast.walk(tree):
        # Attribute access (F.softmax, x.softmax), imports from libraries, and strings
        # (getattr(F, "...")) — not bare names, which may be the kata's own functions.
        found = None
        if isinstance(node, ast.Attribute):
            found = node.attr
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("torch", "numpy", "transformers"):
            found = next((a.name for a in node.names if a.name in exact or (prefixes and a.name.startswith(prefixes))), None)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
            found = node.value
        if found and (found in exact or (prefixes and found.startswith(prefixes))):
            return found
    return None


@functools.lru_cache(maxsize=256)
def _parse(path: Path, mtime: float) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def violations(path: Path, forbidden: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """{function or class name, or "*": the forbidden name it mentions}."""
    if not path.is_file():
        return {}
    tree = _parse(path, path.stat().st_mtime)
    if tree is None:
        return {}
    found = {}
    everywhere = short_names(forbidden.get("*", ()))
    hit = _mentions(tree, everywhere) if everywhere else None
    if hit:
        found["*"] = hit
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in forbidden:
            names = short_names(forbidden[node.name])
            body = ast.Module(body=node.body, type_ignores=[])
            hit = _mentions(body, names)
            if hit:
                found[node.name] = hit
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
    return (f"FORBIDDEN: {module.implementation.display_path(module._dotted)} mentions `{hit}`, which is not "
            f"allowed in {kata.id} (found by reading your source; `{function}` costs its tests their points).")
