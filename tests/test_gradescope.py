"""`kata gradescope build`: an autograder zip for Gradescope, and its run on a Gradescope-like root.

The fast tests read the zip (what is in it, what never is, the scripts) and the staging of
submissions as Gradescope delivers them. The slow one (`grading` marker, as the other
end-to-end grades) unpacks the zip into a temporary root laid out like Gradescope's
(`source/`, `submission/`, `results/`, relocated with KATA_AUTOGRADER_ROOT) and runs its
`run_autograder` on the reference and on the stubs of week2/attention.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from rich.console import Console

from graders import gradescope, impl

REFERENCE = impl.NAMED_ROOTS["reference"]
STUBS = impl.NAMED_ROOTS["katas"]


@pytest.fixture(scope="module")
def course_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zip") / "autograder.zip"
    gradescope.build(out, only="week2/attention")
    return out


def test_the_zip_holds_the_scripts_and_the_trusted_course(course_zip):
    with zipfile.ZipFile(course_zip) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        run_autograder = zf.read("run_autograder").decode()
        setup = zf.read("setup.sh").decode()
    names = set(infos)
    for script in ("setup.sh", "run_autograder"):  # at the top, executable once unzipped
        assert (infos[script].external_attr >> 16) & 0o777 == 0o755
    for needed in ("graders/cli.py", "graders/grade.py", "graders/workflows", "katas/week2/test_attention.py",
                   "katas/week2/test_attention_hidden.py", "katas/week2/attention.toml",
                   "reference/week2/attention.py",
                   "fixtures/manifest.json", "checkpoints/gpt2-tiny", "conftest.py", "pyproject.toml", "README.md"):
        assert any(n == needed or n.startswith(needed + "/") for n in names), needed
    # the whole course, even with --only: kata modules import each other's (kv_cache imports gpt2)
    assert "katas/week8/test_rl_hidden.py" in names and "reference/week3/gpt2.py" in names
    for name in names:
        parts = Path(name).parts
        assert not name.startswith(("/", "submission", "results")) and ".." not in parts
        assert parts[0] in {*gradescope.INCLUDE, "setup.sh", "run_autograder"}, name
        assert not {"__pycache__", ".git", ".kata", ".venv", ".hypothesis", ".pytest_cache", "recipes"} & set(parts)
        assert not name.endswith((".pyc", "READY", "TRAINED")) and ".egg-info" not in name
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)
    assert "--only week2/attention" in run_autograder and "--hidden" in run_autograder
    assert '--format json --out "$ROOT/results/results.json"' in run_autograder
    assert '"$ROOT/submission"' in run_autograder and "KATA_AUTOGRADER_ROOT" in run_autograder
    assert "apt-get install -y --no-install-recommends bubblewrap libseccomp2" in setup
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in setup
    assert "pip install -e ." in setup


def test_the_build_is_reproducible_and_grades_everything_without_only(tmp_path, course_zip):
    again = tmp_path / "again.zip"
    gradescope.build(again, only="week2/attention")
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(course_zip.read_bytes()).digest()
    everything = tmp_path / "all.zip"
    gradescope.build(everything)
    with zipfile.ZipFile(everything) as zf:
        assert "--only" not in zf.read("run_autograder").decode().split("set -euo pipefail")[1]


def test_the_gradescope_command_wiring(tmp_path):
    parser = argparse.ArgumentParser(prog="kata")
    gradescope.add_parser(parser.add_subparsers(dest="command", required=True))
    out = io.StringIO()
    console = Console(file=out, width=200)
    args = parser.parse_args(["gradescope", "build", str(tmp_path / "a.zip"), "--only", "week2"])
    assert args.func(args, console) == 0
    assert zipfile.is_zipfile(tmp_path / "a.zip") and "grades week2" in out.getvalue()
    args = parser.parse_args(["gradescope", "build", str(tmp_path / "b.zip"), "--only", "week99"])
    assert args.func(args, console) == 2
    assert not (tmp_path / "b.zip").exists()


def test_unknown_only_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(LookupError, match="no kata or week called 'week99'"):
        gradescope.build(tmp_path / "x.zip", only="week99")
    code = gradescope.main(["build", str(tmp_path / "x.zip"), "--only", "week99"])
    assert code == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("layout", ["katas-like", "checkout", "folder", "flat"])
def test_staging_finds_the_kata_modules_in_every_upload_layout(tmp_path, layout):
    sub = tmp_path / "submission"
    module = {"katas-like": "week2/attention.py", "checkout": "katas/week2/attention.py",
              "folder": "my-course/week2/attention.py", "flat": "attention.py"}[layout]
    (sub / module).parent.mkdir(parents=True, exist_ok=True)
    (sub / module).write_text("# mine\n")
    (sub / "notes.txt").write_text("not a kata")
    staged = gradescope.stage(sub, tmp_path / "staged")
    assert staged == [tmp_path / "staged" / "week2" / "attention.py"]
    assert staged[0].read_text() == "# mine\n"


def test_staging_never_follows_links(tmp_path):
    """A link to the grader's reference must not be graded as the student's own file."""
    sub = tmp_path / "submission"
    (sub / "week2").mkdir(parents=True)
    (sub / "week2" / "attention.py").symlink_to(REFERENCE / "week2" / "attention.py")
    (sub / "week3").symlink_to(REFERENCE / "week3", target_is_directory=True)
    (sub / "micrograd.py").symlink_to(REFERENCE / "week2" / "micrograd.py")
    assert gradescope.stage(sub, tmp_path / "staged") == []


def _unpack_like_gradescope(course_zip: Path, root: Path) -> None:
    """/autograder/source from the zip (modes kept, as unzip keeps them), run_autograder
    copied to /autograder, as Gradescope does."""
    source = root / "source"
    with zipfile.ZipFile(course_zip) as zf:
        zf.extractall(source)
        for info in zf.infolist():
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (source / info.filename).chmod(mode)
    shutil.copy2(source / "run_autograder", root / "run_autograder")


@pytest.mark.grading
@pytest.mark.timeout(900)
@pytest.mark.parametrize("solution", ["reference", "stubs"])
def test_run_autograder_grades_a_submission_into_gradescope_results(tmp_path, course_zip, solution):
    root = tmp_path / "autograder"
    _unpack_like_gradescope(course_zip, root)
    submission = root / "submission"
    submission.mkdir()
    source = (REFERENCE if solution == "reference" else STUBS) / "week2" / "attention.py"
    if solution == "reference":  # laid out like katas/
        (submission / "week2").mkdir()
        shutil.copy(source, submission / "week2" / "attention.py")
    else:  # Gradescope's drag-and-drop upload: the file alone
        shutil.copy(source, submission / "attention.py")
    env = {**os.environ, "KATA_AUTOGRADER_ROOT": str(root), "KATA_PYTHON": sys.executable,
           "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    # Gradescope's results.json: a score, and per test name, score, max_score, status, visibility
    assert isinstance(results["score"], (int, float)) and results["tests"]
    for test in results["tests"]:
        assert isinstance(test["name"], str) and test["name"].startswith("week2/test_attention")
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert isinstance(test.get("output", ""), str)
    assert any(t["visibility"] == "after_published" for t in results["tests"])  # hidden tests were graded
    possible = sum(t["max_score"] for t in results["tests"])
    assert possible > 0
    if solution == "reference":
        assert results["score"] == possible and all(t["status"] == "passed" for t in results["tests"])
    else:
        assert results["score"] == 0 and all(t["status"] == "failed" for t in results["tests"])
        # the uploaded file was graded (staged as week2/attention.py), not a missing module
        assert any("NOT STARTED" in t["output"] for t in results["tests"] if t["visibility"] == "visible")
