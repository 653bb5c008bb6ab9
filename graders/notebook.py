"""Kata modules as notebook cells, and back (no Jupyter needed to import this module).

A kata's code lives in a week's notebook as *kata cells*: a header cell (imports,
constants) and one cell per function or class of the kata's API, in the stub's order.
Each starts with a marker line, `# kata week2/attention: softmax` (`header` for the
first), which is the cell's identity for every grader: the module `weekN/<kata>.py` is
its cells' bodies (marker line dropped) in that order. Three directions:

- `solution_cells`: stub + reference -> cells an nbgrader source notebook can hold. Each
  cell reads like the stub (signature, docstring, given code); the reference body sits
  between `### BEGIN SOLUTION` / `### END SOLUTION` *inside* the function or method, so
  nbgrader's ClearSolutions leaves exactly the stub's `raise NotImplementedError()`.
  Reference-only helpers (functions, imports, constants, extra methods) go inside one of
  those regions too, after the body (module-level code may follow a function body in the
  same region), so they vanish from the student's copy and no region ever sits at module
  level, where clearing it would leave a module-level `raise`.
- `split_module`: a student's `.py` -> cells (for `kata submit`): each API definition
  opens its cell, every other statement stays with the cell before it, in source order.
- `assemble`: cells -> module source.

`check(nodeid)` is what a notebook's test cells call inside the student's kernel.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import catalog, impl, runner

HEADER = "header"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
_MARKER = re.compile(r"^#\s*kata\s+(week\d+/[A-Za-z0-9_]+)\s*:\s*([A-Za-z_]\w*)\s*$")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class BuildError(Exception):
    """A kata's stub and reference cannot be laid out as notebook cells."""


@dataclass(frozen=True)
class KataCell:
    kata: str  # "week2/attention"
    key: str  # "header" or an API name
    source: str  # marker line, then the body
    solution: bool  # holds a solution region (an nbgrader solution cell)


def marker(kata_id: str, key: str) -> str:
    return f"# kata {kata_id}: {key}"


def parse_marker(source: str) -> tuple[str, str] | None:
    """(kata id, key) from a cell's first line, or None when it is not a kata cell."""
    match = _MARKER.match(source.split("\n", 1)[0].strip())
    return (match[1], match[2]) if match else None


def cell_body(source: str) -> str:
    return source.split("\n", 1)[1] if "\n" in source else ""


def _strip_blank(text: str) -> str:
    """Drop blank lines at both ends (they sit between statements and mean nothing)."""
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def without_blank_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def api_items(stub_source: str) -> list[str]:
    """The kata's API in stub order: every top-level function and class of the stub."""
    return [n.name for n in ast.parse(stub_source).body if isinstance(n, _DEFS)]


def kata_order(kata_id: str, katas_dir: Path = catalog.KATAS_DIR) -> list[str]:
    """The cell keys of a kata, in notebook order."""
    return [HEADER, *api_items((katas_dir / f"{kata_id}.py").read_text(encoding="utf-8"))]


def assemble(bodies: dict[str, str], order: list[str]) -> str:
    """Cell bodies -> module source: `order` first, anything else after, blank-line separated."""
    keys = [k for k in order if k in bodies] + [k for k in bodies if k not in order]
    parts = [_strip_blank(bodies[k]) for k in keys]
    return "\n\n\n".join(p for p in parts if p) + "\n"


def split_module(source: str, items: list[str]) -> dict[str, str] | None:
    """A kata module -> {cell key: body}, every statement in source order with the nearest
    API definition before it (or the header). None when that would not reassemble to the
    same program: a syntax error, or API definitions in another order than the stub's."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    lines = source.splitlines(keepends=True)
    rank = {key: i for i, key in enumerate([HEADER, *items])}
    chunks: dict[str, list[str]] = {HEADER: []}
    key, start = HEADER, 0
    for node in tree.body:
        if isinstance(node, _DEFS) and node.name in rank and node.name not in chunks:
            if rank[node.name] < rank[key]:
                return None
            key = node.name
            chunks[key] = []
        end = node.end_lineno
        # Indented comments after a statement (`### END SOLUTION`) still belong to it.
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
            end += 1
        chunks[key].append("".join(lines[start:end]))
        start = end
    chunks[key].append("".join(lines[start:]))
    bodies = {k: _strip_blank("".join(v)) for k, v in chunks.items()}
    if without_blank_lines(assemble(bodies, [HEADER, *items])) != without_blank_lines(source):
        return None
    return bodies


# --- building a kata's cells from its stub and reference ---------------------------------


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def _raises_not_implemented(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Raise) and n.exc is not None:
            exc = n.exc.func if isinstance(n.exc, ast.Call) else n.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def _docstring(body: list[ast.stmt]) -> ast.stmt | None:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


class _Source:
    def __init__(self, text: str, name: str):
        self.name = name
        self.lines = text.splitlines()
        self.tree = ast.parse(text)

    def text(self, first: int, last: int) -> str:
        """Lines first..last (1-based, inclusive)."""
        return "\n".join(self.lines[first - 1:last])

    def statement(self, node: ast.stmt, after: int) -> str:
        """The statement with the comments above it (lines after `after`), without blank ends."""
        return _strip_blank(self.text(after + 1, node.end_lineno))


def _reindent(text: str, old: int, new: int) -> str:
    if old == new:
        return text
    lines = text.splitlines()
    if any(line.strip() and not line.startswith(" " * old) for line in lines):
        raise BuildError(f"cannot re-indent code from {old} to {new} spaces:\n{text}")
    return "\n".join((" " * new + line[old:]) if line.strip() else "" for line in lines)


def _indent(text: str, width: int) -> str:
    return "\n".join((" " * width + line) if line.strip() else "" for line in text.splitlines())


def _ends(statements: list[ast.stmt], after: int) -> list[int]:
    """For each statement, the last line of the one before it (`after` for the first)."""
    return [after] + [s.end_lineno for s in statements[:-1]]


class _Builder:
    """Edits the stub's lines: solution regions into every function or method that raises
    NotImplementedError, reference-only code into those regions."""

    def __init__(self, kata_id: str, stub: _Source, ref: _Source):
        self.kata_id, self.stub, self.ref = kata_id, stub, ref
        self.edits: list[tuple[int, int, str]] = []  # (first line, last line, replacement), 1-based
        self.extra: dict[int, list[str]] = {}  # id(stub function node) -> code for its region

    def fail(self, message: str) -> BuildError:
        return BuildError(f"{self.kata_id}: {message}")

    def build(self) -> list[KataCell]:
        stub_defs = {n.name: n for n in self.stub.tree.body if isinstance(n, _DEFS)}
        ref_defs = {n.name: n for n in self.ref.tree.body if isinstance(n, _DEFS)}
        stub_other = {ast.unparse(n) for n in self.stub.tree.body if not isinstance(n, _DEFS)}
        doc = _docstring(self.stub.tree.body)
        if doc is not None:
            self.edits.append((_first_line(doc), doc.end_lineno, ""))

        regions: dict[str, list[tuple[ast.FunctionDef, ast.FunctionDef]]] = {}
        for name, node in stub_defs.items():
            if not _raises_not_implemented(node):
                continue  # given code: stays as the stub has it
            if name not in ref_defs or type(ref_defs[name]) is not type(node):
                raise self.fail(f"the reference has no {type(node).__name__} {name}")
            regions[name] = self.plan_item(node, ref_defs[name])

        # Reference-only module code goes to the next item (in reference order) whose
        # region may end at module level: a function, or a class whose last statement is
        # a region method; what follows the last such item goes to the last one.
        def module_slot(name: str):
            node = stub_defs[name]
            if isinstance(node, ast.ClassDef):
                last = node.body[-1]
                pairs = [p for p in regions.get(name, []) if p[0] is last]
                return pairs[0][0] if pairs else None
            return regions[name][0][0] if name in regions else None

        pending: list[str] = []
        slot = None
        ends = _ends(self.ref.tree.body, 0)
        for node, after in zip(self.ref.tree.body, ends):
            if isinstance(node, _DEFS) and node.name in stub_defs:
                target = module_slot(node.name)
                if target is not None:
                    slot = target
                    self.extra.setdefault(id(slot), []).extend(pending)
                    pending = []
                continue
            if node is _docstring(self.ref.tree.body) or ast.unparse(node) in stub_other:
                continue
            pending.append(self.ref.statement(node, after))
        if pending:
            if slot is None:
                raise self.fail("the reference has module-level code but the stub has no function "
                                "(or class ending in a method) to hold it")
            self.extra.setdefault(id(slot), []).extend(pending)

        for pairs in regions.values():
            for stub_fn, ref_fn in pairs:
                self.add_region(stub_fn, ref_fn)
        return self.cells(list(stub_defs))

    def plan_item(self, node, ref_node) -> list[tuple[ast.FunctionDef, ast.FunctionDef]]:
        """The (stub, reference) function pairs that get a region; for a class, also place
        the reference's extra class-level code."""
        if not isinstance(node, ast.ClassDef):
            return [(node, ref_node)]
        ref_methods = {m.name: m for m in ref_node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        stub_stmts = {ast.unparse(m) for m in node.body if not isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        pairs = []
        for method in node.body:
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and _raises_not_implemented(method):
                if method.name not in ref_methods:
                    raise self.fail(f"the reference's {node.name} has no method {method.name}")
                pairs.append((method, ref_methods[method.name]))
        if not pairs:
            return []
        stub_methods = {m.name for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        by_ref = {id(r): s for s, r in pairs}
        pending: list[str] = []
        slot = None
        body = ref_node.body
        for stmt, after in zip(body, _ends(body, ref_node.body[0].lineno - 1)):
            if id(stmt) in by_ref:
                slot = by_ref[id(stmt)]
                self.extra.setdefault(id(slot), []).extend(pending)
                pending = []
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in stub_methods:
                continue
            elif stmt is _docstring(body) or ast.unparse(stmt) in stub_stmts:
                continue
            else:
                pending.append(_reindent(self.ref.statement(stmt, after), stmt.col_offset, node.body[0].col_offset))
        if pending:
            slot = slot or pairs[-1][0]
            self.extra.setdefault(id(slot), []).extend(pending)
        return pairs

    def add_region(self, stub_fn, ref_fn) -> None:
        stub_body, ref_body = stub_fn.body, ref_fn.body
        stub_doc, ref_doc = _docstring(stub_body), _docstring(ref_body)
        stub_stmts = stub_body[1:] if stub_doc else stub_body
        ref_stmts = ref_body[1:] if ref_doc else ref_body
        if not stub_stmts or stub_stmts[0].lineno == stub_fn.lineno:
            raise self.fail(f"{stub_fn.name}: the stub's body must start on its own line")
        # Keep the stub's leading statements that the reference starts with too (super().__init__()).
        kept = 0
        while (kept < min(len(stub_stmts), len(ref_stmts)) and not _raises_not_implemented(stub_stmts[kept])
               and ast.unparse(stub_stmts[kept]) == ast.unparse(ref_stmts[kept])):
            kept += 1
        indent = stub_stmts[0].col_offset
        stub_after = stub_stmts[kept - 1].end_lineno if kept else (stub_doc.end_lineno if stub_doc else stub_fn.body[0].lineno - 1)
        ref_after = ref_stmts[kept - 1].end_lineno if kept else (ref_doc.end_lineno if ref_doc else _signature_end(ref_fn))
        body = ""
        if kept < len(ref_stmts):
            body = _reindent(_strip_blank(self.ref.text(ref_after + 1, ref_fn.end_lineno)), ref_stmts[kept].col_offset, indent)
        parts = [" " * indent + BEGIN_SOLUTION, body]
        for code in self.extra.get(id(stub_fn), []):
            parts += ["", "", code] if code[:1] not in (" ", "") else ["", code]
        parts.append(" " * indent + END_SOLUTION)
        self.edits.append((stub_after + 1, stub_fn.end_lineno, "\n".join(parts)))
        # The reference's decorators where they differ (e.g. @torch.no_grad()): behaviour, not a hint.
        stub_decos = [ast.unparse(d) for d in stub_fn.decorator_list]
        if stub_decos != [ast.unparse(d) for d in ref_fn.decorator_list]:
            decorators = _indent("\n".join("@" + ast.unparse(d) for d in ref_fn.decorator_list), stub_fn.col_offset)
            first = _first_line(stub_fn)
            self.edits.append((first, stub_fn.lineno - 1, decorators))

    def cells(self, items: list[str]) -> list[KataCell]:
        lines = list(self.stub.lines)
        for first, last, replacement in sorted(self.edits, key=lambda e: e[0], reverse=True):
            lines[first - 1:last] = replacement.split("\n") if replacement else []
        source = "\n".join(lines) + "\n"
        bodies = split_module(source, items)
        if bodies is None:
            raise self.fail("the stub with its solution regions does not split into cells")
        return [KataCell(self.kata_id, key, marker(self.kata_id, key) + "\n" + bodies.get(key, ""),
                         BEGIN_SOLUTION in bodies.get(key, ""))
                for key in [HEADER, *items]]


def _signature_end(fn) -> int:
    """The last line of a function's `def ...:` (its body's first line minus one)."""
    return fn.body[0].lineno - 1


def solution_cells(kata_id: str, katas_dir: Path = catalog.KATAS_DIR,
                   reference_dir: Path = impl.NAMED_ROOTS["reference"]) -> list[KataCell]:
    """The kata's cells for an nbgrader source notebook: the stub with the reference inside
    solution regions. The solution code, assembled, is a module equivalent to the reference."""
    stub = _Source((katas_dir / f"{kata_id}.py").read_text(encoding="utf-8"), f"katas/{kata_id}.py")
    ref = _Source((reference_dir / f"{kata_id}.py").read_text(encoding="utf-8"), f"reference/{kata_id}.py")
    cells = _Builder(kata_id, stub, ref).build()
    module = assemble({c.key: cell_body(c.source) for c in cells}, [c.key for c in cells])
    try:
        compile(module, f"{kata_id}.py", "exec")
    except SyntaxError as exc:
        raise BuildError(f"{kata_id}: the assembled solution does not compile: {exc}") from None
    return cells


def module_docstring(kata_id: str, katas_dir: Path = catalog.KATAS_DIR) -> str:
    return ast.get_docstring(ast.parse((katas_dir / f"{kata_id}.py").read_text(encoding="utf-8"))) or ""


# --- grading inside the student's kernel --------------------------------------------------


class KataTestFailure(AssertionError):
    """A kata test failed (raised by a notebook's test cell, so nbgrader gives it no points)."""


_runs: dict[str, dict[str, dict]] = {}  # digest of (kata, modules) -> {nodeid: result}
_workdir: Path | None = None


def _executed_cells() -> list[str]:
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("kata tests in a notebook run inside a Jupyter (IPython) kernel")
    return list(shell.history_manager.input_hist_raw)


def modules_from_history(history: list[str]) -> dict[str, str]:
    """{kata id: module source} from executed cells: the latest run of each kata cell wins."""
    latest: dict[str, dict[str, str]] = {}
    for source in history:
        found = parse_marker(source)
        if found:
            latest.setdefault(found[0], {})[found[1]] = cell_body(source)
    modules = {}
    for kata_id, bodies in latest.items():
        try:
            order = kata_order(kata_id)
        except OSError:
            order = [HEADER]
        modules[kata_id] = assemble(bodies, order)
    return modules


def cell_source(cell: dict) -> str:
    """A notebook cell's text: nbformat stores it as one string or as a list of lines."""
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    if isinstance(source, str):
        return source
    raise ValueError("a cell's source is neither text nor a list of lines")


def modules_from_notebooks(paths: list[Path]) -> dict[str, str]:
    """{kata id: module source} from the kata cells of saved notebooks; unreadable ones add nothing."""
    modules = {}
    for path in paths:
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            sources = [cell_source(c) for c in cells if c.get("cell_type") == "code"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        modules.update(modules_from_history(sources))
    return modules


def run_kata_tests(kata_id: str, modules: dict[str, str]) -> dict[str, dict]:
    """Run the kata's tests (hidden ones too, where this course has them) against the given
    modules in a pytest subprocess; {"weekN/test_x.py::name": result}."""
    global _workdir
    digest = hashlib.sha256(json.dumps([kata_id, sorted(modules.items())]).encode()).hexdigest()
    if digest in _runs:
        return _runs[digest]
    if _workdir is None:
        _workdir = Path(tempfile.mkdtemp(prefix="kata-notebook-"))
    root = _workdir / digest[:16]
    for other, source in modules.items():
        path = root / f"{other}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    root.mkdir(parents=True, exist_ok=True)
    files = catalog.test_files([catalog.load(kata_id)], hidden=True)
    report = root / "report.json"
    project = impl.PROJECT_ROOT
    env = {k: v for k, v in os.environ.items() if k != impl.ENV_VAR}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *runner.arguments(files, impl=str(root), hidden=True, profile="grading",
                                                           quiet=False), "--kata-report", str(report), "-q"],
        cwd=project, env=env, capture_output=True, text=True)
    if not report.is_file():
        raise RuntimeError(f"the tests of {kata_id} could not run (pytest exit status {run.returncode}):\n"
                           + (run.stdout + run.stderr)[-3000:])
    results = {r["nodeid"].split("katas/", 1)[-1]: r for r in json.loads(report.read_text())["results"]}
    _runs[digest] = results
    return results


def check(nodeid: str) -> None:
    """A notebook test cell: pass, or raise with the test's failure message.

    The kata's code is the latest run of each of its cells in this kernel. The first call
    for a kata runs all of its tests at once; later calls read the cached results until a
    kata cell is run again."""
    __tracebackhide__ = True  # IPython and pytest: the student's traceback ends at the test cell
    kata_id = catalog.kata_id_for_test_file(nodeid.split("::")[0])
    if kata_id is None:
        raise ValueError(f"not a kata test: {nodeid}")
    # Other weeks' katas (week 7 imports the student's week 5) come from their notebooks,
    # saved next to this one as nbgrader lays them out (weekN/weekN.ipynb side by side).
    siblings = sorted(Path.cwd().parent.glob("week*/week*.ipynb"))
    modules = {**modules_from_notebooks([p for p in siblings if p.parent != Path.cwd()]),
               **modules_from_history(_executed_cells())}
    results = run_kata_tests(kata_id, modules)
    result = results.get(nodeid)
    if result is None:
        raise KataTestFailure(f"{nodeid} did not run: the course's tests changed since this notebook was made")
    if result["outcome"] == "passed":
        print(f"passed ({catalog.counted(result['points'] or 0, 'point')})")
    elif result["outcome"] == "skipped":  # a GPU test without CUDA: its points need a GPU machine
        raise KataTestFailure(f"not run here: {result['message'].strip()}")
    elif result["hidden"]:
        raise KataTestFailure("failed (hidden test)")
    else:
        raise KataTestFailure(result["message"].strip() or result["outcome"])
