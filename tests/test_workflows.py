"""The course's GitHub workflows (graders/workflows/): linted, and their commands run here.

GitHub is not available to the project's tests, so each workflow's `run:` steps are taken
from the YAML and run as GitHub would run them (bash -eo pipefail, in the workspace, with
the step's `env:`), on a workspace laid out as the workflow's checkouts lay it out. Only
`sudo` and `gh` are stand-ins, logging what they were asked; `kata` is this course's CLI
imported from the checkout, as `pip install -e .` would make it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graders import impl
from graders.release import release

WORKFLOWS = impl.PROJECT_ROOT / "graders" / "workflows"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def steps(workflow: str) -> dict[str, dict]:
    data = yaml.safe_load((WORKFLOWS / workflow).read_text())
    (job,) = data["jobs"].values()
    return {step.get("name", step.get("uses")): step for step in job["steps"]}


def test_workflows_pass_actionlint():
    actionlint = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install -e '.[dev]' installs it on x86-64)")
    result = subprocess.run([actionlint, "-no-color", *sorted(map(str, WORKFLOWS.glob("*.yml")))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", ["feedback.yml", "grade.yml"])
def test_no_expression_is_pasted_into_a_script(workflow):
    """`${{ }}` inside `run:` is pasted into the script before bash sees it: a branch name or
    PR title could inject commands. Values reach scripts through `env:` only."""
    for name, step in steps(workflow).items():
        assert "${{" not in step.get("run", ""), f"{workflow}: step {name!r} pastes an expression into its script"


def test_grading_workflow_trusts_only_the_base_branch_and_the_instructor_repository():
    data = yaml.safe_load((WORKFLOWS / "grade.yml").read_text())
    checkouts = {s["with"]["path"]: s["with"] for s in steps("grade.yml").values()
                 if s.get("uses", "").startswith("actions/checkout")}
    assert checkouts["course"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert checkouts["submission"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert all(c.get("persist-credentials") is False for c in checkouts.values())
    assert "secrets." in checkouts["instructor"]["token"]
    for name, step in steps("grade.yml").items():  # the one secret goes to the instructor checkout alone
        if name != "Hidden tests and reference (private instructor repository)":
            assert "secrets." not in json.dumps(step), f"step {name!r} sees a secret"
    assert data["permissions"] == {"contents": "read", "pull-requests": "write"}


# --- running the steps -------------------------------------------------------------------


def fake_tools(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir()
    tools = {
        "sudo": '"$@"',  # the tests already run with whatever privileges they have
        "gh": f'printf "%s\\n" "gh $*" >> {log}',
        # `pip install -e .` in the checkout named by KATA_CHECKOUT (the workflow's working tree)
        "kata": f'PYTHONPATH="$KATA_CHECKOUT" exec {sys.executable} -m graders.cli "$@"',
    }
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{'exec ' if name == 'sudo' else ''}{body}\n")
        path.chmod(0o755)


def run_step(step: dict, workspace: Path, contexts: dict[str, str], extra_env: dict[str, str]) -> None:
    def resolve(value: str) -> str:
        def one(match):
            assert match.group(1) in contexts, f"the test does not know the expression {match.group(0)}"
            return contexts[match.group(1)]
        return EXPRESSION.sub(one, str(value))

    runner = {k: v for k, v in os.environ.items() if not k.startswith(("KATA_", "PYTEST_"))}  # not this session's
    env = {**runner, **extra_env, **{k: resolve(v) for k, v in step.get("env", {}).items()}}
    cwd = workspace / step.get("working-directory", ".")
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"step {step.get('name')!r} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture
def workspace(tmp_path):
    """The checkouts of both workflows: a student repository (the release) at its base
    branch, the pull request (the release with week2/attention solved), the instructor's
    private repository (this course)."""
    course = tmp_path / "course"
    release(course)
    submission = tmp_path / "submission"
    shutil.copytree(course, submission)
    shutil.copy(impl.PROJECT_ROOT / "reference" / "week2" / "attention.py", submission / "katas" / "week2")
    instructor = tmp_path / "instructor"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(impl.PROJECT_ROOT / "katas", instructor / "katas", ignore=ignore)
    shutil.copytree(impl.PROJECT_ROOT / "reference", instructor / "reference", ignore=ignore)
    fake_tools(tmp_path / "bin", tmp_path / "gh.log")
    return tmp_path


CONTEXTS = {"vars.KATA_ONLY": "week2/attention", "github.token": "not-a-real-token",
            "github.event.pull_request.number": "7", "github.repository": "course/students"}


def base_env(workspace: Path, checkout: str) -> dict[str, str]:
    return {"PATH": f"{workspace / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_WORKSPACE": str(workspace), "GITHUB_STEP_SUMMARY": str(workspace / "summary.md"),
            "KATA_CHECKOUT": str(workspace / checkout), "KATA_STATE_DIR": str(workspace / "state")}


@pytest.mark.grading
@pytest.mark.timeout(1200)
def test_feedback_workflow_checks_the_pull_requests_code(workspace):
    step = steps("feedback.yml")["Public tests"]
    run_step(step, workspace / "submission", CONTEXTS, base_env(workspace, "submission"))
    with pytest.raises(AssertionError, match="failed"):  # the stub still fails: the step goes red
        run_step(step, workspace / "course", CONTEXTS, base_env(workspace, "course"))


@pytest.mark.grading
@pytest.mark.timeout(1200)
def test_grading_workflow_grades_with_trusted_tests_and_posts_the_score(workspace):
    grade = steps("grade.yml")
    env = base_env(workspace, "course")
    # the pull request also edits a public test to pass anything: it must not matter
    edited = workspace / "submission" / "katas" / "week2" / "test_attention.py"
    edited.write_text("def test_everything():\n    assert True\n")
    for name in ("Assemble the trusted course", "Grade in the sandbox", "Comment on the pull request"):
        run_step(grade[name], workspace, CONTEXTS, env)

    assert not (workspace / "instructor").exists(), "the instructor checkout must be gone before grading"
    assert (workspace / "course" / "katas" / "week2" / "test_attention_hidden.py").is_file()
    report = json.loads((workspace / "grade.json").read_text())
    hidden = [t for t in report["tests"] if t["hidden"]]
    assert hidden and report["score"] == report["max_score"] > 0
    assert set(report["katas"]) == {"week2/attention"}
    summary = (workspace / "summary.md").read_text()
    assert f"## Grade: {report['score']:g} / {report['max_score']:g}" in summary
    assert (workspace / "gh.log").read_text().split("\n")[0] == (
        "gh pr comment 7 --repo course/students --body-file grade.md --edit-last --create-if-none")
