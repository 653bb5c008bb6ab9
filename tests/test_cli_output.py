"""What the `kata` command prints, on an 80-column terminal, whatever the tests and students wrote.

Most tests here call a command in this process with its test run replaced by made-up
results (the layout and quoting are what is tested, not pytest), and print to an 80-column
console. A few run the real command in a subprocess where only that is honest: Ctrl-C in
the middle of a session, `kata list` collecting real tests, `kata grade` writing to a pipe.
"""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from graders import catalog, checking, cli, impl, runner
from graders.reports import Report

pytestmark = pytest.mark.timeout(300)

# Each one breaks rich markup a different way: an unmatched closing tag (MarkupError), a
# style, a link, and the harness's own bracketed values, which markup would swallow.
MARKUP_LOOKALIKES = [
    'ValueError("expected [/B] got [red]")',
    "[red]not red[/red] and [/]",
    "[link=x]not a link[/link]",
    "vocab [b' tt', b' ttt'] regex [sdmt] ids[i] vocab[b]",
]


def console() -> Console:
    return Console(file=io.StringIO(), width=80, highlight=False)


def printed(out: Console) -> str:
    return out.file.getvalue()


def result(nodeid: str, outcome: str = "failed", message: str = "", points: float = 1.0) -> dict:
    """A test result as graders.plugin records it."""
    kata = catalog.kata_id_for_test_file(nodeid.split("::")[0])
    return {"nodeid": nodeid, "kata": kata, "points": points, "hidden": False, "outcome": outcome,
            "message": message, "duration": 0.01}


def check(monkeypatch, results: list[dict], target: str | None = "week2/attention") -> tuple[int, str]:
    """`kata check TARGET` (stubs) as if pytest had produced `results`."""
    finished = runner.Results(pytest.ExitCode.TESTS_FAILED, results)
    monkeypatch.setattr(cli, "run_tests", lambda *args, **kwargs: finished)
    out = console()
    code = cli.cmd_check(argparse.Namespace(target=target, impl=None, hidden=False), out)
    return code, printed(out)


def listing(monkeypatch, target: str | None = None, points: dict | None = None) -> str:
    """`kata list TARGET` with the points available given (collecting every test costs ~10 s)."""
    katas = checking.select(target)
    monkeypatch.setattr(cli, "_points_available", lambda _: points or {k.id: 168.0 for k in katas})
    out = console()
    assert cli.cmd_list(argparse.Namespace(target=target, impl=None), out) == 0
    return printed(out)


def one_kata(monkeypatch, **fields) -> catalog.Kata:
    kata = catalog.Kata("week9/demo", **fields)
    monkeypatch.setattr(cli, "select", lambda target: [kata])
    return kata


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("│")]


# --- student and test strings are plain text ----------------------------------------------


def test_first_failure_shows_markup_lookalikes_verbatim(monkeypatch, state_dir):
    nodeid = "katas/week2/test_attention.py::test_softmax[b' tt'-[/B]]"
    code, text = check(monkeypatch, [result(nodeid, message="\n".join(MARKUP_LOOKALIKES))])
    assert code == 1
    for message in MARKUP_LOOKALIKES:
        assert message in text
    assert "test_softmax[b' tt'-[/B]]" in text


def test_hints_show_markup_lookalikes_verbatim(monkeypatch, state_dir):
    one_kata(monkeypatch, hints=tuple(MARKUP_LOOKALIKES))
    out = console()
    cli.cmd_hint(argparse.Namespace(kata="week9/demo", all=True, reset=False), out)
    for hint in MARKUP_LOOKALIKES:
        assert hint in printed(out)


def test_titles_show_markup_lookalikes_verbatim_in_list_and_check(monkeypatch, state_dir):
    one_kata(monkeypatch, title="[b' tt'] [/B]")
    assert "[b' tt'] [/B]" in listing(monkeypatch, points={"week9/demo": 3.0})
    _, text = check(monkeypatch, [result("katas/week9/test_demo.py::test_x", message="wrong")], target="week9/demo")
    assert "[b' tt'] [/B]" in text


def fake_report() -> Report:
    """A graded submission whose failure messages look like markup and run past 80 columns."""
    report = Report("sub", protections=["bubblewrap"], notes=["note: [/B] " + "n" * 100])
    report.katas["week2/attention"] = {"score": 1.0, "max_score": 1.0 + len(MARKUP_LOOKALIKES),
                                       "passed": 1, "failed": len(MARKUP_LOOKALIKES)}
    report.tests.append({"name": "week2/test_attention.py::test_ok", "kata": "week2/attention", "score": 1.0,
                         "max_score": 1.0, "status": "passed", "output": "", "visibility": "visible",
                         "hidden": False})
    for i, message in enumerate(MARKUP_LOOKALIKES):
        report.tests.append({"name": f"week2/test_attention.py::test_{i}[{message}]", "kata": "week2/attention",
                             "score": 0.0, "max_score": 1.0, "status": "failed",
                             "output": message + " " + "x" * 100 + "\nsecond line", "visibility": "visible",
                             "hidden": False})
    return report


def grade_in_process(monkeypatch, capsys, *options: str) -> str:
    """`kata grade sub OPTIONS` with a made-up report; what it wrote to stdout."""
    monkeypatch.setattr(cli, "grade", lambda *args, **kwargs: fake_report())
    args = cli.build_parser().parse_args(["grade", "sub", "--unsafe-no-sandbox", *options])
    assert cli.cmd_grade(args, console()) == 0
    return capsys.readouterr().out


def assert_report_reads_back(fmt: str, text: str) -> None:
    """`text` is a whole, valid report in `fmt` with every failure message intact."""
    messages = [t["output"] for t in fake_report().tests if t["status"] == "failed"]
    if fmt == "json":
        assert [t["output"] for t in json.loads(text)["tests"] if t["status"] == "failed"] == messages
    elif fmt == "junit":
        failures = [case.find("failure").text for case in ET.fromstring(text).iter("testcase")
                    if case.find("failure") is not None]
        assert failures == messages
    elif fmt == "markdown":
        assert text.startswith("## Grade: 1 / 5") and all(m.splitlines()[0] in text for m in messages)
    else:
        for t in fake_report().tests[1:]:
            assert f"FAILED {t['name']}: {t['output'].splitlines()[0]}" in text.splitlines()


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "markdown"])
def test_grade_writes_every_format_whole_to_stdout(monkeypatch, capsys, fmt):
    assert_report_reads_back(fmt, grade_in_process(monkeypatch, capsys, "--format", fmt))


def test_grade_writes_every_format_whole_to_out_files(monkeypatch, capsys, tmp_path):
    paths = {fmt: tmp_path / "reports" / f"r{ext}" for fmt, ext in cli.FORMATS.items()}
    assert grade_in_process(monkeypatch, capsys, *[a for p in paths.values() for a in ("--out", str(p))]) == ""
    for fmt, path in paths.items():
        assert_report_reads_back(fmt, path.read_text())


def test_grade_batch_summary_shows_markup_lookalikes_verbatim(monkeypatch, capsys, tmp_path):
    """The one line per student: its name (a directory the class chose) and any error."""
    from graders.executors import GradeJob

    def grade(job, submission, workers=None, collections=None):
        if submission.name == "[red]broken":
            raise ValueError(MARKUP_LOOKALIKES[0])
        return fake_report()

    monkeypatch.setattr(GradeJob, "grade", grade)
    for name in ("[b' tt']", "[red]broken"):
        (tmp_path / name).mkdir()
    assert cli.main(["grade", "--batch", str(tmp_path), "--unsafe-no-sandbox"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"[red]broken: error: {MARKUP_LOOKALIKES[0]}" in lines and "[b' tt']: 1 / 5" in lines, lines


# --- 80 columns -------------------------------------------------------------------------


def test_list_fits_one_line_per_kata_with_a_total(monkeypatch, state_dir):
    katas = catalog.all_katas()
    text = listing(monkeypatch)
    rows = table_rows(text)
    assert len(rows) == len(katas) + 1, text  # a kata per line, then the total
    for kata in katas:
        assert [row for row in rows if row.startswith(f"│ {kata.id} ")], f"{kata.id} cut or wrapped:\n{text}"
    assert all(len(line) <= 80 for line in text.splitlines())
    assert re.match(rf"│ total +│ {len(katas)} katas +│ +0 / {168 * len(katas)} │ 0% +│$", rows[-1]), rows[-1]
    assert "unknown" not in text and all("not run" in row for row in rows[:-1])


def test_list_total_counts_the_last_check(monkeypatch, state_dir):
    passed = [result(f"katas/week2/test_attention.py::test_{i}", "passed", points=21.0) for i in range(2)]
    check(monkeypatch, passed + [result("katas/week2/test_attention.py::test_x", "failed", "no")])
    rows = table_rows(listing(monkeypatch))
    attention = next(row for row in rows if row.startswith("│ week2/attention "))
    assert re.search(r"│ +42 / 168 │ failing +│$", attention), attention
    possible = 168 * len(catalog.all_katas())
    assert re.search(rf"│ +42 / {possible} │ {int(100 * 42 / possible)}% +│$", rows[-1]), rows[-1]


def test_check_never_cuts_a_kata_id(monkeypatch, state_dir):
    katas = catalog.all_katas()
    # As wide as the columns beside the ids get: `0 / 184.5`, `0/123`, `not started`.
    results = [result(f"katas/{k.week}/test_{k.name}.py::test_{i}", "failed", "NOT STARTED: x", points=1.5)
               for k in katas for i in range(123)]
    _, text = check(monkeypatch, results, target=None)
    rows = [row for row in table_rows(text) if row.startswith("│ week")]
    assert len(rows) == len(katas), text
    for kata, row in zip(katas, rows):
        assert row.startswith(f"│ {kata.id} "), row
    assert all(len(line) <= 80 for line in text.splitlines())


def test_real_kata_list_at_80_columns(tmp_path):
    """The longest id, through the real command (COLUMNS=80, tests really collected)."""
    output = kata("list", "week3/flash_attention", state_dir=tmp_path)
    assert output.returncode == 0, output.stderr
    rows = table_rows(output.stdout)
    assert [row.split()[:4] for row in rows] == [["│", "week3/flash_attention", "│", "FlashAttention:"],
                                                 ["│", "total", "│", "1"]], output.stdout
    assert re.search(r"│ +- / \d+ │ not run +│$", rows[0]) and re.search(r"│ +0 / \d+ │ 0% +│$", rows[1]), rows


# --- skipped tests, progress, Ctrl-C -------------------------------------------------------


GPU_SKIP = "Skipped: needs a CUDA GPU; none is available on this machine"


def test_check_says_which_tests_were_skipped_and_the_points_not_counted(monkeypatch, state_dir):
    results = [result("katas/week2/test_attention.py::test_a", "passed", points=4.0),
               result("katas/week2/test_attention.py::test_gpu[1]", "skipped", GPU_SKIP, points=1.0),
               result("katas/week2/test_attention.py::test_gpu[2]", "skipped", GPU_SKIP, points=2.0)]
    _, text = check(monkeypatch, results)
    assert " ".join(text.split()).count(
        "2 tests skipped (needs a CUDA GPU; none is available on this machine): 3 points not counted") == 1, text
    _, text = check(monkeypatch, results[:1])
    assert "skipped" not in text


def progress_line(progress) -> str:
    out = console()
    out.print(progress.make_tasks_table(progress.tasks))
    return printed(out)


def test_progress_shows_a_clock_while_collecting_and_then_the_test_running_now():
    now = [100.0]
    progress = checking.progress_display(console())
    progress.get_time = lambda: now[0]
    plugin = checking._Progress(progress)
    now[0] += 75
    collecting = progress_line(progress)
    assert "collecting…" in collecting and "0:01:15" in collecting and "?" not in collecting, collecting
    plugin.pytest_collection_finish(SimpleNamespace(items=[object()] * 3))
    plugin.pytest_runtest_logstart(nodeid="katas/week1/test_bpe.py::test_merge[b' tt'-[/B]]", location=None)
    assert progress.tasks[0].description == "test_merge[b' tt'-[/B]]"
    running = progress_line(progress)
    assert "test_merge[b' tt'-[/B]]" in running and "0/3" in running, running


def kata(*args: str, state_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KATA_STATE_DIR": str(state_dir), "COLUMNS": "80"}
    env.pop("KATA_IMPL", None)
    return subprocess.run([sys.executable, "-m", "graders.cli", *args], cwd=impl.PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


def test_ctrl_c_during_check_says_interrupted_and_keeps_the_last_result(tmp_path, monkeypatch):
    """KeyboardInterrupt from inside a test is what Ctrl-C is to pytest. Here `causal_mask`
    raises it after the softmax tests passed: saving those would record a partial result."""
    root = tmp_path / "impl"
    (root / "week2").mkdir(parents=True)
    source = (impl.NAMED_ROOTS["reference"] / "week2" / "attention.py").read_text()
    signature = re.search(r"def causal_mask\(.*\n", source).group()
    (root / "week2" / "attention.py").write_text(source.replace(signature, signature + "    raise KeyboardInterrupt\n"))
    monkeypatch.setattr(checking, "STATE_DIR", tmp_path / "state")
    saved = checking._state_file(impl.resolve(str(root)))
    saved.parent.mkdir()
    saved.write_text('{"week2/attention": "the last complete check"}')
    output = kata("check", "week2/attention", "--impl", str(root), state_dir=tmp_path / "state")
    assert output.returncode == 130 and "interrupted" in output.stdout, output.stdout + output.stderr
    assert saved.read_text() == '{"week2/attention": "the last complete check"}'
    assert "Traceback" not in output.stderr


# --- kata grade, for real -----------------------------------------------------------------


def grade_stubs(*options: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The cheapest real grade: the stubs of one kata, without a sandbox."""
    output = kata("grade", "katas", "--only", "week2/attention", "--unsafe-no-sandbox", *options, state_dir=tmp_path)
    assert output.returncode == 0, output.stderr
    return output


@pytest.mark.grading  # a real `kata grade`: the slow stage
def test_real_grade_json_and_junit_on_stdout_parse(tmp_path):
    report = json.loads(grade_stubs("--format", "json", tmp_path=tmp_path).stdout)
    assert report["max_score"] > 0 and report["tests"]
    junit = ET.fromstring(grade_stubs("--format", "junit", tmp_path=tmp_path).stdout)
    assert len(list(junit.iter("testcase"))) == len(report["tests"])


@pytest.mark.grading  # a real `kata grade`: the slow stage
def test_real_grade_text_lists_each_failed_test_with_its_message(tmp_path):
    out = {fmt: tmp_path / f"report{ext}" for fmt, ext in cli.FORMATS.items()}
    grade_stubs(*[a for path in out.values() for a in ("--out", str(path))], tmp_path=tmp_path)
    report = json.loads(out["json"].read_text())
    ET.fromstring(out["junit"].read_text())
    failed = [t for t in report["tests"] if t["status"] == "failed"]
    assert failed
    lines = out["text"].read_text().splitlines()
    for t in failed[:50]:
        line = next(line for line in lines if line.startswith(f"FAILED {t['name']}: "))
        message = line.removeprefix(f"FAILED {t['name']}: ")
        assert message.strip() and message in t["output"], (line, t["output"])
    assert out["markdown"].read_text().startswith("## Grade: ")
