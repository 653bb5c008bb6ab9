"""The nbgrader notebooks: generated from the katas, graded like `kata grade`.

Fast tests (no Jupyter needed): the cells of every kata (the solution assembles to the
reference, the released copy reads like the stub), the `.py` <-> cells split, the week
notebook's structure, `kata submit`, and every kind of malformed submission.

The round trip (`grading` marker, slow stage) runs the real nbgrader on week 2:
build -> nbgrader generate_assignment -> `kata submit` for a reference, a stub and a
partially correct student -> nbgrader autograde -> nbgrader export, compared cell by cell
with `graders.grade.grade` on the same `.py` files; then `kata nbgrader autograde` must give
the same numbers (and report broken notebooks without stopping), and feedback must work.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from graders import catalog, cli, impl, notebook, selfcheck
from graders import nbgrader as nbg

KATAS = [k.id for k in catalog.all_katas()]
REFERENCE = impl.NAMED_ROOTS["reference"]
STUBS = impl.NAMED_ROOTS["katas"]
WEEK = "week2"  # the round trip's week: two katas, hidden tests, ~15 s to grade


def _read(root: Path, kata_id: str) -> str:
    return (root / f"{kata_id}.py").read_text(encoding="utf-8")


# --- the cells of every kata ----------------------------------------------------------------


def _body(node) -> list[ast.stmt]:
    return node.body[1:] if notebook._docstring(node.body) else node.body


def _shape(node):
    """A definition with docstrings, annotations and comments left out."""
    if isinstance(node, ast.ClassDef):
        methods = {m.name: _shape(m) for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        other = sorted(ast.unparse(s) for s in _body(node) if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)))
        return ("class", [ast.unparse(b) for b in node.bases], [ast.unparse(d) for d in node.decorator_list], methods, other)
    args = ast.parse(ast.unparse(node.args).join(["def f(", "): pass"])).body[0].args
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if a is not None:
            a.annotation = None
    return ("def", ast.unparse(args), [ast.unparse(d) for d in node.decorator_list], [ast.unparse(s) for s in _body(node)])


def _module_shape(source: str) -> tuple[dict, list[str]]:
    tree = ast.parse(source)
    defs = {n.name: _shape(n) for n in tree.body if isinstance(n, notebook._DEFS)}
    other = [ast.unparse(n) for n in _body(tree) if not isinstance(n, notebook._DEFS)]
    return defs, other


def _given(kata_id: str) -> set[str]:
    """Stub definitions without anything to write: the notebook keeps the stub's version."""
    tree = ast.parse(_read(STUBS, kata_id))
    return {n.name for n in tree.body if isinstance(n, notebook._DEFS) and not notebook._raises_not_implemented(n)}


@pytest.mark.parametrize("kata_id", KATAS)
def test_solution_cells_assemble_to_the_reference(kata_id):
    """The source notebook's code is the reference: same definitions, same bodies, the
    reference's helpers and constants (docstrings and type hints are the stub's)."""
    cells = notebook.solution_cells(kata_id)
    assert [c.key for c in cells] == notebook.kata_order(kata_id)
    assert all(c.source.startswith(notebook.marker(kata_id, c.key) + "\n") for c in cells)
    module = notebook.assemble({c.key: notebook.cell_body(c.source) for c in cells}, [c.key for c in cells])
    got_defs, got_other = _module_shape(module)
    want_defs, want_other = _module_shape(_read(REFERENCE, kata_id))
    given = _given(kata_id)
    assert set(got_defs) == set(want_defs)
    for name, shape in want_defs.items():
        if name in given:
            continue
        stub_class = next((n for n in ast.parse(_read(STUBS, kata_id)).body if getattr(n, "name", None) == name), None)
        if shape[0] == "class" and stub_class is not None:  # stub-given methods (e.g. __repr__) stay the stub's
            got = got_defs[name]
            given_methods = {m.name for m in stub_class.body if isinstance(m, ast.FunctionDef)
                             and not notebook._raises_not_implemented(m)}
            assert got[:2] == shape[:2] and got[4] == shape[4], name
            assert set(got[3]) == set(shape[3]), name
            for method, body in shape[3].items():
                if method not in given_methods:
                    assert got[3][method] == body, f"{name}.{method}"
        else:
            assert got_defs[name] == shape, name
    missing = [s for s in want_other if s not in got_other]
    assert not missing, missing


def test_solution_constants_have_the_reference_values(tmp_path):
    """Order matters where a reference constant replaces a stub placeholder (NF4_CODE = None)."""
    import torch

    for kata_id in KATAS:
        cells = notebook.solution_cells(kata_id)
        path = tmp_path / f"{kata_id}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(notebook.assemble({c.key: notebook.cell_body(c.source) for c in cells}, [c.key for c in cells]))
    built, ref = impl.Implementation("notebook", tmp_path), impl.reference()
    for kata_id in KATAS:
        dotted = kata_id.replace("/", ".")
        got, want = built.import_module(dotted), ref.import_module(dotted)
        for name, value in vars(want).items():
            if name.startswith("__") or callable(value) or type(value).__name__ == "module":
                continue
            other = getattr(got, name)
            same = torch.equal(other, value) if isinstance(value, torch.Tensor) else other == value
            assert same, f"{kata_id}: {name}"


def _clear_solutions(source: str) -> str:
    """What nbgrader's ClearSolutions does to a cell (the same rule, without nbgrader)."""
    out, inside = [], False
    for line in source.split("\n"):
        if notebook.BEGIN_SOLUTION in line:
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out += [indent + "# YOUR CODE HERE", indent + "raise NotImplementedError()"]
        elif notebook.END_SOLUTION in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def _without_decorators(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        if hasattr(node, "decorator_list"):
            node.decorator_list = []
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and not node.exc.args:
            node.exc = node.exc.func  # raise NotImplementedError() == raise NotImplementedError
    if notebook._docstring(tree.body):
        tree.body = tree.body[1:]
    return ast.dump(tree)


@pytest.mark.parametrize("kata_id", KATAS)
def test_released_cells_read_like_the_stub(kata_id):
    """After nbgrader clears the solutions, the code is the stub's (up to the stub's comments
    inside bodies, and the reference's decorators where they differ, e.g. @torch.no_grad())."""
    cells = notebook.solution_cells(kata_id)
    released = notebook.assemble({c.key: _clear_solutions(notebook.cell_body(c.source)) for c in cells},
                                 [c.key for c in cells])
    assert _without_decorators(ast.parse(released)) == _without_decorators(ast.parse(_read(STUBS, kata_id)))
    for c in cells:  # a region never sits at module level (clearing it would leave a module-level raise)
        for line in c.source.split("\n"):
            if notebook.BEGIN_SOLUTION in line:
                assert line.startswith(" "), f"{kata_id}:{c.key}"


# --- .py <-> cells --------------------------------------------------------------------------


@pytest.mark.parametrize("root", [REFERENCE, STUBS], ids=["reference", "stubs"])
def test_every_kata_module_splits_into_its_cells_and_back(root):
    for kata_id in KATAS:
        source, items = _read(root, kata_id), notebook.api_items(_read(STUBS, kata_id))
        bodies = notebook.split_module(source, items)
        assert bodies is not None and set(bodies) <= {notebook.HEADER, *items}, kata_id
        assembled = notebook.assemble(bodies, [notebook.HEADER, *items])
        assert notebook.without_blank_lines(assembled) == notebook.without_blank_lines(source), kata_id
        for name in items:  # each API definition opens its own cell
            assert re.match(rf"(\s*(#.*|@.*)\n)*\s*(def|class) {name}\b", bodies[name]), (kata_id, name)


def test_split_keeps_statements_with_the_definition_before_them():
    source = ('"""doc"""\nimport math\n\n# about f\ndef f():\n    return helper()\n    # trailing note\n\n'
              'def helper():\n    return 1\n\nCONST = 2\n\n\nclass G:\n    pass\n')
    bodies = notebook.split_module(source, ["f", "G"])
    assert bodies["header"] == '"""doc"""\nimport math'
    assert bodies["f"].startswith("# about f\ndef f():") and "# trailing note" in bodies["f"]
    assert "def helper" in bodies["f"] and "CONST = 2" in bodies["f"]
    assert bodies["G"] == "class G:\n    pass"


def test_split_refuses_what_it_cannot_keep_faithful():
    assert notebook.split_module("def f(:\n", ["f"]) is None  # syntax error
    assert notebook.split_module("def g():\n    pass\n\ndef f():\n    pass\n", ["f", "g"]) is None  # reordered


def test_kernel_history_assembles_the_latest_run_of_each_cell():
    m = notebook.marker
    history = ["", f"{m('week2/attention', 'softmax')}\ndef softmax(x, dim=-1):\n    return 1",
               "print('scratch')", f"{m('week2/attention', 'header')}\nimport torch",
               "# test week2/test_attention.py::x\n_kata.check('x')",
               f"{m('week2/attention', 'softmax')}\ndef softmax(x, dim=-1):\n    return 2"]
    modules = notebook.modules_from_history(history)
    assert modules == {"week2/attention": "import torch\n\n\ndef softmax(x, dim=-1):\n    return 2\n"}


# --- the week notebook ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def week2():
    tests = nbg.collect_tests(WEEK)
    return tests, nbg.week_notebook(WEEK, tests)


def _src(cell) -> str:
    return "".join(cell["source"])


def test_week_notebook_structure(week2):
    tests, nb = week2
    cells = nb["cells"]
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    # per kata: its teaching text, then its code cells in the stub's order, then its tests
    for kata_id in [k for k in KATAS if k.startswith(WEEK + "/")]:
        about = next(i for i, c in enumerate(cells) if c["metadata"]["kata"].get("about") == kata_id)
        assert notebook.module_docstring(kata_id)[:200] in _src(cells[about])
        code = [c for c in cells if c["cell_type"] == "code" and notebook.parse_marker(_src(c))
                and notebook.parse_marker(_src(c))[0] == kata_id]
        assert [notebook.parse_marker(_src(c))[1] for c in code] == notebook.kata_order(kata_id)
        for c in code:
            solution = notebook.BEGIN_SOLUTION in _src(c)
            assert bool(c["metadata"].get("nbgrader", {}).get("solution")) == solution
    # one read-only autograder cell per test item, worth that test's points
    graded = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade")]
    assert [c["metadata"]["kata"]["test"] for c in graded] == [t.nodeid for t in tests]
    assert tests and not any(t.gpu for t in tests)
    for cell, t in zip(graded, tests):
        meta = cell["metadata"]["nbgrader"]
        assert meta["locked"] and not meta["solution"] and meta["points"] == t.points
        assert meta["grade_id"] == nbg.cell_id_of_test(t.nodeid) == cell["id"]
        hidden = "### BEGIN HIDDEN TESTS" in _src(cell)
        assert hidden == t.hidden and f"_kata.check({t.nodeid!r})" in _src(cell)
    assert any(t.hidden for t in tests) and any(not t.hidden for t in tests)
    assert {t.nodeid.split("::")[0] for t in tests} == {
        f"{WEEK}/{p.name}" for p in (STUBS / WEEK).glob("test_*.py")}


def test_cells_say_point_for_one_and_points_otherwise():
    tests = [nbg.GradedTest("week2/test_attention.py::test_one", "week2/attention", 1.0, False),
             nbg.GradedTest("week2/test_micrograd.py::test_two", "week2/micrograd", 2.0, False),
             nbg.GradedTest("week2/test_micrograd.py::test_half", "week2/micrograd", 0.5, True)]
    cells = [_src(c) for c in nbg.week_notebook(WEEK, tests)["cells"]]
    heads = [c.splitlines()[0] for c in cells if "_kata.check(" in c]
    assert heads == ["# test week2/test_attention.py::test_one (1 point)",
                     "# test week2/test_micrograd.py::test_two (2 points)",
                     "# hidden test week2/test_micrograd.py::test_half (0.5 points)"]
    totals = [c.splitlines()[0] for c in cells if c.startswith("### Tests of")]
    points = {"week2/attention": "1 point", "week2/micrograd": "2.5 points"}  # the week's other katas: no tests here
    assert totals == [f"### Tests of {k.id} ({points.get(k.id, '0 points')})"
                      for k in catalog.all_katas() if k.week == WEEK]


def test_gpu_tests_get_cells_only_when_asked(week2):
    """A cell's points cannot depend on the machine that grades: GPU tests are in the
    notebook only for a course that grades on a GPU (`kata nbgrader build --gpu-tests`)."""
    tests, _ = week2
    gpu_test = dataclasses.replace(tests[0], nodeid=tests[0].nodeid + "[cuda]", gpu=True)

    def graded(nb):
        return [c["metadata"]["kata"]["test"] for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]

    assert gpu_test.nodeid not in graded(nbg.week_notebook(WEEK, [*tests, gpu_test]))
    assert gpu_test.nodeid in graded(nbg.week_notebook(WEEK, [*tests, gpu_test], gpu=True))
    week5 = nbg.collect_tests("week5")  # the real markers: week 5 has GPU throughput tests
    assert any(t.gpu for t in week5) and all(t.gpu == ("gpu" in t.nodeid) for t in week5)


def test_a_skipped_test_earns_nothing_and_says_why(course, submitted, monkeypatch):
    """As in `kata grade`: a GPU test skipped on a machine without CUDA gives no points."""
    from graders import grade

    nb, write = submitted
    path = write(nb)
    template = _template(course)
    skipped = next(iter(template.tests.values()))

    def fake_grade(*args, **kwargs):
        report = grade.Report("fake")
        report.tests = [{"name": n, "score": 0 if n == skipped else 1, "max_score": 0 if n == skipped else 1,
                         "status": "skipped" if n == skipped else "passed",
                         "output": "Skipped: needs a CUDA GPU" if n == skipped else ""} for n in template.tests.values()]
        return report

    monkeypatch.setattr(grade, "grade", fake_grade)
    outcome = nbg.grade_notebook(path, template, "alice", 2**25)
    gid = next(g for g, n in template.tests.items() if n == skipped)
    assert outcome.scores[gid] == 0 and sum(outcome.scores.values()) == len(template.tests) - 1
    graded = nbg._autograded_notebook(template, outcome)
    cell = next(c for c in graded["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)
    assert cell["outputs"][0]["output_type"] == "error"
    assert "not run on the grading machine: Skipped: needs a CUDA GPU" in cell["outputs"][0]["evalue"]


def test_other_weeks_are_there_to_import(tmp_path):
    """Week 7's QLoRA imports the student's week-5 NF4: grading week 7's notebook gets the
    katas of the student's week-5 notebook too (and nothing from an unreadable one)."""
    course = tmp_path / "course"
    nbg.build(course, ["week5", "week7"])
    for week in ("week5", "week7"):
        nbg.submit(week, course, "alice", impl.reference())
    opened = nbg.Course.open(course)
    others = nbg.other_templates(opened, "week7")
    assert set(others) == {"week5"}
    modules = nbg.other_weeks_modules(opened, "alice", others, 2**25)
    assert {k for k in modules} == {k for k in KATAS if k.startswith("week5/")}
    assert notebook.without_blank_lines(modules["week5/quantization"]) == notebook.without_blank_lines(
        _read(REFERENCE, "week5/quantization"))
    (course / "submitted" / "alice" / "week5" / "week5.ipynb").write_text("{")
    assert nbg.other_weeks_modules(opened, "alice", others, 2**25) == {}


def test_notebook_check_reads_other_weeks_from_the_notebooks_beside_this_one(tmp_path, monkeypatch):
    m = notebook.marker
    (tmp_path / "week5").mkdir()
    (tmp_path / "week7").mkdir()
    cells = [{"cell_type": "code", "source": [f"{m('week5/quantization', 'header')}\n", "import torch"]},
             {"cell_type": "markdown", "source": "text"}]
    (tmp_path / "week5" / "week5.ipynb").write_text(json.dumps({"cells": cells}))
    (tmp_path / "week6").mkdir()
    (tmp_path / "week6" / "week6.ipynb").write_text("not json")
    seen = {}
    monkeypatch.chdir(tmp_path / "week7")
    monkeypatch.setattr(notebook, "_executed_cells", lambda: [f"{m('week7/lora', 'header')}\nimport math"])
    monkeypatch.setattr(notebook, "run_kata_tests", lambda kata, modules: seen.update(modules) or {
        "week7/test_lora.py::t": {"outcome": "passed", "points": 1, "hidden": False}})
    notebook.check("week7/test_lora.py::t")
    assert seen == {"week5/quantization": "import torch\n", "week7/lora": "import math\n"}


def test_build_without_the_reference_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(impl.NAMED_ROOTS, "reference", tmp_path / "no-reference")
    with pytest.raises(SystemExit, match="has no reference/ \\(a student copy\\?\\)"):
        cli.main(["nbgrader", "build", WEEK, "--course-dir", str(tmp_path / "course")])
    assert not (tmp_path / "course").exists()


def test_week_notebook_is_valid_nbformat(week2):
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.from_dict(week2[1]))


@pytest.fixture
def course(tmp_path, week2):
    """A course directory with week 2's source notebook (no nbgrader needed)."""
    path = tmp_path / "course" / "source" / WEEK / f"{WEEK}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(week2[1]))
    return tmp_path / "course"


def _template(course: Path) -> nbg.Template:
    return nbg.Template.load(nbg.Course.open(course), WEEK)


def test_submit_puts_the_students_code_in_the_cells_and_graders_get_it_back(course, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(REFERENCE / WEEK, mine / WEEK)
    moved = _read(REFERENCE, f"{WEEK}/attention")
    softmax = moved.index("def softmax")
    causal = moved.index("def causal_mask")
    reordered = moved[:softmax] + moved[causal:] + "\n\n" + moved[softmax:causal]  # softmax last: not the stub's order
    (mine / WEEK / "attention.py").write_text(reordered)
    assert cli.main(["submit", WEEK, "--course-dir", str(course), "--student", "alice", "--impl", str(mine)]) == 0
    path = course / "submitted" / "alice" / WEEK / f"{WEEK}.ipynb"
    assert (path.parent / "timestamp.txt").is_file()
    nb = nbg.read_notebook(path)
    cells = {notebook.parse_marker(_src(c)): _src(c) for c in nb["cells"] if notebook.parse_marker(_src(c))}
    assert "def __mul__" in cells[(f"{WEEK}/micrograd", "Value")]
    assert "BEGIN SOLUTION" not in "".join(cells.values())
    assert def_in(cells[(f"{WEEK}/attention", "header")], "softmax")  # kept whole, in its first cell
    modules = nbg.kata_modules(nb, _template(course))
    assert notebook.without_blank_lines(modules[f"{WEEK}/attention"]) == notebook.without_blank_lines(reordered)
    assert notebook.without_blank_lines(modules[f"{WEEK}/micrograd"]) == notebook.without_blank_lines(
        _read(REFERENCE, f"{WEEK}/micrograd"))


def def_in(source: str, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.parse(source).body)


# --- malformed submissions ------------------------------------------------------------------


@pytest.fixture
def submitted(course):
    """Alice's valid submission (the stubs); returns (notebook dict, writer)."""
    path, _ = nbg.submit(WEEK, course, "alice", impl.resolve("katas"))

    def write(nb) -> Path:
        path.write_text(nb if isinstance(nb, str) else json.dumps(nb))
        return path

    return json.loads(path.read_text()), write


def _problem(course: Path, path: Path, **kwargs) -> str:
    outcome = nbg.grade_notebook(path, _template(course), "alice", **{"max_bytes": 2**25, **kwargs})
    assert outcome.error and outcome.report is None, "a broken notebook must not be graded"
    return outcome.error


def _index(nb, kata_id, key):
    return next(i for i, c in enumerate(nb["cells"]) if notebook.parse_marker(_src(c)) == (kata_id, key))


def test_a_valid_submission_is_accepted(course, submitted):
    nb, write = submitted
    modules = nbg.kata_modules(nbg.read_notebook(write(nb)), _template(course))
    assert set(modules) == {k.id for k in catalog.all_katas() if k.week == WEEK}


def test_invalid_json_is_reported(course, submitted):
    nb, write = submitted
    error = _problem(course, write(json.dumps(nb)[:-40]))
    assert "is not valid JSON (line" in error


def test_a_json_file_that_is_not_a_notebook_is_reported(course, submitted):
    _, write = submitted
    assert "not a Jupyter notebook" in _problem(course, write("[1, 2, 3]"))


def test_a_huge_notebook_is_refused_without_reading_it(course, submitted):
    nb, write = submitted
    path = write(nb)
    with open(path, "r+b") as f:
        f.truncate(300 * 2**20)  # sparse: 300 MB of "outputs" that cost no disk
    error = _problem(course, path)
    assert "300 MB, over the 32 MB limit" in error and "clear its outputs" in error


def test_large_outputs_are_dropped_when_under_the_limit(course, submitted):
    nb, write = submitted
    nb["cells"][_index(nb, f"{WEEK}/attention", "softmax")]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "x" * 2**20}]
    parsed = nbg.read_notebook(write(nb))
    assert all("outputs" not in c for c in parsed["cells"])
    assert "over the 0.5 MB limit" in _problem(course, write(nb), max_bytes=2**19)


def test_a_deleted_kata_cell_is_reported(course, submitted):
    nb, write = submitted
    del nb["cells"][_index(nb, f"{WEEK}/attention", "softmax")]
    error = _problem(course, write(nb))
    assert f"the cell `# kata {WEEK}/attention: softmax` is missing" in error


def test_a_duplicated_cell_is_reported(course, submitted):
    nb, write = submitted
    i = _index(nb, f"{WEEK}/micrograd", "Value")
    nb["cells"].insert(i + 1, json.loads(json.dumps(nb["cells"][i])))
    assert f"cell {i + 2} is a copy of cell {i + 1}" in _problem(course, write(nb))


def test_a_duplicated_plain_cell_is_reported(course, submitted):
    nb, write = submitted
    i = _index(nb, f"{WEEK}/attention", "header")  # no nbgrader id: found by its first line
    nb["cells"].insert(i + 1, json.loads(json.dumps(nb["cells"][i])))
    assert f"cell {i + 2} is a copy of cell {i + 1} (`# kata {WEEK}/attention: header`)" in _problem(course, write(nb))


def test_a_changed_cell_id_is_reported(course, submitted):
    nb, write = submitted
    i = _index(nb, f"{WEEK}/attention", "causal_mask")
    nb["cells"][i]["metadata"]["nbgrader"]["grade_id"] = "my-own-id"
    error = _problem(course, write(nb))
    assert "'my-own-id', which this assignment does not have (a changed cell id?)" in error


def test_swapped_cell_ids_are_reported(course, submitted):
    nb, write = submitted
    a, b = _index(nb, f"{WEEK}/attention", "softmax"), _index(nb, f"{WEEK}/attention", "causal_mask")
    ma, mb = nb["cells"][a]["metadata"]["nbgrader"], nb["cells"][b]["metadata"]["nbgrader"]
    ma["grade_id"], mb["grade_id"] = mb["grade_id"], ma["grade_id"]
    assert "(`# kata week2/attention: softmax`) has the nbgrader id" in _problem(course, write(nb))


def test_a_changed_first_line_is_reported(course, submitted):
    nb, write = submitted
    i = _index(nb, f"{WEEK}/attention", "softmax")
    nb["cells"][i]["source"] = "def softmax(x, dim=-1):\n    return x\n"
    assert "lost its first line `# kata week2/attention: softmax`" in _problem(course, write(nb))
    nb["cells"][i]["source"] = "# kata week2/attention: softmax2\ndef softmax(x, dim=-1):\n    return x\n"
    assert "`# kata week2/attention: softmax2`, which is not a cell of week2" in _problem(course, write(nb))


def test_a_deleted_test_cell_is_reported(course, submitted):
    nb, write = submitted
    del nb["cells"][next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade"))]
    assert "1 test cell(s) are missing (deleted?)" in _problem(course, write(nb))


def test_a_missing_notebook_is_reported(course):
    assert "is missing or not a regular file" in _problem(course, course / "nothing.ipynb")


# --- the round trip through the real nbgrader (slow stage) ---------------------------------


def _jupyter_env(tmp: Path) -> dict:
    """An environment where the kernel "python3" is this interpreter, whatever the machine has
    installed elsewhere (a user-level python3 kernelspec would otherwise win)."""
    data = tmp / "jupyter-data"
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k != impl.ENV_VAR}
    env.update(JUPYTER_DATA_DIR=str(data), JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
               IPYTHONDIR=str(tmp / "ipython"), PYTHONDONTWRITEBYTECODE="1")
    return env


def _nbgrader(course: Path, env: dict, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                         text=True, timeout=1200)
    if ok:
        assert run.returncode == 0, f"nbgrader {' '.join(args)}:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return run


def _cell_scores(course: Path, students: list[str]) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {s: {g.name: g.auto_score for g in gb.find_submission_notebook(WEEK, WEEK, s).grades} for s in students}


def _export(course: Path, env: dict) -> dict[str, tuple[float, float]]:
    _nbgrader(course, env, "export")
    with open(course / "grades.csv") as f:
        return {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}


@pytest.mark.grading
@pytest.mark.timeout(1800)
def test_round_trip_through_nbgrader_gives_kata_grade_scores(tmp_path):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -e '.[nbgrader]'")
    from graders import grade

    env = _jupyter_env(tmp_path)
    course = tmp_path / "course"
    assert cli.main(["nbgrader", "build", WEEK, "--course-dir", str(course)]) == 0
    _nbgrader(course, env, "generate_assignment", WEEK)
    released = (course / "release" / WEEK / f"{WEEK}.ipynb").read_text()
    assert "raise NotImplementedError()" in released and "BEGIN SOLUTION" not in released
    assert "test_attention_hidden.py" in released and "BEGIN HIDDEN TESTS" not in released

    # three students who worked in the .py katas: the reference, the stubs, and one who got
    # attention nearly right (one must-catch mistake) and never started micrograd
    partial = tmp_path / "partial"
    (partial / WEEK).mkdir(parents=True)
    mutant = next(m for m in selfcheck.mutants(f"{WEEK}/attention") if m.mistake == "causal_diagonal")
    (partial / WEEK / "attention.py").write_text(
        selfcheck.mutate(_read(REFERENCE, f"{WEEK}/attention"), mutant.replacements, mutant.id))
    shutil.copy(STUBS / WEEK / "micrograd.py", partial / WEEK / "micrograd.py")
    roots = {"ref": REFERENCE, "stub": STUBS, "partial": partial}
    for student, root in roots.items():
        assert cli.main(["submit", WEEK, "--course-dir", str(course), "--student", student, "--impl", str(root)]) == 0

    with ThreadPoolExecutor(2) as pool:  # kata grade on the same .py files, while nbgrader runs the notebooks
        reports = {s: pool.submit(grade.grade, root, hidden=True, only=WEEK) for s, root in roots.items()}
        _nbgrader(course, env, "autograde", WEEK)
        reports = {s: r.result() for s, r in reports.items()}

    template = _template(course)
    want = {s: {gid: r_tests[nodeid]["score"] for gid, nodeid in template.tests.items()}
            for s, r in reports.items() for r_tests in [{t["name"]: t for t in r.tests}]}
    assert all(len(w) == len(template.tests) for w in want.values())
    got = _cell_scores(course, list(roots))
    for student in roots:
        diff = {template.tests[g]: (got[student][g], want[student][g]) for g in template.tests
                if got[student][g] != want[student][g]}
        outputs = {nodeid: t["output"][-600:] for t in reports[student].tests for nodeid in diff if t["name"] == nodeid}
        assert not diff, (f"{student}: nbgrader's cell scores differ from kata grade's: {dict(list(diff.items())[:5])}"
                          f"\nkata grade's messages: {outputs}")
    total = sum(want["ref"].values())
    assert reports["ref"].score == reports["ref"].max_score == total > 0
    assert reports["stub"].score == 0
    attention = reports["partial"].katas[f"{WEEK}/attention"]
    assert 0 < attention["score"] < attention["max_score"] and reports["partial"].katas[f"{WEEK}/micrograd"]["score"] == 0
    exported = _export(course, env)
    assert {s: exported[s] for s in roots} == {s: (r.score, total) for s, r in reports.items()}

    # the secure path: same numbers; broken notebooks are reported and do not stop the batch
    broken = course / "submitted" / "broken" / WEEK
    broken.mkdir(parents=True)
    (broken / f"{WEEK}.ipynb").write_text('{"cells": [')
    twice = course / "submitted" / "twice" / WEEK
    shutil.copytree(course / "submitted" / "stub" / WEEK, twice)
    nb = json.loads((twice / f"{WEEK}.ipynb").read_text())
    nb["cells"].insert(3, nb["cells"][3])
    (twice / f"{WEEK}.ipynb").write_text(json.dumps(nb))
    with _connect_gradebook(course) as gb:  # forget nbgrader's scores: ours must fill every cell again
        for student in roots:
            for g in gb.find_submission_notebook(WEEK, WEEK, student).grades:
                g.auto_score = None
        gb.db.commit()
    run = subprocess.run([sys.executable, "-m", "graders.cli", "nbgrader", "autograde", WEEK, "--course-dir",
                          str(course), "--jobs", "2"], cwd=impl.PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert run.returncode == 1, run.stdout + run.stderr  # 1: some notebooks could not be graded
    assert "broken: NOT GRADED: week2.ipynb is not valid JSON" in run.stdout, run.stdout
    assert "twice: NOT GRADED: cell 5 is a copy of cell 4" in run.stdout, run.stdout
    assert f"ref: {total:g} / {total:g}" in run.stdout and f"stub: 0 / {total:g}" in run.stdout, run.stdout
    assert _cell_scores(course, list(roots)) == got
    assert {s: _export(course, env)[s] for s in roots} == exported

    _nbgrader(course, env, "generate_feedback", WEEK, "--student", "partial")
    feedback = (course / "feedback" / "partial" / WEEK / f"{WEEK}.html").read_text()
    assert f"{reports['partial'].score:g}" in feedback and "NOT STARTED" in feedback


def _connect_gradebook(course: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", "llm-katas")
