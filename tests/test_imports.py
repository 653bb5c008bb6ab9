"""The harness's modules import each other in one direction only (issue 16): the import
graph of graders/ has no cycle. Imports under `if TYPE_CHECKING:` are type hints, never run,
and do not count; imports inside functions do."""

import ast
from pathlib import Path

GRADERS = Path(__file__).resolve().parents[1] / "graders"


def _runtime_imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("graders."):
            found.add(node.module.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in GRADERS.glob("*.py")}
    return {p.stem: _runtime_imports(ast.parse(p.read_text())) & modules - {p.stem}
            for p in GRADERS.glob("*.py")}


def test_the_harness_has_no_import_cycle():
    graph = import_graph()
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle in graders/: " + " -> ".join(path + [module])
        state[module] = "open"
        for dependency in sorted(graph[module]):
            visit(dependency, path + [module])
        state[module] = "done"
        order.append(module)

    for module in sorted(graph):
        visit(module, [])
    assert len(order) == len(graph)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    monkeypatch.setitem(globals(), "GRADERS", tmp_path)
    graph = import_graph()
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set()}
    try:
        test_the_harness_has_no_import_cycle()
    except AssertionError as exc:
        assert "a -> b -> a" in str(exc)
    else:
        raise AssertionError("the cycle a -> b -> a was not found")
