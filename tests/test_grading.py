"""`kata grade` against adversarial submissions: no point that was not earned, ever.

Each directory of tests/adversarial is a hostile submission with an `attack.toml` saying
which class of attack it is (issue 15's list, see tests/adversarial/README.md) and what
must hold after grading. Most attack week2/attention and carry an honest week2/micrograd
(the reference's): the attack must earn nothing, and micrograd must keep its full marks.
Each is graded by the real `kata grade` command, in a subprocess, with hidden tests, as CI
runs it (root: the sandbox's children run as uids of their own).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
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
    subs = {}
    for src in sorted(ADVERSARIAL.iterdir()):
        if src.is_dir():
            dst = tmp / src.name
            shutil.copytree(src, dst, symlinks=True)
            subs[src.name] = dst
    symlinked = tmp / "symlinked"
    (symlinked / "week2").mkdir(parents=True, exist_ok=True)
    (symlinked / "week2" / "attention.py").symlink_to(REFERENCE / "week2" / "attention.py")
    subs["symlinked"] = symlinked
    subs["honest_reference"] = tmp / "honest"
    shutil.copytree(REFERENCE, subs["honest_reference"])
    subs["stubs"] = tmp / "stubs"
    shutil.copytree(impl.NAMED_ROOTS["katas"], subs["stubs"], ignore=shutil.ignore_patterns("test_*", "*.toml"))
    partial = tmp / "partial"
    (partial / "week2").mkdir(parents=True)
    source = (REFERENCE / "week2" / "attention.py").read_text()
    cut = source.index("def scaled_dot_product_attention")
    (partial / "week2" / "attention.py").write_text(source[:cut])  # softmax and causal_mask only
    subs["partial"] = partial
    for name, path in subs.items():
        if name != "stubs" and not (path / "week2" / "micrograd.py").exists():
            (path / "week2").mkdir(parents=True, exist_ok=True)
            shutil.copy(REFERENCE / "week2" / "micrograd.py", path / "week2" / "micrograd.py")
    return subs


def kata_grade(*args: str, timeout: float = 2400, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    environment["GRADER_SECRET"] = "kata-secret-0xC0FFEE"  # what a course's CI has beside the grader
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "graders.cli", "grade", *args], cwd=impl.PROJECT_ROOT,
                          env=environment, capture_output=True, text=True, timeout=timeout)


def grade(path: Path, out: Path, only: str, env: dict | None = None, test_timeout: float = 20) -> dict:
    """`kata grade`; tests get 20 s each here (hanging attacks cost less of CI's time; the
    honest code in these submissions needs a few seconds per test at most)."""
    markdown, junit = out.with_suffix(".md"), out.with_suffix(".xml")
    result = kata_grade(str(path), "--only", only, "--hidden", "--out", str(out), "--out", str(markdown),
                        "--out", str(junit), "--test-timeout", str(test_timeout), env=env)
    assert result.returncode == 0, f"kata grade failed on {path.name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    report = json.loads(out.read_text())
    report["_markdown"] = markdown.read_text()
    report["_junit"] = junit.read_text()
    report["_stdout"] = result.stdout + result.stderr
    return report


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
    subs = submissions(tmp)
    for src in ADVERSARIAL.iterdir():  # a canary left by an earlier run would read as a breach
        spec = attack_spec(src) if src.is_dir() else {"expect": {}}
        for canary in as_list(spec["expect"].get("canary")) + as_list(spec.get("canary")):
            Path(canary).unlink(missing_ok=True)
    before = course_fingerprint()

    def one(item):
        name, path = item
        spec = attack_spec(ADVERSARIAL / name) if (ADVERSARIAL / name).is_dir() else {}
        started = time.monotonic()
        report = grade(path, tmp / f"{name}.json", spec.get("only", "week2"), env=spec.get("env"))
        report["_seconds"] = time.monotonic() - started
        return name, report

    with ThreadPoolExecutor(2) as pool:
        reports = dict(pool.map(one, subs.items()))
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


def test_honest_reference_scores_full_marks(graded):
    report = graded["honest_reference"]
    assert report["max_score"] > 0 and report["score"] == report["max_score"], [
        t["name"] for t in report["tests"] if t["score"] < t["max_score"]]


def test_stubs_score_zero(graded):
    assert graded["stubs"]["score"] == 0 and graded["stubs"]["max_score"] > 0


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
    failing_hidden = [t for t in graded["stubs"]["tests"] if t["hidden"]]
    assert failing_hidden and all(t["output"] == "failed (hidden test)" for t in failing_hidden)


# --- hangs and neighbours ------------------------------------------------------------------


def test_a_looping_function_costs_only_the_tests_that_call_it(tmp_path):
    """`while True` in scaled_dot_product_attention: `kata grade --only week2` ends within
    about three minutes, softmax, causal_mask and attention_numpy score as the reference does,
    and micrograd keeps full marks."""
    sub = tmp_path / "looping" / "week2"
    sub.mkdir(parents=True)
    source = (REFERENCE / "week2" / "attention.py").read_text()
    head, tail = source.split("def scaled_dot_product_attention", 1)
    signature, body = tail.split("\n", 1)
    (sub / "attention.py").write_text(f"{head}def scaled_dot_product_attention{signature}\n"
                                      f"    while True:\n        pass\n{body}")
    shutil.copy(REFERENCE / "week2" / "micrograd.py", sub / "micrograd.py")
    started = time.monotonic()
    report = grade(sub.parent, tmp_path / "looping.json", "week2", test_timeout=60)  # the default
    seconds = time.monotonic() - started
    assert seconds < 200, f"grading a looping submission took {seconds:.0f} s"
    for t in report["tests"]:
        calls_it = "sdpa" in t["name"] or "mha" in t["name"]
        if t["kata"] == "week2/attention" and not calls_it:
            assert t["status"] == "passed", (t["name"], t["output"][:500])
        if calls_it:
            assert t["score"] == 0
    assert _earned(report, "week2/micrograd")[0] == _earned(report, "week2/micrograd")[1] > 0
    timed_out = [t for t in report["tests"] if t["name"].endswith("test_sdpa_matches_torch")]
    assert "TIMEOUT in your `scaled_dot_product_attention`" in timed_out[0]["output"]


def test_batch_grading_keeps_an_honest_neighbour_intact(tmp_path):
    """`--batch --jobs 2`: attackers that look for other sandboxes (to copy or delete them)
    graded next to an honest submission, which keeps full marks."""
    batch = tmp_path / "batch"
    shutil.copytree(REFERENCE, batch / "honest", ignore=shutil.ignore_patterns("week[13-8]"))
    for src in sorted(ADVERSARIAL.iterdir()):
        if src.is_dir() and attack_spec(src).get("class") in (4, 5):
            shutil.copytree(src, batch / src.name, symlinks=True)
            if not (batch / src.name / "week2" / "micrograd.py").exists():
                shutil.copy(REFERENCE / "week2" / "micrograd.py", batch / src.name / "week2" / "micrograd.py")
    gradebook = tmp_path / "gradebook.csv"
    result = kata_grade("--batch", str(batch), "--jobs", "2", "--only", "week2", "--hidden", "--csv", str(gradebook),
                        "--test-timeout", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split(",")[0]: line.split(",") for line in gradebook.read_text().splitlines()[1:]}
    header = gradebook.read_text().splitlines()[0].split(",")
    honest = dict(zip(header, rows["honest"]))
    assert honest["total"] == honest["max"] and float(honest["max"]) > 0, honest
    for name, row in rows.items():
        if name != "honest":
            assert float(dict(zip(header, row))["week2/attention"] or 0) == 0, (name, row)


# --- the whole course: every kata's tests replay faithfully ------------------------------


@pytest.fixture(scope="module")
def whole_course(tmp_path_factory):
    """The reference and the stubs, every week, graded with hidden tests (one subprocess each)."""
    tmp = tmp_path_factory.mktemp("course")
    stubs = tmp / "stubs"
    shutil.copytree(impl.NAMED_ROOTS["katas"], stubs, ignore=shutil.ignore_patterns("test_*", "*.toml"))
    subs = {"reference": REFERENCE, "stubs": stubs}
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}

    def one(item):
        name, path = item
        out = tmp / f"{name}.json"
        result = subprocess.run([sys.executable, "-m", "graders.cli", "grade", str(path), "--hidden",
                                 "--hidden-feedback", "--out", str(out)], cwd=impl.PROJECT_ROOT, env=env,
                                capture_output=True, text=True, timeout=2400)
        assert out.is_file(), f"kata grade wrote no report for {name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return name, json.loads(out.read_text())

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, subs.items()))


def test_every_kata_of_the_reference_scores_full_marks_when_graded(whole_course):
    """Record in the sandbox, replay in the trusted process: nothing may be lost on the way
    (a test that reads student state the recording cannot carry would fail here)."""
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
