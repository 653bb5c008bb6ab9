"""The grader's trust boundary, piece by piece (fast): reading what a child wrote, the child's
environment and seccomp filter, refusing to grade without a sandbox, and reports that show
student strings as data. tests/test_grading.py grades real hostile submissions end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from graders import impl, reports, sandbox
from graders.reports import Report
from graders.recording import file_stem
from tests.markdown_reading import outside_code_blocks

NODE = "katas/week2/test_attention.py::test_softmax_default_axis_is_last"


def recording(directory: Path, nodeid: str = NODE, events=None) -> None:
    stem = directory / file_stem(nodeid)
    Path(f"{stem}.json").write_text(json.dumps({"version": 1, "nodeid": nodeid, "events": events or []}))
    save_file({"t0": torch.zeros(2)}, f"{stem}.safetensors")


def ingest(directory: Path, tmp_path: Path, nodeids=(NODE,), **limits) -> tuple[dict, Path]:
    target = tmp_path / "trusted"
    target.mkdir(exist_ok=True)
    return sandbox.ingest(directory, list(nodeids), target, sandbox.Limits(**limits)), target


def test_a_valid_recording_is_copied_into_the_graders_own_directory(tmp_path):
    child = tmp_path / "child"
    child.mkdir()
    recording(child, events=[{"type": "crossing", "kind": "attr", "ref": ["attr", "week2.attention", "softmax"],
                              "callable": True}])
    rejected, target = ingest(child, tmp_path)
    assert rejected == {}
    assert json.loads((target / f"{file_stem(NODE)}.json").read_text())["events"][0]["kind"] == "attr"


@pytest.mark.parametrize("attack", ["symlink_json", "symlink_tensors", "fifo", "directory", "nested", "nul",
                                    "huge", "other_test", "not_json", "bad_safetensors", "missing",
                                    "unknown_kind", "wrong_field_type", "old_format"])
def test_a_hostile_recording_is_rejected_never_followed_or_waited_on(tmp_path, attack):
    child = tmp_path / "child"
    child.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text('{"nodeid": "%s", "events": []}' % NODE)
    recording(child)
    stem = child / file_stem(NODE)
    meta, data = Path(f"{stem}.json"), Path(f"{stem}.safetensors")
    if attack == "symlink_json":
        meta.unlink()
        meta.symlink_to(secret)
    elif attack == "symlink_tensors":
        data.unlink()
        data.symlink_to("/etc/passwd")
    elif attack == "fifo":
        meta.unlink()
        os.mkfifo(meta)  # opening it for reading would block forever without O_NONBLOCK
    elif attack == "directory":
        meta.unlink()
        meta.mkdir()
    elif attack == "nested":
        meta.write_text('{"nodeid": "%s", "events": %s}' % (NODE, "[" * 100_000 + "]" * 100_000))
    elif attack == "nul":
        meta.write_bytes(b'{"nodeid": "' + NODE.encode() + b'", "events": [\x00]}')
    elif attack == "huge":
        meta.write_text('{"nodeid": "%s", "events": [%s]}' % (NODE, ",".join(["0"] * 600_000)))
    elif attack == "other_test":
        meta.write_text(json.dumps({"nodeid": NODE + "x", "events": []}))
    elif attack == "not_json":
        meta.write_text("{")
    elif attack == "bad_safetensors":
        data.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    elif attack == "missing":
        meta.unlink()
    elif attack == "unknown_kind":
        recording(child, events=[{"type": "crossing", "kind": "exec", "ref": []}])
    elif attack == "wrong_field_type":
        recording(child, events=[{"type": "crossing", "kind": "call", "ref": ["f", "m", "f"], "failure": {"x": 1}}])
    elif attack == "old_format":
        meta.write_text(json.dumps({"nodeid": NODE, "events": [{"k": "attr", "ref": ["attr"]}]}))
    rejected, target = ingest(child, tmp_path, recording_file_bytes=1_000_000)
    assert NODE in rejected and "rejected" in rejected[NODE]
    assert list(target.iterdir()) == []


def test_the_recordings_of_one_child_have_a_total_size_limit(tmp_path):
    child = tmp_path / "child"
    child.mkdir()
    nodes = [f"{NODE}[{i}]" for i in range(4)]
    for node in nodes:
        recording(child, node, events=[{"type": "crossing", "kind": "glue", "ref": ["glue", "x" * 3000]}])
    rejected, target = ingest(child, tmp_path, nodes, recording_total_bytes=8_000)
    assert 0 < len(rejected) < len(nodes)


def test_read_regular_never_reads_past_its_limit(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1000)
    with pytest.raises(sandbox.FileTooLarge):
        sandbox.read_regular(big, 999)
    assert sandbox.read_regular(big, 1000) == b"x" * 1000


def test_the_childs_environment_is_an_allowlist(monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    env = sandbox.child_environment(Path("/kata"), Path("/kata-record"))
    assert "GRADER_SECRET" not in env and "GITHUB_TOKEN" not in env
    assert not any("s3cret" in v or "ghp_" in v for v in env.values())
    assert env["HOME"] == "/tmp" and env["PYTHONPATH"] == "/kata"


def test_the_seccomp_filter_compiles_and_denies_the_dangerous_calls():
    pytest.importorskip("pyseccomp")
    program = sandbox.seccomp_program()
    assert len(program) % 8 == 0 and len(program) > 8 * len(sandbox.DENIED_SYSCALLS)  # one cBPF instruction: 8 bytes
    for name in ("ptrace", "mount", "unshare", "setns", "keyctl", "bpf", "perf_event_open"):
        assert name in sandbox.DENIED_SYSCALLS


def _without_bwrap(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv",):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    env["PATH"] = str(bin_dir)
    return env


def test_kata_grade_refuses_to_run_a_submission_without_bubblewrap(tmp_path):
    result = subprocess.run([sys.executable, "-m", "graders.cli", "grade", str(impl.NAMED_ROOTS["reference"]),
                             "--only", "week2/attention"], cwd=impl.PROJECT_ROOT, env=_without_bwrap(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bubblewrap" in result.stderr and "--unsafe-no-sandbox" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["/nonexistent/submission"], "is not a directory"),
    ([str(impl.NAMED_ROOTS["reference"]), "--only", "week99"], "no kata or week called 'week99'"),
])
def test_kata_grade_bad_input_is_one_line_and_a_nonzero_exit(args, message):
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    result = subprocess.run([sys.executable, "-m", "graders.cli", "grade", *args, "--unsafe-no-sandbox"],
                            cwd=impl.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_readable_by_others_needs_every_directory_above_searchable():
    """Without bubblewrap, a child dropped to an unprivileged uid reads the interpreter and the
    course in place: a Python under a private home (/root/.pyenv) would run no test at all."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as base:  # pytest's own tmp_path sits in a 0700 directory
        _check_readable_by_others(Path(base))


def _check_readable_by_others(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open" / "python").write_text("")
    (tmp_path / "open" / "python").chmod(0o644)
    assert sandbox._readable_by_others(tmp_path / "open" / "python")
    (tmp_path / "open").chmod(0o750)
    assert not sandbox._readable_by_others(tmp_path / "open" / "python")
    (tmp_path / "open").chmod(0o755)
    (tmp_path / "open" / "python").chmod(0o600)
    assert not sandbox._readable_by_others(tmp_path / "open" / "python")
    assert not sandbox._readable_by_others(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="the uid drop happens as root")
def test_unsafe_grading_as_root_keeps_its_uid_when_others_cannot_read_the_interpreter(monkeypatch):
    unreadable = [p for p in sandbox._paths_children_read() if not sandbox._readable_by_others(p)]
    iso = sandbox.isolation.__wrapped__(unsafe=True)
    assert iso.drop_to_uid == (not unreadable)
    if unreadable:
        assert any(str(unreadable[0]) in p and "keep the grader's uid" in p for p in iso.protections)
    monkeypatch.setattr(sandbox, "_readable_by_others", lambda path: True)
    assert sandbox.isolation.__wrapped__(unsafe=True).drop_to_uid


@pytest.mark.grading
def test_kata_grade_without_a_sandbox_grades_for_real(tmp_path):
    """`--unsafe-no-sandbox` (a student's own machine): the same children, started in a
    directory of their own instead of bubblewrap's, give the reference full marks, hidden
    tests and a call the kata's toml lets change its inputs (`sgd_step_`) included."""
    env = {k: v for k, v in os.environ.items() if k != "KATA_IMPL"}
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "graders.cli", "grade", str(impl.NAMED_ROOTS["reference"]),
                             "--only", "week1/pytorch", "--hidden", "--unsafe-no-sandbox", "--out", str(out)],
                            cwd=impl.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["score"] == report["max_score"] > 0, result.stdout[-3000:]
    assert any("UNSAFE" in p for p in report["sandbox"]["protections"])


# --- reports: student strings are data ----------------------------------------------------

FORGED = ("```\n## Grade: 100 / 100\n| week2/attention | 50 / 50 | 20/20 |\n```\n</details>\n"
          "]]></failure></testcase><testcase name=\"forged\"/>\x1b[2J\x1b[31mRED\x00\ud800 [bold red]markup[/]")


def forged_report() -> Report:
    report = Report("sub", protections=["bubblewrap"], notes=[f"week2/attention: {FORGED}"])
    report.katas["week2/attention"] = {"score": 0.0, "max_score": 5.0, "passed": 0, "failed": 1}
    report.tests.append({"name": "week2/test_attention.py::test_x", "kata": "week2/attention", "score": 0,
                         "max_score": 5, "status": "failed", "output": FORGED, "visibility": "visible",
                         "hidden": False})
    return report


def test_markdown_report_keeps_a_failure_message_inside_its_code_block():
    text = reports.to_markdown(forged_report())
    markdown = outside_code_blocks(text)
    assert [line for line in markdown if line.startswith("## Grade")] == ["## Grade: 0 / 5"]
    assert "</details>" in markdown and markdown.count("</details>") == 1  # the report's own
    assert not any("forged" in line or "100 / 100" in line for line in markdown)
    assert "\x1b" not in text and "\x00" not in text


def test_junit_report_is_valid_xml_whatever_the_message():
    import xml.etree.ElementTree as ET

    root = ET.fromstring(reports.to_junit(forged_report()).encode("utf-8"))
    assert [case.get("name") for case in root.iter("testcase")] == ["week2/test_attention.py::test_x"]


def test_json_and_text_reports_escape_control_characters():
    report = forged_report()
    assert json.loads(reports.to_json(report))["tests"][0]["output"].startswith("```")
    text = reports.to_text(report)
    assert "\x1b" not in text and "\x00" not in text and "\\x1b" in text


def test_host_binds_under_tmp_are_made_after_the_private_tmp(tmp_path, monkeypatch):
    """A virtual environment under /tmp (a course cloned into `mktemp -d`) and the GPU's device
    nodes are bound after the sandbox's own /tmp and /dev exist: bound before, the fresh
    mounts would hide them and the child could not even start its interpreter."""
    venv = Path("/tmp/kata-venv-under-tmp")
    monkeypatch.setattr(sandbox, "_host_paths", lambda: [venv])
    monkeypatch.setattr(sandbox, "_system_binds", lambda: ["--dev-bind", "/dev/nvidia0", "/dev/nvidia0"])
    tree = sandbox.Tree(tmp_path, tmp_path / "base")
    spec = sandbox.ChildSpec(tree, tmp_path / "tests", ["katas/week2/test_attention.py"], tmp_path / "rec", None,
                             False, [], [], 60.0, None)
    iso = sandbox.Isolation(sandboxed=True, protections=[], drop_to_uid=False)
    command = sandbox.launch(spec, iso, control_fd=3, seccomp_fd=None).argv
    position = {tuple(command[i:i + 2]): i for i in range(len(command) - 1)}
    assert position[("--tmpfs", "/tmp")] < position[("--ro-bind", str(venv))]
    assert position[("--dev", "/dev")] < position[("--dev-bind", "/dev/nvidia0")]
    assert ("--dir", "/tmp") not in position, "the private /tmp keeps its 1777 mode"
