"""`kata grade` against adversarial submissions: no point that was not earned, ever.

Every submission here attacks week2/attention and carries an honest week2/micrograd (the
reference's). Each is graded by the real `kata grade` command, in a subprocess, with hidden
tests: the attack must earn nothing, and micrograd must keep its full marks.
"""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from graders import catalog, impl

pytestmark = [pytest.mark.grading, pytest.mark.timeout(3000)]

ADVERSARIAL = Path(__file__).parent / "adversarial"
REFERENCE = impl.NAMED_ROOTS["reference"]


def submissions(tmp: Path) -> dict[str, Path]:
    subs = {}
    for src in sorted(ADVERSARIAL.iterdir()):
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
        if name != "stubs":
            (path / "week2").mkdir(parents=True, exist_ok=True)
            shutil.copy(REFERENCE / "week2" / "micrograd.py", path / "week2" / "micrograd.py")
    return subs


def grade(path: Path, out: Path, only: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    result = subprocess.run([sys.executable, "-m", "graders.cli", "grade", str(path), "--only", only, "--hidden",
                             "--format", "json", "--out", str(out)], cwd=impl.PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, f"kata grade failed on {path.name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return json.loads(out.read_text())


def live_score(path: Path) -> float:
    """What pytest itself gives an honest submission (no sandbox, no replay)."""
    report = path.parent / f"{path.name}-live.json"
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    subprocess.run([sys.executable, "-m", "pytest", "katas/week2/test_attention.py", "katas/week2/test_attention_hidden.py",
                    "--impl", str(path), "--hidden", "--kata-report", str(report), "-q", "-p", "no:cacheprovider"],
                   cwd=impl.PROJECT_ROOT, env=env, capture_output=True, timeout=600)
    results = json.loads(report.read_text())["results"]
    return sum(r["points"] for r in results if r["outcome"] == "passed")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    subs = submissions(tmp)

    def one(item):
        name, path = item
        return name, grade(path, tmp / f"{name}.json", "week2")

    with ThreadPoolExecutor(2) as pool:
        reports = dict(pool.map(one, subs.items()))
    reports["_partial_live"] = live_score(subs["partial"])
    return reports


ATTACKS = sorted(p.name for p in ADVERSARIAL.iterdir()) + ["symlinked"]


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_earns_nothing(graded, name):
    report = graded[name]
    attention = report["katas"].get("week2/attention", {})
    assert attention.get("max_score", 0) > 0, f"{name}: no attention tests were graded: {report['katas']}"
    assert attention["score"] == 0, f"{name} earned {attention['score']} points: " + json.dumps(
        [t for t in report["tests"] if t["score"] > 0 and t["kata"] == "week2/attention"][:3])
    micrograd = report["katas"].get("week2/micrograd", {})
    assert micrograd.get("max_score", 0) > 0 and micrograd["score"] == micrograd["max_score"], (
        f"{name}: the honest micrograd next to the attack lost points: " + json.dumps(
            [t["name"] + ": " + t["output"][:300] for t in report["tests"]
             if t["kata"] == "week2/micrograd" and t["score"] < t["max_score"]][:3]))


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
    report = graded["honest_reference"]
    assert "resource limits" in report["sandbox"]["protections"]
    hidden = [t for t in report["tests"] if t["hidden"]]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    failing_hidden = [t for t in graded["stubs"]["tests"] if t["hidden"]]
    assert failing_hidden and all(t["output"] == "failed (hidden test)" for t in failing_hidden)


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
