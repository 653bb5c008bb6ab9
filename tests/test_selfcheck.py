"""The course's own guarantees, for every kata: stubs earn nothing, every must-catch mistake
is caught with its hint, and correct solutions written differently pass.

All the kata sessions these tests need run once, together, in parallel worker processes
(`graders.selfcheck`); each test then reads its own session's report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

pytestmark = pytest.mark.timeout(2400)  # one fixture runs every kata session of the selection

from graders import catalog, impl, selfcheck


@dataclass(frozen=True)
class Job:
    id: str
    kata: str
    kind: str  # "stubs", "mutant", "alternative"
    mutant: selfcheck.Mutant | None = None
    alternative: Path | None = None


KATAS = [k.id for k in catalog.all_katas()]
JOBS = (
    [Job(f"stubs:{k}", k, "stubs") for k in KATAS]
    + [Job(m.id, m.kata, "mutant", mutant=m) for m in selfcheck.mutants()]
    + [Job(f"{k}:alt:{p.stem}", k, "alternative", alternative=p) for k, p in selfcheck.alternatives()]
)


@pytest.fixture(scope="session")
def reports(request, tmp_path_factory, worker_id):
    """Run every selected job's kata session at once; {job id: report}.

    Under pytest-xdist every worker collects the same jobs, and the first one to get here
    runs them all (in `graders.selfcheck`'s own worker processes); the others wait for its
    reports instead of running every session again."""
    selected = sorted({item.callspec.params["job"] for item in request.session.items
                       if hasattr(item, "callspec") and isinstance(item.callspec.params.get("job"), Job)},
                      key=lambda job: job.id)
    if worker_id == "master":
        return _run(selected, tmp_path_factory.mktemp("selfcheck"))
    shared = tmp_path_factory.getbasetemp().parent  # one directory for all the workers of this run
    key = hashlib.sha256("\n".join(job.id for job in selected).encode()).hexdigest()[:16]
    done = shared / f"selfcheck-{key}.json"
    with FileLock(str(done) + ".lock"):
        if not done.is_file():
            done.write_text(json.dumps(_run(selected, shared / f"selfcheck-{key}")))
    return json.loads(done.read_text())


def _run(jobs: list[Job], base: Path) -> dict:
    runs = []
    for job in jobs:
        tests = catalog.test_files([catalog.load(job.kata)], hidden=True)
        if job.kind == "stubs":
            root = str(impl.NAMED_ROOTS["katas"])
        else:
            reference_source = (impl.NAMED_ROOTS["reference"] / f"{job.kata}.py").read_text(encoding="utf-8")
            source = (selfcheck.mutate(reference_source, job.mutant.replacements, job.id) if job.mutant
                      else job.alternative.read_text(encoding="utf-8"))
            root = str(selfcheck.make_root(base / job.id.replace("/", "-").replace(":", "-") / "root", job.kata,
                                           source))
        run = {"id": job.id, "tests": tests, "impl": root}
        if job.mutant:  # its verdict is known at the first graded failure naming its hint
            run["stop_at"] = hint_line(job.mutant)
        runs.append(run)
    return selfcheck.run(runs)


def hint_line(mutant: selfcheck.Mutant) -> str:
    """What a failure that names the mutant's mistake carries (graders.check's hint line)."""
    return f"Hint ({mutant.mistake}): {catalog.load(mutant.kata).hint_for(mutant.mistake)}"


def graded(report):
    return [r for r in report["results"] if r["points"]]


@pytest.mark.mutation
@pytest.mark.parametrize("job", [j for j in JOBS if j.kind == "stubs"], ids=lambda j: j.id)
def test_stubs_earn_no_points(job, reports):
    report = reports[job.id]
    assert report is not None, f"the stub session for {job.kata} did not produce a report"
    results = report["results"]
    assert results, f"no test of {job.kata} ran against the stubs"
    ungraded = [r["nodeid"] for r in results if not r["points"]]
    assert not ungraded, f"tests without @pytest.mark.points: {ungraded}"
    passed = [r["nodeid"] for r in results if r["outcome"] == "passed"]
    assert not passed, f"the stubs pass graded tests (free points): {passed}"
    errors = [r["nodeid"] for r in results if r["outcome"] == "error"]
    assert not errors, f"tests error against the stubs instead of failing: {errors}"
    silent = [r["nodeid"] for r in results if r["outcome"] == "failed" and "NOT STARTED" not in r["message"]
              and "MISSING" not in r["message"]]
    assert not silent, f"stub failures that do not say NOT STARTED: {silent}"


@pytest.mark.mutation
@pytest.mark.parametrize("job", [j for j in JOBS if j.kind == "mutant"], ids=lambda j: j.id)
def test_mutant_is_caught_with_its_hint(job, reports):
    report = reports[job.id]
    assert report is not None, f"the session for mutant {job.id} did not produce a report"
    failures = [r for r in graded(report) if r["outcome"] in ("failed", "error")]
    assert failures, f"mutant {job.id} ({job.mutant.mistake}) passes every test of {job.kata}"
    named = [r for r in failures if hint_line(job.mutant) in r["message"]]
    assert named, (f"mutant {job.id} fails {len(failures)} tests, but none names the mistake "
                   f"{job.mutant.mistake!r}; failures: {[r['nodeid'] for r in failures][:5]}")


@pytest.mark.mutation
@pytest.mark.parametrize("job", [j for j in JOBS if j.kind == "alternative"], ids=lambda j: j.id)
def test_correct_alternative_passes(job, reports):
    report = reports[job.id]
    assert report is not None, f"the session for {job.id} did not produce a report"
    bad = [(r["nodeid"], r["message"][:300]) for r in report["results"] if r["outcome"] not in ("passed", "skipped")]
    assert not bad, f"a correct alternative fails: {bad}"
    assert any(r["outcome"] == "passed" for r in report["results"])


@pytest.mark.parametrize("kata", KATAS)
def test_every_kata_has_its_files(kata):
    week, name = kata.split("/")
    for path in (f"katas/{week}/{name}.py", f"reference/{week}/{name}.py", f"katas/{week}/{name}.toml",
                 f"katas/{week}/test_{name}.py", f"tests/mutants/{week}/{name}.toml"):
        assert (impl.PROJECT_ROOT / path).is_file(), f"{kata}: {path} is missing"
    data = catalog.load(kata)
    assert data.hints, f"{kata}: no progressive hints"
    mistakes = {m.mistake for m in selfcheck.mutants(kata)}
    assert mistakes == set(data.mistakes), (
        f"{kata}: every mistake needs a mutant and every mutant a mistake; "
        f"without mutant: {set(data.mistakes) - mistakes}, unknown: {mistakes - set(data.mistakes)}")
