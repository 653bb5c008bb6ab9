"""Mutation score of the kata tests, with cosmic-ray: how many small bugs in a kata's model
solution do its public and hidden tests catch?

    pip install -e '.[mutation]'                            # cosmic-ray 8.x
    python benchmarks/mutation_score.py                     # all katas (hours: not in CI)
    python benchmarks/mutation_score.py week8/react week4/dedup --limit 40 --jobs 2
    python benchmarks/mutation_score.py week8/react --operators 'core/ReplaceComparison.*' --json out.json

For each kata, cosmic-ray mutates `reference/weekN/<kata>.py` one small change at a time (`<`
for `<=`, `+` for `-`, a number changed, a loop that never runs, ...) and runs

    python -m pytest katas/weekN/test_<kata>.py katas/weekN/test_<kata>_hidden.py
        --impl ROOT --hidden -x -q -p no:randomly -p no:cacheprovider

A mutant is *killed* when a test fails, *timeout* when the tests run past the per-mutant
limit (5 x the unmutated run + 10 s; counted as killed, listed apart), *incompetent* when
cosmic-ray could not apply or run it (left out of the score), *equivalent* when it survives
but is listed in the kata's equivalent file (below), and *survived* otherwise. Every
unexplained survivor is printed as

    reference/weekN/<kata>.py:LINE OPERATOR  original -> mutated

so that a course author writes the test that kills it or marks it equivalent. Score =
(killed + timeout) / (killed + timeout + survived). Exit status: 0 when no kata has an
unexplained survivor, 1 when one has, 2 when a kata could not be measured (its unmutated
tests fail, cosmic-ray is missing, ...).

Why cosmic-ray (and not mutmut): the harness imports a kata from an implementation root by
path (`--impl reference` loads `reference/weekN/<kata>.py` from the project's root, as its own
private package; see graders/impl.py). cosmic-ray writes each mutant into the module file on
disk and runs an arbitrary test command, so that loader picks the mutant up. mutmut 3 runs the
tests from its own copied `mutants/` tree, switching mutants through trampolines in imported
code; the harness's loader reads the original file by path and would never see them.

The working tree is never touched: cosmic-ray edits files in place, so each kata runs in its
own temporary copy of the course (`git ls-files` tracked + untracked-not-ignored files, or a
plain copy without .git, caches and virtual environments), with that copy as the working
directory and first on PYTHONPATH. The course is also installed editable from the original
tree, so the script checks that `graders` (and with it the harness's PROJECT_ROOT) is
imported from the copy, and that breaking the copy's module file makes the tests fail (the
canary), before it trusts a single result.

What is mutated (`--mutate`):
  student    (default) the mutant stands in for a student's submission, like the project's
             own self-check (graders/selfcheck.py): a copy of reference/ outside the course
             is mutated and passed as `--impl ROOT --hidden`. The hidden tests compare the
             mutant with the untouched reference, as when grading.
  reference  `reference/weekN/<kata>.py` itself is mutated, with `--impl reference`. Every
             hidden test that computes its expected values with `reference(...)` then
             compares the mutant with itself and cannot fail; only tests with fixed
             expected values (literals, golden fixtures) can kill. Use it to see what the
             public tests alone catch.

cosmic-ray's own workflow, per kata: a config (local distributor, `timeout`), `cosmic-ray
baseline` (timed: it sets the per-mutant timeout), `cosmic-ray init` (the session, a sqlite
WorkDB), skipped jobs marked in the WorkDB (`--operators`, `--limit`: a seeded sample, the
same on every run), `cosmic-ray exec`, and the results read back with cosmic-ray's WorkDB API.
`--jobs N` measures N katas side by side, each in its own copy (cosmic-ray's local
distributor runs one mutant at a time); `--keep` keeps the copies and sessions, so that
`cr-report SESSION` and `cr-html SESSION` work on them afterwards.

Equivalent mutants: `tests/mutants/equivalent/<kata-name>.toml` (e.g. `react.toml` for
week8/react; kata names are unique across weeks). One table per mutant:

    [[equivalent]]
    operator = "core/ReplaceComparisonOperator_Lt_LtE"   # cosmic-ray's operator name, or a
                                                         # shell-style pattern ("core/ReplaceBinaryOperator_BitOr_*")
    original = "if len(steps) < max_steps:"              # the mutated source line, as printed
    mutated = "if len(steps) <= max_steps:"              # optional: the line after mutation
    line = 42                                            # optional: pins one of identical lines
    reason = "why no input the docstring allows tells them apart"

Lines are compared stripped and with runs of whitespace collapsed, so an entry survives
re-indentation and code moving up or down; it goes stale only when the line itself changes
(a full run, without --limit or --operators, reports entries that matched no survivor). A
mutation spanning several lines gives `original` and `mutated` with one "\\n" between lines;
a removed line gives `mutated = ""`. Equivalent means: the same behaviour for every input the
kata's docstring allows. A mutant a test could catch is a gap in the tests, not an equivalent.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT_DIR = ROOT / "tests" / "mutants" / "equivalent"
COPY_IGNORE = (".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", ".kata", "*.egg-info",
               "build", "dist", "mutants")  # the last: mutmut's output dir, if any
PROGRESS_EVERY_S = 60.0
_print_lock = threading.Lock()


def say(*parts) -> None:
    with _print_lock:
        print(*parts, flush=True)


# --- the katas and their equivalent mutants -----------------------------------------------------


def kata_ids() -> list[str]:
    sys.dont_write_bytecode = True  # this process imports graders from the working tree: leave it as it is
    sys.path.insert(0, str(ROOT))
    from graders import catalog
    return [k.id for k in catalog.all_katas(ROOT / "katas")]


def test_files(kata: str, course: Path) -> list[str]:
    from graders import catalog
    files = catalog.test_files([catalog.load(kata, course / "katas")], hidden=True, katas_dir=course / "katas")
    return [str(Path(f).relative_to(course)) for f in files]


def normalise(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip("\n")


@dataclass
class Equivalent:
    operator: str
    original: str
    mutated: str | None
    line: int | None
    reason: str
    used: bool = False

    def matches(self, mutant: "Mutant") -> bool:
        return (fnmatch.fnmatchcase(mutant.operator, self.operator)
                and normalise(self.original) == normalise(mutant.original)
                and (self.mutated is None or normalise(self.mutated) == normalise(mutant.mutated))
                and (self.line is None or self.line == mutant.line))


def equivalents_for(kata: str, directory: Path = EQUIVALENT_DIR) -> tuple[Path, list[Equivalent]]:
    path = directory / f"{kata.split('/')[1]}.toml"
    if not path.is_file():
        return path, []
    entries = []
    for i, e in enumerate(tomllib.loads(path.read_text(encoding="utf-8")).get("equivalent", [])):
        missing = [k for k in ("operator", "original", "reason") if not str(e.get(k, "")).strip()]
        if missing:
            raise ValueError(f"{path}: [[equivalent]] number {i + 1} lacks {', '.join(missing)}")
        entries.append(Equivalent(e["operator"], e["original"], e.get("mutated"), e.get("line"), e["reason"]))
    return path, entries


# --- one kata ------------------------------------------------------------------------------------


@dataclass
class Mutant:
    operator: str
    occurrence: int
    line: int
    original: str
    mutated: str
    outcome: str  # killed, timeout, incompetent, equivalent, survived, skipped
    reason: str = ""

    def describe(self, module: str) -> str:
        shown = lambda s: s.replace("\n", " / ") if s else "(removed)"  # noqa: E731
        return f"{module}:{self.line} {self.operator}  {shown(self.original)} -> {shown(self.mutated)}"


@dataclass
class KataResult:
    kata: str
    module: str
    generated: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    baseline_s: float = 0.0
    timeout_s: float = 0.0
    seconds: float = 0.0
    error: str = ""
    mutants: list[Mutant] = field(default_factory=list)
    stale_equivalents: list[str] = field(default_factory=list)
    killed_equivalents: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)

    @property
    def tested(self) -> int:
        return sum(self.count(o) for o in ("killed", "timeout", "equivalent", "survived"))

    @property
    def score(self) -> float | None:
        caught = self.count("killed") + self.count("timeout")
        scored = caught + self.count("survived")
        return caught / scored if scored else None


def copy_course(dest: Path) -> None:
    """The course's files (tracked and untracked-not-ignored; or all but caches) into dest."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*COPY_IGNORE))
        return
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
        elif source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(source), dest / name)


def child_env(course: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KATA_IMPL", "KATA_HIDDEN", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(course), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               KATA_HYPOTHESIS_PROFILE="dev",  # the project's derandomized default profile
               # optional Triton kernels (week3/flash_attention) run in Triton's interpreter on
               # CPU tensors, so their correctness tests see the kernel's mutants without a GPU
               TRITON_INTERPRET="1")
    return env


def write_config(path: Path, module: Path, test_command: str, timeout: float) -> None:
    quote = json.dumps  # a JSON string is a valid TOML basic string for these values
    path.write_text(
        "[cosmic-ray]\n"
        f"module-path = {quote(str(module))}\n"
        f"timeout = {timeout:.1f}\n"
        "excluded-modules = []\n"
        f"test-command = {quote(test_command)}\n\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n', encoding="utf-8")


def cosmic_ray(args: list[str], course: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *args], cwd=course, env=child_env(course),
                          capture_output=True, text=True, **kwargs)


def diff_lines(diff: str) -> tuple[str, str]:
    """(original, mutated) lines of a cosmic-ray diff, several joined by newlines."""
    old, new = [], []
    for line in (diff or "").splitlines():
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            old.append(line[1:].strip())
        elif line.startswith("+"):
            new.append(line[1:].strip())
    return "\n".join(old), "\n".join(new)


def select(items, operators: str | None, limit: int | None, seed: int) -> set[str]:
    """The job ids to skip: operators not matching the filter, then all but a seeded sample."""
    keep = [i for i in items if not operators or re.search(operators, i.mutations[0].operator_name)]
    keep.sort(key=lambda i: (str(i.mutations[0].operator_name), i.mutations[0].occurrence))
    if limit is not None and len(keep) > limit:
        keep = random.Random(seed).sample(keep, limit)
    kept = {i.job_id for i in keep}
    return {i.job_id for i in items} - kept


def run_kata(kata: str, args) -> KataResult:
    week, name = kata.split("/")
    module_label = f"reference/{kata}.py"
    result = KataResult(kata, module_label)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"mutation-{week}-{name}-"))
    try:
        _run_kata_in(tmp, kata, args, result)
    except Exception as exc:  # one kata's failure must not hide the others' results
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.seconds = time.monotonic() - started
        if args.keep:
            say(f"{kata}: kept {tmp} (session: {tmp / 'session.sqlite'})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _run_kata_in(tmp: Path, kata: str, args, result: KataResult) -> None:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    course = tmp / "course"
    course.mkdir()
    copy_course(course)
    if args.mutate == "student":
        impl_root = tmp / "impl"
        shutil.copytree(course / "reference", impl_root, ignore=shutil.ignore_patterns("__pycache__"))
        impl_flag = str(impl_root)
    else:
        impl_root, impl_flag = course / "reference", "reference"
    module = impl_root / f"{kata}.py"
    tests = test_files(kata, course)
    if not tests:
        raise RuntimeError(f"no test files for {kata}")
    test_command = shlex.join([sys.executable, "-m", "pytest", *tests, "--impl", impl_flag, "--hidden", "-x", "-q",
                               "-p", "no:randomly", "-p", "no:cacheprovider"])

    # The copy's graders must be the one imported, not the editable install's /work tree.
    probe = subprocess.run([sys.executable, "-c", "import graders.impl as i; print(i.PROJECT_ROOT)"],
                           cwd=course, env=child_env(course), capture_output=True, text=True)
    if probe.returncode != 0 or Path(probe.stdout.strip()).resolve() != course.resolve():
        raise RuntimeError(f"the copy's graders is not the one imported: {probe.stdout.strip()} {probe.stderr[-500:]}")

    config = tmp / "cosmic-ray.toml"
    write_config(config, module, test_command, args.baseline_timeout)
    t0 = time.monotonic()
    base = cosmic_ray(["baseline", str(config)], course)
    result.baseline_s = time.monotonic() - t0
    if base.returncode != 0:
        raise RuntimeError(f"the unmutated tests fail (cosmic-ray baseline, exit {base.returncode}):\n"
                           + (base.stdout + base.stderr)[-3000:])
    result.timeout_s = round(5 * result.baseline_s + 10, 1)
    write_config(config, module, test_command, result.timeout_s)

    # Canary: the test command must see the module file on disk change.
    source = module.read_text(encoding="utf-8")
    module.write_text('raise ImportError("mutation_score canary")\n' + source, encoding="utf-8")
    try:
        canary = subprocess.run(shlex.split(test_command), cwd=course, env=child_env(course), capture_output=True,
                                timeout=result.timeout_s)
    finally:
        module.write_text(source, encoding="utf-8")
    if canary.returncode == 0:
        raise RuntimeError(f"the tests pass with {module} broken: they do not load the mutated file")

    session = tmp / "session.sqlite"
    init = cosmic_ray(["init", str(config), str(session)], course)
    if init.returncode != 0:
        raise RuntimeError(f"cosmic-ray init failed:\n{(init.stdout + init.stderr)[-3000:]}")
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = db.work_items
        result.generated = len(items)
        skip = select(items, args.operators, args.limit, args.seed)
        if skip:
            db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    to_run = result.generated - len(skip)
    say(f"{kata}: {result.generated} mutants, running {to_run}; baseline {result.baseline_s:.1f} s, "
        f"timeout {result.timeout_s:.0f} s per mutant")

    proc = subprocess.Popen([sys.executable, "-m", "cosmic_ray.cli", "exec", str(config), str(session)], cwd=course,
                            env=child_env(course), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    last = time.monotonic()
    while proc.poll() is None:
        time.sleep(1)
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            say(f"{kata}: {done_count(session) - len(skip)}/{to_run} mutants done")
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"cosmic-ray exec failed (exit {proc.returncode}):\n{''.join(output)[-3000:]}")

    equivalent_file, equivalents = equivalents_for(kata)
    with use_db(str(session), WorkDB.Mode.open) as db:
        completed = db.completed_work_items
    for item, res in sorted(completed, key=lambda p: (p[0].mutations[0].start_pos, p[0].mutations[0].operator_name)):
        spec = item.mutations[0]
        original, mutated = diff_lines(res.diff)
        mutant = Mutant(spec.operator_name, spec.occurrence, spec.start_pos[0], original, mutated, "")
        if res.worker_outcome == WorkerOutcome.SKIPPED:
            mutant.outcome = "skipped"
        elif res.worker_outcome != WorkerOutcome.NORMAL or res.test_outcome == TestOutcome.INCOMPETENT:
            mutant.outcome = "incompetent"
            mutant.reason = (res.output or res.worker_outcome.value)[-300:]
        else:
            hit = next((e for e in equivalents if e.matches(mutant)), None)
            if hit:
                hit.used = True
            if res.test_outcome == TestOutcome.KILLED:
                mutant.outcome = "timeout" if res.output == "timeout" else "killed"
                if hit:
                    result.killed_equivalents.append(mutant.describe(result.module))
            elif hit:
                mutant.outcome, mutant.reason = "equivalent", hit.reason
            else:
                mutant.outcome = "survived"
        result.mutants.append(mutant)
        result.counts[mutant.outcome] = result.counts.get(mutant.outcome, 0) + 1
    if not args.limit and not args.operators:
        result.stale_equivalents = [f"{equivalent_file.relative_to(ROOT)}: {e.operator} {e.original!r}"
                                    for e in equivalents if not e.used]


def done_count(session: Path) -> int:
    import sqlite3
    try:
        with sqlite3.connect(f"file:{session}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("select count(*) from work_results").fetchone()[0]
    except sqlite3.Error:
        return 0


# --- the report ----------------------------------------------------------------------------------


def table(results: list[KataResult]) -> str:
    head = ("kata", "generated", "tested", "killed", "timeout", "incompetent", "equivalent", "survived", "score",
            "minutes")
    rows = [head]
    for r in results:
        if r.error:
            rows.append((r.kata, str(r.generated or "-"), "error", "", "", "", "", "", "", f"{r.seconds / 60:.1f}"))
            continue
        score = "-" if r.score is None else f"{100 * r.score:.0f}%"
        rows.append((r.kata, str(r.generated), str(r.tested), str(r.count("killed")), str(r.count("timeout")),
                     str(r.count("incompetent")), str(r.count("equivalent")), str(r.count("survived")), score,
                     f"{r.seconds / 60:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(rows[0]), fmt(tuple("-" * w for w in widths)), *map(fmt, rows[1:])])


def report(r: KataResult) -> None:
    lines = [f"== {r.kata} ({r.seconds / 60:.1f} min)"]
    if r.error:
        lines.append(f"ERROR: {r.error}")
    for outcome, title in (("survived", "unexplained survivors (write a test, or mark equivalent)"),
                           ("timeout", "timeouts (counted as killed)"), ("incompetent", "incompetent (not scored)")):
        found = [m for m in r.mutants if m.outcome == outcome]
        if found:
            lines.append(f"{title}:")
            lines.extend(f"  {m.describe(r.module)}" for m in found)
    if r.killed_equivalents:
        lines.append("listed as equivalent but killed (remove the entry):")
        lines.extend(f"  {d}" for d in r.killed_equivalents)
    if r.stale_equivalents:
        lines.append("equivalent entries that matched no mutant (stale?):")
        lines.extend(f"  {d}" for d in r.stale_equivalents)
    say("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("katas", nargs="*", metavar="weekN/kata", help="katas to measure (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="katas measured side by side (default 1)")
    parser.add_argument("--operators", metavar="REGEX",
                        help="only operators whose cosmic-ray name matches (re.search), e.g. 'Comparison|Number'")
    parser.add_argument("--limit", type=int, metavar="N", help="run a seeded sample of at most N mutants per kata")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    parser.add_argument("--mutate", choices=("student", "reference"), default="student",
                        help="mutate a copy passed as --impl (default) or reference/ itself (see the docstring)")
    parser.add_argument("--baseline-timeout", type=float, default=900.0,
                        help="seconds allowed to the unmutated run (default 900)")
    parser.add_argument("--json", metavar="FILE", help="write every kata's counts and mutants as JSON")
    parser.add_argument("--keep", action="store_true", help="keep each kata's temporary copy and session")
    args = parser.parse_args(argv)

    if importlib.util.find_spec("cosmic_ray") is None:
        print("cosmic-ray is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    if args.operators:
        try:
            re.compile(args.operators)
        except re.error as exc:
            parser.error(f"--operators: {exc}")
    known = kata_ids()
    katas = args.katas or known
    unknown = [k for k in katas if k not in known]
    if unknown:
        parser.error(f"unknown katas {unknown}; known: {' '.join(known)}")
    for kata in katas:  # a broken equivalent file fails now, not after an hour of mutants
        equivalents_for(kata)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_kata, kata, args) for kata in katas]
        results = []
        for future in futures:
            results.append(future.result())
            report(results[-1])
    say("\n" + table(results))
    if args.limit:
        say(f"(a seeded sample of at most {args.limit} mutants per kata, seed {args.seed})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "mutate": args.mutate, "limit": args.limit, "seed": args.seed, "operators": args.operators,
            "katas": [{**{k: v for k, v in asdict(r).items() if k != "mutants"}, "tested": r.tested, "score": r.score,
                       "mutants": [asdict(m) for m in r.mutants if m.outcome != "skipped"]} for r in results],
        }, indent=2) + "\n")
    if any(r.error for r in results):
        return 2
    return 1 if any(r.count("survived") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
