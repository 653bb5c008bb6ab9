"""`kata release OUT_DIR`: the student copy of the course.

Everything a student needs — stubs, public tests, kata data (hints), fixtures, checkpoints,
the harness, README — and nothing they must not have: no `reference/`, no hidden tests, no
fixture recipes (they call the reference), no mutants or project tests, no CI of ours.
The course's own CI goes in instead: `graders/workflows/*.yml` become the student
repository's `.github/workflows/` (feedback on pull requests, and trusted grading).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .impl import PROJECT_ROOT

INCLUDE = ["katas", "fixtures", "checkpoints", "graders", "docs", "conftest.py", "pyproject.toml", "README.md",
           ".gitignore"]
EXCLUDE_PATTERNS = ["test_*_hidden.py", "recipes", "__pycache__", "*.pyc", "READY", "TRAINED", ".kata"]


def release(out_dir: str | Path, source: Path = PROJECT_ROOT) -> list[Path]:
    """Write the student copy into `out_dir` (which must not exist yet); returns the files written."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(*EXCLUDE_PATTERNS)
    for name in INCLUDE:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, out / name)
    workflows = out / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for workflow in sorted((source / "graders" / "workflows").glob("*.yml")):
        shutil.copy2(workflow, workflows / workflow.name)
    return sorted(p for p in out.rglob("*") if p.is_file())
