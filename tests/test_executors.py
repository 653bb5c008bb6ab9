"""`kata grade --batch` on a pluggable executor (graders/executors.py): here, or on Ray."""

import io
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from graders import cli, impl
from graders.executors import GradeJob, LocalExecutor, RayExecutor, pack, report_from_json, unpack
from graders.reports import Report


class FakeJob(GradeJob):
    """Grades without a sandbox: a submission called `broken` raises, the others score 1."""

    def grade(self, submission, workers=None, collections=None):
        if submission.name == "broken":
            raise ValueError("week2/micrograd.py: something went wrong")
        report = Report(str(submission))
        report.tests.append({"name": "t", "kata": "week2/micrograd", "score": 1, "max_score": 1, "status": "passed",
                             "output": "", "visibility": "visible", "hidden": False})
        report.katas["week2/micrograd"] = {"score": 1, "max_score": 1, "passed": 1, "failed": 0}
        return report


def test_local_executor_turns_one_submissions_error_into_its_result_and_grades_the_others(tmp_path):
    subs = [tmp_path / name for name in ("alice", "broken", "carol")]
    results = dict(LocalExecutor(jobs=2).grade_all(subs, FakeJob()))
    assert set(results) == set(subs)
    assert results[tmp_path / "broken"] == "error: week2/micrograd.py: something went wrong"
    assert [results[tmp_path / n].score for n in ("alice", "carol")] == [1, 1]


def test_batch_writes_each_students_report_where_out_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(GradeJob, "grade", FakeJob.grade)
    batch = tmp_path / "batch"
    for name in ("alice", "broken", "carol"):
        (batch / name).mkdir(parents=True)
    reports = tmp_path / "reports"  # made by kata grade, as --csv's directory is
    assert cli.main(["grade", "--batch", str(batch), "--out", f"{reports}/{{student}}.json",
                     "--out", f"{reports}/{{student}}.md", "--csv", str(tmp_path / "out" / "gradebook.csv"),
                     "--unsafe-no-sandbox"]) == 0
    assert (tmp_path / "out" / "gradebook.csv").read_text().splitlines()[1:] == [
        "alice,1,1,1,", "broken,,0,,error: week2/micrograd.py: something went wrong", "carol,1,1,1,"]
    assert sorted(p.name for p in reports.iterdir()) == ["alice.json", "alice.md", "carol.json", "carol.md"]
    assert json.loads((reports / "carol.json").read_text())["score"] == 1
    assert "1 / 1" in (reports / "alice.md").read_text()
    assert "broken: error: week2/micrograd.py: something went wrong" in capsys.readouterr().out


def test_batch_refuses_an_out_file_that_does_not_name_the_student(tmp_path, capsys):
    (tmp_path / "alice").mkdir()
    code = cli.main(["grade", "--batch", str(tmp_path), "--out", str(tmp_path / "all.json"), "--unsafe-no-sandbox"])
    assert code == 2
    assert capsys.readouterr().err == (f"kata grade: with --batch, --out names each student's report with "
                                       f"{{student}}: {tmp_path / 'all.json'}\n")


def test_ray_missing_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "alice").mkdir()
    code = cli.main(["grade", "--batch", str(tmp_path), "--ray", "auto", "--unsafe-no-sandbox"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "kata grade: --ray needs Ray: pip install 'llm-katas[cluster]'\n"


def test_pack_carries_the_files_never_what_links_point_to(tmp_path):
    sub = tmp_path / "alice"
    (sub / "week2").mkdir(parents=True)
    (sub / "week2" / "micrograd.py").write_text("x = 1\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the cluster")
    (sub / "week2" / "attention.py").symlink_to(secret)
    os.mkfifo(sub / "week2" / "pipe")
    with tarfile.open(fileobj=io.BytesIO(pack(sub)), mode="r:gz") as tar:
        assert b"not for the cluster" not in b"".join(tar.extractfile(m).read() for m in tar if m.isfile())
    out = tmp_path / "out"
    out.mkdir()
    unpack(pack(sub), out)
    assert (out / "week2" / "micrograd.py").read_text() == "x = 1\n"
    assert (out / "week2" / "attention.py").is_symlink() and not (out / "week2" / "attention.py").exists()
    assert not (out / "week2" / "pipe").exists()


def test_pack_refuses_a_submission_over_its_size_limit(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"0" * 2048)
    with pytest.raises(ValueError, match="more than the .* MiB a grading task carries"):
        pack(tmp_path, limit=1024)


def test_a_json_report_comes_back_as_the_same_report(tmp_path):
    report = FakeJob().grade(tmp_path / "alice")
    report.protections, report.notes = ["bubblewrap"], ["a note"]
    back = report_from_json(json.dumps(report.as_json()), tmp_path / "alice")
    assert back.as_json() == report.as_json()


def test_the_job_passes_kata_grades_options_on():
    job = GradeJob(hidden=True, only="week2/micrograd", timeout=30, test_timeout=5)
    assert job.options() == ["--test-timeout", "5.0", "--hidden", "--only", "week2/micrograd", "--timeout", "30.0"]
    assert not job.has_gpu_tests()
    assert GradeJob(only="week3/flash_attention").has_gpu_tests()


class FakeRay:
    """Just enough of `ray` to see what RayExecutor asks for: every task returns `report`."""

    def __init__(self, resources, report):
        self.resources, self.report, self.asked = resources, report, []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return self.resources

    def remote(self, fn):
        fake = self

        class Task:
            def options(self, **resources):
                fake.asked.append(resources)
                return self

            def remote(self, packed, name, options, timeout):
                return name

        return Task()

    def wait(self, refs, num_returns):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return json.dumps(self.report.as_json())


@pytest.mark.parametrize("only,cluster,gpus", [
    ("week3/flash_attention", {"CPU": 8, "GPU": 2}, 1),  # gpu tests and GPUs: run them on one
    ("week3/flash_attention", {"CPU": 8}, 0),  # no GPU in the cluster: CPU workers, gpu tests skip
    ("week2/micrograd", {"CPU": 8, "GPU": 2}, 0),  # no gpu test selected: no GPU held
])
def test_ray_asks_for_a_gpu_only_for_gpu_tests_on_a_cluster_that_has_one(tmp_path, monkeypatch, only, cluster, gpus):
    fake = FakeRay(cluster, FakeJob().grade(tmp_path / "alice"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    (tmp_path / "alice").mkdir()
    [(path, report)] = RayExecutor("auto").grade_all([tmp_path / "alice"], GradeJob(only=only))
    assert fake.asked == [{"num_cpus": 1, "num_gpus": gpus}]
    assert path == tmp_path / "alice" and report.score == 1 and report.submission == str(path.resolve())


# --- a real Ray instance (slow stage) ---------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def make_batch(directory: Path) -> list[Path]:
    """Two submissions laid out as `<sub>/week2/*.py`: the reference's modules and the stubs'."""
    subs = []
    for name, source in (("reference", impl.NAMED_ROOTS["reference"]), ("stubs", impl.NAMED_ROOTS["katas"])):
        week = directory / name / "week2"
        week.mkdir(parents=True)
        for module in (source / "week2").glob("*.py"):
            if not module.name.startswith("test_"):
                shutil.copy(module, week / module.name)
        subs.append(directory / name)
    return subs


def summary(report: Report) -> dict:
    return {"katas": report.katas, "tests": sorted((t["name"], t["status"], t["score"]) for t in report.tests)}


@pytest.mark.grading
@pytest.mark.timeout(1200)
def test_ray_grades_a_batch_like_the_local_executor(local_ray, tmp_path):
    subs = make_batch(tmp_path)
    job = GradeJob(only="week2/micrograd", timeout=600)
    on_ray = dict(RayExecutor("auto").grade_all(subs, job))
    here = dict(LocalExecutor(1).grade_all(subs, job))
    reference, stubs = on_ray[subs[0]], on_ray[subs[1]]
    assert isinstance(reference, Report) and isinstance(stubs, Report), on_ray
    assert reference.max_score > 0 and reference.score == reference.max_score
    assert stubs.max_score == reference.max_score and stubs.score == 0
    assert reference.submission == str(subs[0].resolve())
    assert {p: summary(r) for p, r in on_ray.items()} == {p: summary(r) for p, r in here.items()}
