"""Course-wide guarantees: fixtures, test-writing rules, and the `kata` CLI as a student sees it."""

import ast
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(600)  # these tests start whole pytest sessions

from graders import catalog, cli, fixtures, impl

KATA_TEST_FILES = sorted(impl.PROJECT_ROOT.glob("katas/week*/test_*.py"))


@pytest.fixture
def kata(state_dir, monkeypatch, capsys):
    """`kata ARGS...` as a student types it, run in this process (the state of `kata list` and
    `kata hint` in a temporary directory); returns its exit code and output."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv(impl.ENV_VAR, raising=False)  # `pytest --impl reference` sets it for this process

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # as Python's own exit prints a message and returns 1
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            code = 1 if isinstance(exc.code, str) else exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["kata", *args], code, out.out, out.err)

    return run


def test_fixtures_match_the_manifest():
    assert fixtures.check() == []


@pytest.mark.parametrize("path", KATA_TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kata_tests_reach_student_code_only_through_the_harness(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not re.match(r"(katas|reference)(\.|$)", name), f"{path.name} imports {name}"
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("__import__",):
            pytest.fail(f"{path.name} calls __import__")


def test_public_tests_do_not_use_the_reference():
    for path in KATA_TEST_FILES:
        if path.stem.endswith("_hidden"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "graders":
                assert "reference" not in [a.name for a in node.names], f"{path.name} is public but uses the reference"


def test_hidden_tests_are_marked_hidden():
    for path in KATA_TEST_FILES:
        if path.stem.endswith("_hidden"):
            assert "pytestmark = pytest.mark.hidden" in path.read_text(encoding="utf-8"), path.name


@pytest.mark.parametrize("path", [p for p in KATA_TEST_FILES if p.stem.endswith("_hidden")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_hidden_tests_never_unpack_a_reference_result(path):
    """In the grading sandbox the reference is withheld: its calls return a placeholder that
    check helpers ignore and indexing passes through, but `a, b = model.f(...)` cannot unpack
    it. Index instead (`want = model.f(...)`, then `want[0]`): the test then runs to its end
    in the sandbox and every later student call is recorded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    refs = {t.id for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "reference" for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.For)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value if isinstance(node, ast.Assign) else node.iter
            unpacks = any(isinstance(t, (ast.Tuple, ast.List)) for t in targets)
            calls_reference = isinstance(value, ast.Call) and any(
                isinstance(n, ast.Name) and n.id in refs for n in ast.walk(value.func))
            assert not (unpacks and calls_reference), f"{path.name}:{node.lineno} unpacks a reference result"


def _glue_functions(tree: ast.Module) -> set[str]:
    """Names handed to in_one_crossing, directly or through a wrapper like hinted(...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            args = [node.func, *node.args]
            for i, arg in enumerate(args[:-2]):
                if isinstance(arg, ast.Name) and arg.id == "in_one_crossing" and isinstance(args[i + 2], ast.Name):
                    names.add(args[i + 2].id)
    return names


@pytest.mark.parametrize("path", KATA_TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_raw_student_objects_are_only_touched_inside_one_crossing(path):
    """`unwrap(x)` hands the test a raw student object: reading its type, identity, parameters
    or what it did in place cannot be recorded in the sandbox and replayed. Only glue run by
    `in_one_crossing` (which brings back plain data) may do that; types are checked with
    `graders.is_instance` / `graders.type_name` instead."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    glue = _glue_functions(tree)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name not in glue:
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "unwrap":
                    pytest.fail(f"{path.name}:{call.lineno}: unwrap() in {node.name}, which is not run by in_one_crossing")


def test_fixture_regeneration_is_byte_identical(tmp_path):
    """Regenerating one kata's fixtures gives exactly the stored bytes (seeds are fixed)."""
    entry = fixtures.read_manifest()["week2/attention"]
    data = fixtures.build("week2/attention", fixtures.recipes()["week2/attention"])
    assert fixtures.sha256(data) == entry["sha256"]


def test_kata_check_on_the_stubs_shows_zero_points(kata):
    result = kata("check", "week2/attention")
    assert result.returncode == 1
    out = result.stdout
    possible = re.search(r"Total: 0 / (\d+) points", out)
    assert possible and int(possible.group(1)) > 0, out
    assert "not started" in out and "NOT STARTED: `" in out and "kata hint week2/attention" in out


def test_kata_check_on_the_reference_shows_full_marks(kata):
    result = kata("check", "week2/attention", "--impl", "reference")
    total = re.search(r"Total: (\d+) / (\d+) points — all passing", result.stdout)
    assert result.returncode == 0 and total and total.group(1) == total.group(2), result.stdout
    listing = kata("list", "week2", "--impl", "reference")
    assert re.search(r"attention .* " + total.group(1) + r" / " + total.group(2) + r" .*passing", listing.stdout), listing.stdout


def test_kata_hint_reveals_one_more_hint_each_time(kata):
    hints = catalog.load("week2/attention").hints
    first = kata("hint", "week2/attention").stdout
    second = kata("hint", "week2/attention").stdout
    assert f"hint 1 of {len(hints)}" in first and "hint 2 of" not in first
    assert f"hint 2 of {len(hints)}" in second
    everything = kata("hint", "week2/attention", "--all").stdout
    assert f"hint {len(hints)} of {len(hints)}" in everything


def test_kata_rejects_an_unknown_target(kata):
    result = kata("check", "week99/nothing")
    assert result.returncode != 0 and "no kata or week called 'week99/nothing'" in result.stderr


def test_release_is_a_working_student_copy(kata, tmp_path):
    out = tmp_path / "course"
    result = kata("release", str(out))
    assert result.returncode == 0, result.stderr
    assert not (out / "reference").exists() and not list(out.rglob("test_*_hidden.py"))
    assert not (out / "fixtures" / "recipes").exists() and not (out / "tests").exists()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("KATA_IMPL", None)
    run = [sys.executable, "-m", "pytest", "katas/week2/test_attention.py", "-q", "-p", "no:cacheprovider"]
    stubs = subprocess.run(run, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert stubs.returncode == 1 and "NOT STARTED" in stubs.stdout and " passed" not in stubs.stdout, stubs.stdout[-2000:]
    (out / "katas" / "week2" / "attention.py").write_text(
        (impl.PROJECT_ROOT / "reference" / "week2" / "attention.py").read_text())
    solved = subprocess.run(run, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert solved.returncode == 0 and " failed" not in solved.stdout, solved.stdout[-2000:]


def test_static_forbidden_scan_accepts_every_correct_solution():
    """The grader's source scan must never accuse the reference or a correct alternative."""
    from graders import selfcheck, static

    for kata in catalog.all_katas():
        sources = [impl.NAMED_ROOTS["reference"] / f"{kata.id}.py"] + [p for k, p in selfcheck.alternatives(kata.id)]
        for source in sources:
            assert static.violations(source, kata.forbidden) == {}, f"{kata.id}: {source} flagged"


def test_static_forbidden_scan_follows_aliases(tmp_path):
    from graders import static

    forbidden = catalog.load("week2/attention").forbidden
    cases = {
        "import torch.nn.functional as F\ndef softmax(x, dim=-1):\n    return F.softmax(x, dim)\n": "softmax",
        "from torch.nn import functional as G\ndef f(q, k, v):\n    return getattr(G, 'scaled_dot_product_attention')(q, k, v)\n": "*",
        "import torch\ndef softmax(x, dim=-1):\n    return torch.ops.aten._softmax(x, dim, False)\n": "softmax",
        "import torch\ndef scaled_dot_product_attention(q, k, v):\n    return torch.softmax(q @ k.mT, -1) @ v\n": None,
    }
    for i, (source, where) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.py"
        path.write_text(source)
        found = static.violations(path, forbidden)
        assert (where in found) if where else found == {}, (source, found)
