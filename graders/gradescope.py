"""`kata gradescope build OUT.zip [--only weekN[/kata]]`: the course as a Gradescope autograder.

The zip holds, at its top level (Gradescope unpacks it into `/autograder/source`):

- `setup.sh`: run once, as root, when Gradescope builds the image: bubblewrap and libseccomp
  (the grading sandbox), a virtual environment in `/autograder/venv` with the CPU build of
  torch (the README's pinned version) and the course installed editable;
- `run_autograder`: run for every submission: `kata grade` of the submission, public and
  hidden tests, in the sandbox, written to `/autograder/results/results.json` (Gradescope's
  format: `score`, and per test `name`, `score`, `max_score`, `status`, `output`,
  `visibility`; hidden tests are `after_published`);
- the trusted course, which `kata grade` needs and students never see: `graders/`, `katas/`
  (hidden tests included), `reference/`, `fixtures/`, `checkpoints/`, `conftest.py`,
  `pyproject.toml`, `README.md`; never caches, `.git`, `.kata`, virtual environments, the
  project's own tests, or the fixture recipes (what `kata release` leaves out for students
  is here because the grader needs it; what neither needs is left out).

Student code only ever runs in `kata grade`'s sandbox, which holds the submission's kata
modules, the harness, fixtures and checkpoints, and tests with their expected values
stripped: never `reference/` or the hidden expected values.

A submission may be a directory laid out like `katas/` (`week2/attention.py`), a whole
course checkout (`katas/week2/attention.py`, e.g. from Gradescope's GitHub upload), one
folder around either, or the kata files alone (`attention.py`: Gradescope's drag-and-drop
upload puts every file at the top): `run_autograder` first stages it as `weekN/<kata>.py`
files (`python -m graders.gradescope stage`), copying only plain files, never links.

`KATA_AUTOGRADER_ROOT` relocates `/autograder` (the tests unpack the zip into a temporary
directory laid out like Gradescope's), and `KATA_PYTHON` picks the interpreter
(default: `$KATA_AUTOGRADER_ROOT/venv/bin/python`, else `python3`).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from . import catalog
from .impl import PROJECT_ROOT

ROOT_ENV = "KATA_AUTOGRADER_ROOT"
TORCH = "torch==2.13.0"  # the README's pinned version, here its CPU build (Gradescope has no GPU)
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

INCLUDE = ("graders", "katas", "reference", "fixtures", "checkpoints", "conftest.py", "pyproject.toml", "README.md")
# Never shipped: caches, version control, local state, environments, build output, and what
# `kata grade` does not need (fixture recipes regenerate fixtures; READY/TRAINED are local stamps).
EXCLUDE = ("__pycache__", "*.pyc", "*.pyo", ".git", ".kata", ".venv", "venv", ".hypothesis", ".pytest_cache",
           ".benchmarks", ".ipynb_checkpoints", ".mypy_cache", "*.egg-info", "build", "dist", "node_modules",
           "recipes", "READY", "TRAINED", ".DS_Store", "*.swp", "*~")
SUBMISSION_FILE_LIMIT = 1 << 20  # bytes; `kata grade` itself accepts at most 512 KB per module

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, on its Ubuntu image, from the unpacked autograder
# (/autograder/source). Written by `kata gradescope build`.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="${{{root_env}:-/autograder}}"
export DEBIAN_FRONTEND=noninteractive
# kata grade's sandbox: bubblewrap, and libseccomp for its system-call filter
apt-get update
apt-get install -y --no-install-recommends bubblewrap libseccomp2 python3 python3-venv python3-pip
python3 -m venv "$ROOT/venv"
. "$ROOT/venv/bin/activate"
pip install --upgrade pip
# the CPU build of the README's pinned torch (the default Linux wheel is a multi-GB CUDA build)
pip install {torch} --index-url {torch_index}
pip install -e .
# week4/dedup's agreement test is skipped (and its point not counted) without it
pip install "datasketch>=1.6"
# the sandbox's unprivileged children read the interpreter and its packages
chmod -R a+rX "$ROOT/venv" .
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this, as root, for every submission (from a copy in /autograder). It
# grades /autograder/submission with `kata grade` (public and hidden tests, in the
# bubblewrap sandbox) and writes /autograder/results/results.json.
# Written by `kata gradescope build`{only_note}.
# {root_env} relocates /autograder; KATA_PYTHON picks the interpreter.
set -euo pipefail
ROOT="${{{root_env}:-/autograder}}"
SOURCE="$ROOT/source"
PYTHON="${{KATA_PYTHON:-$ROOT/venv/bin/python}}"
if [ ! -x "$PYTHON" ]; then PYTHON=python3; fi
cd "$SOURCE"
STAGED="$(mktemp -d)"
trap 'rm -rf "$STAGED"' EXIT
"$PYTHON" -m graders.gradescope stage "$ROOT/submission" "$STAGED/submission"
mkdir -p "$ROOT/results"
"$PYTHON" -m graders.cli grade "$STAGED/submission" --tests "$SOURCE" --hidden{only} \\
    --format json --out "$ROOT/results/results.json"
"""


# --- the command ----------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    """Register `kata gradescope build` (and `stage`, which run_autograder uses) on `kata`'s
    argparse subparsers."""
    p = subparsers.add_parser("gradescope", help="package the course as a Gradescope autograder zip")
    commands = p.add_subparsers(dest="gradescope_command", required=True)
    b = commands.add_parser("build", help="write the autograder zip (setup.sh, run_autograder, the trusted course)")
    b.add_argument("out", metavar="OUT.zip", help="the zip to write")
    b.add_argument("--only", default=None, help="grade only weekN or weekN/kata")
    b.set_defaults(func=run)
    s = commands.add_parser("stage", help="(run_autograder) lay a submission out as weekN/<kata>.py files")
    s.add_argument("submission")
    s.add_argument("out_dir")
    s.set_defaults(func=run)


def run(args, console) -> int:
    try:
        if args.gradescope_command == "stage":
            files = stage(Path(args.submission), Path(args.out_dir))
            console.print(f"staged {len(files)} kata file(s) from {args.submission}", markup=False, highlight=False)
            return 0
        files = build(Path(args.out), only=args.only)
    except (FileNotFoundError, FileExistsError, LookupError) as exc:
        print(f"kata gradescope: {exc}", file=sys.stderr)
        return 2
    what = f"grades {args.only}" if args.only else "grades the whole course"
    console.print(f"wrote {args.out} ({len(files)} files; {what}, hidden tests included). "
                  "Upload it as the autograder of a Gradescope programming assignment.", markup=False,
                  highlight=False)
    return 0


# --- building the zip -----------------------------------------------------------------------


def _excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDE)


def course_files(course: Path = PROJECT_ROOT, skip: Path | None = None) -> list[Path]:
    """The trusted course's files to ship, relative to `course`: regular files only (no links)."""
    files = []
    for name in INCLUDE:
        top = course / name
        if top.is_symlink():
            continue
        if top.is_file():
            files.append(Path(name))
            continue
        for directory, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not _excluded(d) and not (Path(directory) / d).is_symlink())
            for file in sorted(names):
                path = Path(directory) / file
                if _excluded(file) or path.is_symlink() or not path.is_file():
                    continue
                if skip is not None and path.resolve() == skip:
                    continue
                files.append(path.relative_to(course))
    return sorted(files)


def scripts(only: str | None = None) -> dict[str, str]:
    """setup.sh and run_autograder, for grading everything or `only` one week or kata."""
    return {
        "setup.sh": SETUP_SH.format(root_env=ROOT_ENV, torch=TORCH, torch_index=TORCH_INDEX),
        "run_autograder": RUN_AUTOGRADER.format(
            root_env=ROOT_ENV, only=f" --only {shlex.quote(only)}" if only else "",
            only_note=f" --only {only}" if only else ""),
    }


def build(out: str | Path, only: str | None = None, course: Path = PROJECT_ROOT) -> list[str]:
    """Write the autograder zip; returns its entries. LookupError for an unknown `only`."""
    course = Path(course).resolve()
    out = Path(out).resolve()
    if only:
        only = only.strip("/")
        katas = catalog.all_katas(course / "katas")
        if not any(k.id == only or k.week == only for k in katas):
            known = ", ".join(sorted({k.week for k in katas} | {k.id for k in katas}))
            raise LookupError(f"no kata or week called {only!r}. Known: {known}")
    if out.suffix.lower() != ".zip":
        raise LookupError(f"{out.name}: the autograder must be a .zip file")
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".autograder-", suffix=".zip", delete=False) as tmp:
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, text in scripts(only).items():
                    _add(zf, name, text.encode(), 0o755)
                    entries.append(name)
                for relative in course_files(course, skip=out):
                    _add(zf, relative.as_posix(), (course / relative).read_bytes(), 0o644)
                    entries.append(relative.as_posix())
        except BaseException:
            os.unlink(tmp.name)
            raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)  # as a file written with open(): not the temporary file's 0600
    os.replace(tmp.name, out)
    return entries


def _add(zf: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    """One entry with a fixed date (the same course gives the same zip) and its Unix mode
    (unzip keeps the scripts executable)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16
    zf.writestr(info, data)


# --- staging a submission (run_autograder) --------------------------------------------------


def stage(submission: Path, out: Path, course: Path = PROJECT_ROOT) -> list[Path]:
    """Copy the submission's kata modules into `out` as `weekN/<kata>.py`; returns the files.

    Accepts a katas/-like layout, a course checkout (`katas/weekN/...`), one folder around
    either, or the modules at the top (`attention.py`). Only plain files inside the submission
    are copied: a link (or a file inside a linked folder) is never followed."""
    submission = Path(submission)
    if not submission.is_dir() or submission.is_symlink():
        raise FileNotFoundError(f"{submission} is not a directory")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    katas = catalog.all_katas(Path(course) / "katas")
    base = _submission_base(submission)
    written = []
    for kata in katas:
        for candidate in (base / kata.week / f"{kata.name}.py", base / f"{kata.name}.py"):
            if _plain_file_inside(candidate, submission):
                target = out / kata.week / f"{kata.name}.py"
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(candidate, target, follow_symlinks=False)
                written.append(target)
                break
    return written


def _submission_base(submission: Path) -> Path:
    """Where the weekN/ folders (or the modules themselves) are: the submission, its
    `katas/`, or the one folder it holds (an uploaded zip of a folder)."""
    base = submission
    entries = [p for p in base.iterdir() if not p.name.startswith((".", "__MACOSX")) and not p.is_symlink()]
    folders = [p for p in entries if p.is_dir()]
    own = any(p.name == "katas" or p.name.startswith("week") for p in folders) \
        or any(p.suffix == ".py" for p in entries)
    if not own and len(folders) == 1:
        base = folders[0]
    katas = base / "katas"
    if katas.is_dir() and not katas.is_symlink():
        base = katas
    return base


def _plain_file_inside(path: Path, root: Path) -> bool:
    """A regular file under `root`, reached through no link, of a sensible size."""
    current = path
    while current != root:
        if current.is_symlink():
            return False
        if current.parent == current:  # not under root
            return False
        current = current.parent
    try:
        return path.is_file() and path.stat().st_size <= SUBMISSION_FILE_LIMIT
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m graders.gradescope build|stage ...`: the same commands without `kata`'s
    other subcommands (run_autograder uses `stage`)."""
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m graders.gradescope")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser(commands)
    # `gradescope` is this program's only command: accept `stage ...` and `build ...` directly
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["gradescope"]:
        argv = ["gradescope", *argv]
    args = parser.parse_args(argv)
    return args.func(args, Console(highlight=False))


if __name__ == "__main__":
    sys.exit(main())
