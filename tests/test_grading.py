"""`kata grade` against adversarial submissions: no point that was not earned, ever.

Each directory of tests/adversarial is a hostile submission with an `attack.toml` saying
which class of attack it is (issue 15's list, see tests/adversarial/README.md) and what
must hold after grading. Most attack week2/attention and carry an honest week2/micrograd
(the reference's): the attack must earn nothing, and micrograd must keep its full marks.
They are graded as a course grades a class, by the real `kata grade --batch --jobs 2` in a
subprocess, with hidden tests, as CI runs it (root: the sandbox's children run as uids of
their own), next to an honest submission that must keep full marks; one batch per set of
`kata grade` options the entries ask for.
"""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from graders import catalog, impl
from tests.markdown_reading import outside_code_blocks

pytestmark = [pytest.mark.grading, pytest.mark.timeout(3000)]

ADVERSARIAL = Path(__file__).parent / "adversarial"
REFERENCE = impl.NAMED_ROOTS["reference"]
# A distinctive line of the hidden reference: no report may ever contain it.
REFERENCE_MARKER = next(line.strip() for line in (REFERENCE / "week2" / "attention.py").read_text().splitlines()
                        if "allowed" in line and "=" in line)


def attack_spec(path: Path) -> dict:
    toml = path / "attack.toml"
    spec = tomllib.loads(toml.read_text()) if toml.is_file() else {}
    spec.setdefault("expect", {})
    return spec


def submissions(tmp: Path) -> dict[str, Path]:
    """Every entry, and three made here: a symlink to the reference, an honest neighbour (the
    reference) and a partial one; each in the batch directory of the options it asks for."""
    subs = {}
    for src in sorted(ADVERSARIAL.iterdir()):
        if src.is_dir():
            dst = tmp / batch_of(attack_spec(src)) / src.name
            shutil.copytree(src, dst, symlinks=True)
            subs[src.name] = dst
    week2 = tmp / batch_of({})
    symlinked = week2 / "symlinked"
    (symlinked / "week2").mkdir(parents=True, exist_ok=True)
    (symlinked / "week2" / "attention.py").symlink_to(REFERENCE / "week2" / "attention.py")
    subs["symlinked"] = symlinked
    subs["honest_reference"] = week2 / "honest_reference"
    shutil.copytree(REFERENCE / "week2", subs["honest_reference"] / "week2")
    partial = week2 / "partial"
    (partial / "week2").mkdir(parents=True)
    source = (REFERENCE / "week2" / "attention.py").read_text()
    cut = source.index("def scaled_dot_product_attention")
    (partial / "week2" / "attention.py").write_text(source[:cut])  # softmax and causal_mask only
    subs["partial"] = partial
    for name, path in subs.items():
        if not (path / "week2" / "micrograd.py").exists():
            (path / "week2").mkdir(parents=True, exist_ok=True)
            shutil.copy(REFERENCE / "week2" / "micrograd.py", path / "week2" / "micrograd.py")
    return subs


def batch_of(spec: dict) -> str:
    """The batch an entry is graded in: one per `--only` and grader environment."""
    env = "-".join(f"{k}={v}" for k, v in sorted(spec.get("env", {}).items()))
    return spec.get("only", "week2") + (f"-{hashlib.sha256(env.encode()).hexdigest()[:8]}" if env else "")


def kata_grade(*args: str, timeout: float = 2400, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    environment["GRADER_SECRET"] = "kata-secret-0xC0FFEE"  # what a course's CI has beside the grader
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "graders.cli", "grade", *args], cwd=impl.PROJECT_ROOT,
                          env=environment, capture_output=True, text=True, timeout=timeout)


def read_report(out: Path, output: str) -> dict:
    """The JSON report at `out` with its Markdown and JUnit siblings and the grader's output."""
    report = json.loads(out.read_text())
    report["_markdown"] = out.with_suffix(".md").read_text()
    report["_junit"] = out.with_suffix(".xml").read_text()
    report["_stdout"] = output
    return report


def grade(path: Path, out: Path, only: str, env: dict | None = None, test_timeout: float = 20) -> dict:
    """`kata grade` of one submission; tests get 20 s each here (hanging attacks cost less of
    CI's time; the honest code in these submissions needs a few seconds per test at most)."""
    result = kata_grade(str(path), "--only", only, "--hidden", "--out", str(out), "--out", str(out.with_suffix(".md")),
                        "--out", str(out.with_suffix(".xml")), "--test-timeout", str(test_timeout), env=env)
    assert result.returncode == 0, f"kata grade failed on {path.name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return read_report(out, result.stdout + result.stderr)


def grade_batch(batch: Path, out: Path, only: str, env: dict | None = None, test_timeout: float = 20) -> dict[str, dict]:
    """`kata grade --batch --jobs 2` of every submission in `batch`; {name: report}."""
    reports = out / "{student}"
    result = kata_grade("--batch", str(batch), "--jobs", "2", "--only", only, "--hidden", "--test-timeout",
                        str(test_timeout), "--csv", str(out / "gradebook.csv"),
                        *[a for ext in (".json", ".md", ".xml") for a in ("--out", f"{reports}{ext}")], env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"kata grade --batch failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    names = [p.name for p in sorted(batch.iterdir()) if p.is_dir()]
    missing = [n for n in names if not (out / f"{n}.json").is_file()]
    assert not missing, f"no report for {missing}: " + "\n".join(
        line for line in output.splitlines() if line.split(":")[0] in missing)
    return {name: read_report(out / f"{name}.json", output) for name in names}


def as_list(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def live_score(path: Path) -> float:
    """What pytest itself gives an honest submission (no sandbox, no replay)."""
    report = path.parent / f"{path.name}-live.json"
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    subprocess.run([sys.executable, "-m", "pytest", "katas/week2/test_attention.py", "katas/week2/test_attention_hidden.py",
                    "--impl", str(path), "--hidden", "--kata-report", str(report), "-q", "-p", "no:cacheprovider"],
                   cwd=impl.PROJECT_ROOT, env=env, capture_output=True, timeout=600)
    results = json.loads(report.read_text())["results"]
    return sum(r["points"] for r in results if r["outcome"] == "passed")


def course_fingerprint() -> dict[str, float]:
    """Every file of the course and its modification time: grading must change none."""
    return {str(p): p.stat().st_mtime for p in impl.PROJECT_ROOT.rglob("*")
            if p.is_file() and ".git" not in p.parts and "__pycache__" not in p.parts and ".venv" not in p.parts
            and ".pytest_cache" not in p.parts and ".hypothesis" not in p.parts}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    subs = submissions(tmp / "batches")
    for src in ADVERSARIAL.iterdir():  # a canary left by an earlier run would read as a breach
        spec = attack_spec(src) if src.is_dir() else {"expect": {}}
        for canary in as_list(spec["expect"].get("canary")) + as_list(spec.get("canary")):
            Path(canary).unlink(missing_ok=True)
    before = course_fingerprint()
    reports, gradebooks = {}, {}
    for batch in sorted((tmp / "batches").iterdir()):
        spec = next(attack_spec(ADVERSARIAL / p.name) for p in batch.iterdir() if (ADVERSARIAL / p.name).is_dir())
        reports.update(grade_batch(batch, tmp / "reports" / batch.name, spec.get("only", "week2"), env=spec.get("env")))
        gradebooks[batch.name] = (tmp / "reports" / batch.name / "gradebook.csv").read_text()
    reports["_gradebooks"] = gradebooks
    reports["_partial_live"] = live_score(subs["partial"])
    reports["_course_changed"] = sorted(k for k, v in course_fingerprint().items() if before.get(k) != v)
    return reports


ATTACKS = sorted(p.name for p in ADVERSARIAL.iterdir() if p.is_dir()) + ["symlinked"]


def _earned(report: dict, kata: str) -> tuple[float, float]:
    t = report["katas"].get(kata, {})
    return t.get("score", 0), t.get("max_score", 0)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_earns_nothing_it_did_not_deserve(graded, name):
    report = graded[name]
    spec = attack_spec(ADVERSARIAL / name) if (ADVERSARIAL / name).is_dir() else {"expect": {}}
    expect = spec["expect"]
    target = expect.get("kata", "week1/bpe" if spec.get("only") == "week1" else "week2/attention")
    score, possible = _earned(report, target)
    assert possible > 0, f"{name}: no {target} tests were graded: {report['katas']}"
    honest = None
    if "honest_tests" in expect:  # exactly what its honest functions earn: every point of the tests
        # that reach only them (names starting with these prefixes), as the grader scored them
        honest = sum(t["max_score"] for t in report["tests"] if t["kata"] == target
                     and t["name"].split("::")[-1].startswith(tuple(expect["honest_tests"])))
        assert honest > 0 and score == honest, f"{name}: {score} points, expected {honest}"
    ceiling = expect.get("earns_at_most", {}).get(target, honest or 0)
    assert score <= ceiling, f"{name} earned {score} points in {target} (at most {ceiling}): " + json.dumps(
        [t["name"] for t in report["tests"] if t["score"] > 0 and t["kata"] == target][:5])
    by_name = {t["name"].split("::")[-1]: t for t in report["tests"]}
    for test in expect.get("tests_must_pass", []):
        matching = [t for n, t in by_name.items() if n == test or n.startswith(test + "[")]
        assert matching and all(t["status"] == "passed" for t in matching), (
            f"{name}: {test} should pass (it does not call the attacked function): "
            + json.dumps([(t["name"], t["output"][:300]) for t in matching if t["status"] != "passed"]))
    for test in expect.get("tests_must_fail", []):
        matching = [t for n, t in by_name.items() if n == test or n.startswith(test + "[")]
        assert matching and all(t["score"] == 0 for t in matching), f"{name}: {test} must earn nothing"
    if target.startswith("week2/") and (impl.NAMED_ROOTS["reference"] / "week2" / "micrograd.py").is_file():
        score, possible = _earned(report, "week2/micrograd")
        assert possible > 0 and score == possible, (
            f"{name}: the honest micrograd next to the attack lost points: " + json.dumps(
                [t["name"] + ": " + t["output"][:300] for t in report["tests"]
                 if t["kata"] == "week2/micrograd" and t["score"] < t["max_score"]][:3]))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_leaves_the_grader_and_its_reports_honest(graded, name):
    """Nothing outside the sandbox changed, no secret or hidden source reached the report,
    and nothing the submission wrote acts as report syntax."""
    report = graded[name]
    spec = attack_spec(ADVERSARIAL / name) if (ADVERSARIAL / name).is_dir() else {"expect": {}}
    text = json.dumps(report["tests"]) + report["_markdown"] + report["_stdout"]
    assert "kata-secret-0xC0FFEE" not in text, f"{name}: the grader's secret reached the report"
    assert REFERENCE_MARKER not in text, f"{name}: the hidden reference reached the report"
    assert "failed (hidden test)" in json.dumps(report["tests"]) or all(
        t["status"] == "passed" for t in report["tests"] if t["hidden"])
    expect = spec["expect"]
    for forbidden in as_list(expect.get("report_must_not_contain")):
        assert forbidden not in text, f"{name}: the report contains {forbidden!r}"
    markdown = outside_code_blocks(report["_markdown"])
    assert [line for line in markdown if line.startswith("## ")] == [
        line for line in markdown if line.startswith("## Grade: ")][:1], f"{name}: a forged heading"
    for forbidden in as_list(expect.get("markdown_must_not_contain")):
        assert forbidden not in "\n".join(markdown), f"{name}: the Markdown report reads {forbidden!r} as Markdown"
    for forbidden in as_list(expect.get("junit_must_not_contain")):
        assert forbidden not in report["_junit"], f"{name}: the JUnit report contains {forbidden!r}"
    for canary in as_list(expect.get("canary")) + as_list(spec.get("canary")):
        assert not Path(canary).exists(), f"{name}: {canary} was created outside the sandbox"
    if expect.get("no_process"):
        left = subprocess.run(["pgrep", "-f", expect["no_process"]], capture_output=True, text=True).stdout.split()
        assert not left, f"{name}: processes survived the grading: {left}"
    assert report["sandbox"]["protections"] and not any("UNSAFE" in p for p in report["sandbox"]["protections"])


def test_grading_changed_nothing_in_the_course(graded):
    assert graded["_course_changed"] == []


def test_honest_neighbour_scores_full_marks_in_the_batch(graded):
    """The reference, graded in the same batch as every attacker: nothing they did reached it."""
    report = graded["honest_reference"]
    assert report["max_score"] > 0 and report["score"] == report["max_score"], [
        t["name"] for t in report["tests"] if t["score"] < t["max_score"]]


def test_batch_gradebook_agrees_with_each_students_report(graded):
    """`--csv` and `--out reports/{student}.json` of one batch say the same."""
    students = []
    for gradebook in graded["_gradebooks"].values():
        for row in csv.DictReader(gradebook.splitlines()):
            assert float(row["total"]) == graded[row["student"]]["score"], row
            students.append(row["student"])
    assert sorted(students) == sorted(ATTACKS + ["honest_reference", "partial"])


def test_partial_submission_scores_exactly_what_it_earned(graded):
    attention = graded["partial"]["katas"]["week2/attention"]
    assert 0 < attention["score"] < attention["max_score"]
    assert attention["score"] == graded["_partial_live"]


def test_report_names_the_protections_and_hides_hidden_test_output(graded):
    protections = graded["honest_reference"]["sandbox"]["protections"]
    for protection in ("bubblewrap", "seccomp", "hidden tests in their own sandbox", "no network"):
        assert any(protection in p for p in protections), (protection, protections)
    if os.geteuid() == 0:
        assert "unprivileged uid per child" in protections
    report = graded["honest_reference"]
    hidden = [t for t in report["tests"] if t["hidden"]]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    failing_hidden = [t for t in graded["partial"]["tests"] if t["hidden"] and t["status"] != "passed"]
    assert failing_hidden and all(t["output"] == "failed (hidden test)" for t in failing_hidden)


# --- hangs and neighbours ------------------------------------------------------------------


def test_a_looping_function_costs_only_the_tests_that_call_it(tmp_path):
    """`while True` in scaled_dot_product_attention: `kata grade --only week2` costs two full
    test timeouts (sdpa's, then multi_head_attention's, which calls it) and little more:
    softmax, causal_mask and attention_numpy score as the reference does, and micrograd keeps
    full marks. (A 20 s limit instead of the default 60 s: the same policy, a third of CI's
    time spent looping.)"""
    sub = tmp_path / "looping" / "week2"
    sub.mkdir(parents=True)
    source = (REFERENCE / "week2" / "attention.py").read_text()
    head, tail = source.split("def scaled_dot_product_attention", 1)
    signature, body = tail.split("\n", 1)
    (sub / "attention.py").write_text(f"{head}def scaled_dot_product_attention{signature}\n"
                                      f"    while True:\n        pass\n{body}")
    shutil.copy(REFERENCE / "week2" / "micrograd.py", sub / "micrograd.py")
    started = time.monotonic()
    report = grade(sub.parent, tmp_path / "looping.json", "week2", test_timeout=20)
    seconds = time.monotonic() - started
    assert seconds < 2 * 20 + 80, f"grading a looping submission took {seconds:.0f} s"
    for t in report["tests"]:
        calls_it = "sdpa" in t["name"] or "mha" in t["name"]
        if t["kata"] == "week2/attention" and not calls_it:
            assert t["status"] == "passed", (t["name"], t["output"][:500])
        if calls_it:
            assert t["score"] == 0
    assert _earned(report, "week2/micrograd")[0] == _earned(report, "week2/micrograd")[1] > 0
    timed_out = [t for t in report["tests"] if t["name"].endswith("test_sdpa_matches_torch")]
    assert "TIMEOUT in your `scaled_dot_product_attention`" in timed_out[0]["output"]


# --- the whole course: every kata's tests replay faithfully ------------------------------


@pytest.fixture(scope="module")
def whole_course(tmp_path_factory):
    """The reference and the stubs, every week, graded with hidden tests: one batch of two."""
    tmp = tmp_path_factory.mktemp("course")
    batch = tmp / "batch"
    shutil.copytree(REFERENCE, batch / "reference", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(impl.NAMED_ROOTS["katas"], batch / "stubs", ignore=shutil.ignore_patterns("test_*", "*.toml", "__pycache__"))
    result = kata_grade("--batch", str(batch), "--jobs", "2", "--hidden", "--hidden-feedback",
                        "--out", str(tmp / "reports" / "{student}.json"))
    reports = {name: tmp / "reports" / f"{name}.json" for name in ("reference", "stubs")}
    missing = [name for name, path in reports.items() if not path.is_file()]
    assert not missing, f"kata grade wrote no report for {missing}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return {name: json.loads(path.read_text()) for name, path in reports.items()}


def test_every_kata_of_the_reference_scores_full_marks_when_graded(whole_course):
    """Record in the sandbox, with graders.withhold's stripped copies of every test file, and
    replay the original tests in the trusted process: nothing may be lost on the way (a test
    that reads student state the recording cannot carry, or needs a value the stripping
    removed, would fail here as DIVERGED or INCOMPLETE)."""
    report = whole_course["reference"]
    graded = {t["kata"] for t in report["tests"]}
    assert len(graded) == len(catalog.all_katas()), sorted(graded)
    lost = [f"{t['name']}: {t['output'][-400:]}" for t in report["tests"]
            if t["status"] not in ("passed", "skipped")]
    assert not lost, "\n\n".join(lost[:5])


def test_every_kata_of_the_stubs_scores_zero_when_graded(whole_course):
    report = whole_course["stubs"]
    earned = [t["name"] for t in report["tests"] if t["score"] > 0]
    assert report["max_score"] > 0 and not earned, earned[:10]


def test_grading_in_a_process_that_already_imported_the_tests():
    """The replay must draw hypothesis's examples as the sandbox did, even where the kata's
    test modules were imported earlier under another settings profile (here: collected by
    an in-process pytest with the default `dev` profile, as `kata nbgrader build` does)."""
    from graders import grade

    files = [str(p) for p in sorted((impl.PROJECT_ROOT / "katas" / "week2").glob("test_attention*.py"))]
    root = impl.PROJECT_ROOT
    assert pytest.main([*files, "--collect-only", "-p", "no:terminal", "-p", "no:cacheprovider", "--impl", "reference",
                        "--rootdir", str(root), "-c", str(root / "pyproject.toml"), "-o", "addopts=--import-mode=importlib",
                        "--hypothesis-profile", "dev"]) == pytest.ExitCode.OK
    report = grade.grade(REFERENCE, hidden=True, only="week2/attention")
    lost = [f"{t['name']}: {t['output'][-300:]}" for t in report.tests if t["status"] != "passed"]
    assert report.max_score > 0 and not lost, "\n".join(lost)
