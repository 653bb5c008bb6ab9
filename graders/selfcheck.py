"""The course's own checks: run kata tests against many implementations, fast.

Used by the project's tests (and by anyone adding a kata) to prove three things:

- the stubs earn no graded test (every graded test fails, none errors);
- every mutant — the reference with one must-catch mistake, described as text replacements
  in `tests/mutants/weekN/<kata>.toml` — fails at least one test carrying that mistake's hint;
- every correct alternative in `tests/alternatives/weekN/<kata>/` passes everything.

Each job is a pytest session over a kata's test files with `--impl` set to a throwaway root.
Sessions run one after another inside a few worker processes (torch is imported once per
worker, not once per job): kata test modules only hold lazy handles to student code, so a
module imported by one session is correct for the next one, whatever its root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import impl, runner
from . import session as sessions

TESTS_DIR = impl.PROJECT_ROOT / "tests"
MUTANTS_DIR = TESTS_DIR / "mutants"
ALTERNATIVES_DIR = TESTS_DIR / "alternatives"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Mutant:
    kata: str  # "week2/attention"
    mistake: str
    replacements: tuple[tuple[str, str], ...]
    index: int

    @property
    def id(self) -> str:
        return f"{self.kata}:{self.mistake}:{self.index}"


def mutants(kata_filter: str | None = None) -> list[Mutant]:
    found = []
    for spec in sorted(MUTANTS_DIR.glob("week*/*.toml")):
        kata = f"{spec.parent.name}/{spec.stem}"
        if kata_filter and kata != kata_filter:
            continue
        data = tomllib.loads(spec.read_text(encoding="utf-8"))
        for i, m in enumerate(data.get("mutant", [])):
            found.append(Mutant(kata, m["mistake"], tuple(tuple(r) for r in m["replace"]), i))
    return found


def alternatives(kata_filter: str | None = None) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(ALTERNATIVES_DIR.glob("week*/*/*.py")):
        kata = f"{path.parent.parent.name}/{path.parent.name}"
        if not kata_filter or kata == kata_filter:
            found.append((kata, path))
    return found


def mutate(source: str, replacements: tuple[tuple[str, str], ...], label: str) -> str:
    for old, new in replacements:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"{label}: the text to replace occurs {count} times in the reference, not once: {old!r}")
        source = source.replace(old, new)
    return source


def make_root(base: Path, kata: str, source: str) -> Path:
    """A full copy of the reference tree with `kata`'s module replaced by `source`."""
    root = base
    shutil.copytree(impl.NAMED_ROOTS["reference"], root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / f"{kata}.py").write_text(source, encoding="utf-8")
    return root


# --- running sessions --------------------------------------------------------------------


class StopOnceReported:
    """Ends a session at the first graded failure whose message contains `text`.

    A mutant's verdict is "some graded test fails and names the mistake's hint": once one
    has, the tests after it cannot change the verdict, only cost time (a mutant often breaks
    the kata's first test, and its session would otherwise run every test of the kata)."""

    def __init__(self, text: str):
        self.text = text

    @pytest.hookimpl(trylast=True)  # after graders.plugin has recorded the test's result
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kata_session = sessions.of(self.session.config)
        last = kata_session.results[-1] if kata_session and kata_session.results else None
        if (last and last["nodeid"] == report.nodeid and last["points"] and last["outcome"] in ("failed", "error")
                and self.text in last["message"]):
            self.session.shouldstop = f"a failure names {self.text!r}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session


def _run_jobs_here(jobs: list[dict]) -> None:
    """Worker side: one pytest session per job, output swallowed, results to job['report']."""
    for job in jobs:
        stop = (StopOnceReported(job["stop_at"]),) if job.get("stop_at") else ()
        runner.run_quietly(job["tests"], impl=job["impl"], hidden=True, plugins=stop,
                           extra=("--kata-report", job["report"]))


def run(jobs: list[dict], workers: int | None = None) -> dict[str, dict]:
    """Run jobs ({id, tests, impl}, and `stop_at`: a text that ends the job's session at the
    first graded failure naming it) in worker processes; returns {id: report}."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with tempfile.TemporaryDirectory(prefix="kata-selfcheck-") as tmp:
        for i, job in enumerate(jobs):
            job["report"] = str(Path(tmp) / f"report-{i}.json")
        chunks = [jobs[i::workers] for i in range(workers)]

        def work(chunk):
            spec = Path(tmp) / f"chunk-{id(chunk)}.json"
            spec.write_text(json.dumps(chunk))
            subprocess.run([sys.executable, "-m", "graders.selfcheck", str(spec)], cwd=impl.PROJECT_ROOT,
                           env={**os.environ, "KATA_HYPOTHESIS_PROFILE": "dev", "OMP_NUM_THREADS": "1"}, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, chunks))
        reports = {}
        for job in jobs:
            path = Path(job["report"])
            reports[job["id"]] = json.loads(path.read_text()) if path.is_file() else None
        return reports


if __name__ == "__main__":
    _run_jobs_here(json.loads(Path(sys.argv[1]).read_text()))
