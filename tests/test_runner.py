"""graders.runner: the one place pytest sessions are built (run here, in a fresh interpreter)."""

import json
import subprocess
import sys

from graders import impl, runner

SCRIPT = """
import json, sys
from graders import runner
files = ["katas/week2/test_micrograd.py", "katas/week2/test_micrograd_hidden.py"]
collected = runner.run(files, hidden=True, collect_only=True)
ran = runner.run(files[:1], impl="reference", profile="grading")
print(json.dumps({"collect_exit": int(collected.exit_code), "items": [vars(i) for i in collected.collected],
                  "run_exit": int(ran.exit_code), "ran": ran.ran, "tests": ran.tests}))
"""


def run_script() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=impl.PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_collection_is_typed_and_complete_and_a_run_reports_every_test():
    out = run_script()
    assert out["collect_exit"] == 0
    items = out["items"]
    assert items and all(i["kata"] == "week2/micrograd" for i in items)
    assert any(i["hidden"] for i in items) and any(not i["hidden"] for i in items)
    assert all(i["points"] for i in items), "every kata test is graded"
    assert out["run_exit"] == 0 and out["ran"]
    public = [i["nodeid"] for i in items if not i["hidden"]]
    assert sorted(t["nodeid"] for t in out["tests"]) == sorted(public)
    assert all(t["outcome"] == "passed" for t in out["tests"])


def test_arguments_pin_the_course_config_and_import_mode():
    args = runner.arguments(["katas/week2/test_attention.py"], impl="reference", hidden=True, profile="grading")
    root = impl.PROJECT_ROOT
    assert args[:1] == ["katas/week2/test_attention.py"]
    for pair in (["--impl", "reference"], ["--rootdir", str(root)], ["-c", str(root / "pyproject.toml")],
                 ["-o", "addopts=--import-mode=importlib"], ["--hypothesis-profile", "grading"]):
        assert any(args[i:i + 2] == pair for i in range(len(args))), pair
    assert "--hidden" in args and "--collect-only" not in args
    assert "--impl" not in runner.arguments([], impl=None)
