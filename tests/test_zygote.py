"""The sandbox's fork server (graders.zygote, graders.sandbox.Zygote): runs forked in one
bubblewrap sandbox are followed and killed one by one, the filters a run asks for hold, and
a run cannot take the server down for good or rewrite it. tests/test_grading.py grades
hostile submissions through it end to end."""

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from graders import catalog, impl, sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

PROBES = '''
import ctypes, os, threading, time

def test_passes():
    pass

def test_hangs():
    time.sleep(600)

def test_kills_its_server():
    os.kill(os.getppid(), 9)

def test_cannot_fork():
    try:
        pid = os.fork()
    except PermissionError:
        return
    if pid == 0:
        os._exit(0)
    raise AssertionError("a run under the no-processes filter forked")

def test_cannot_start_a_thread():
    try:
        threading.Thread(target=lambda: None).start()
    except RuntimeError:
        return
    raise AssertionError("a run under the no-spawn filter started a thread")

def test_cannot_rewrite_its_server():
    try:
        open(f"/proc/{os.getppid()}/mem", "r+b")
    except PermissionError:
        return
    raise AssertionError("the fork server's memory is writable by its runs")
'''


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    work = tmp_path_factory.mktemp("zygote")
    work.chmod(0o755)
    submission = work / "submission"
    submission.mkdir()
    tree = sandbox.build(submission, impl.PROJECT_ROOT, work / "tree", catalog.all_katas(impl.PROJECT_ROOT / "katas"))
    tests = work / "tests"
    (tests / "katas" / "week9").mkdir(parents=True)
    (tests / "katas" / "week9" / "test_probes.py").write_text(PROBES)
    sandbox._readable_tree(tests)
    uid = sandbox.child_uid() if os.geteuid() == 0 else None
    recordings = sandbox.recordings_root(work, "probes", uid, ["week9-probes"])
    server = sandbox.Zygote(tree, tests, recordings, uid, sandbox.Limits())
    yield server
    server.close()


def run(server: sandbox.Zygote, test: str, seccomp: bytes = b"") -> tuple[sandbox.ForkedRun, list[bytes]]:
    """Fork `katas/week9/test_probes.py::<test>`; returns the run and (filled as it goes) its control lines."""
    control_read, control_write = os.pipe()
    output = os.open(os.devnull, os.O_WRONLY)
    argv = [f"katas/week9/test_probes.py::{test}", "-p", "graders.plugin", "-p", "no:cacheprovider", "-q",
            "--rootdir", str(server.inside), "-c", str(server.inside / "pytest.ini")]
    try:
        forked = server.fork(argv, [control_write, output], seccomp)
    finally:
        os.close(control_write)
        os.close(output)
    lines: list[bytes] = []
    threading.Thread(target=lambda: lines.extend(os.fdopen(control_read, "rb")), daemon=True).start()
    assert forked is not None and forked.pid is not None, server.failure()
    return forked, lines


def exit_code(forked: sandbox.ForkedRun, lines: list[bytes], seconds: float = 60) -> int | None:
    deadline = time.monotonic() + seconds
    while forked.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    for line in lines:
        message = json.loads(line)
        if message.get("e") == "exited":
            return message["code"]
    return None


def test_a_run_that_hangs_is_killed_alone(zygote):
    hanging, _ = run(zygote, "test_hangs")
    passing, lines = run(zygote, "test_passes")
    assert exit_code(passing, lines) == 0
    assert hanging.poll() is None, "the hanging run is still running beside the other"
    hanging.kill()
    assert hanging.poll() is not None
    again, lines = run(zygote, "test_passes")
    assert exit_code(again, lines) == 0, "the sandbox goes on after a run is killed"


def test_a_run_that_kills_its_server_costs_only_itself(zygote):
    killer, lines = run(zygote, "test_kills_its_server")
    exit_code(killer, lines)
    after, lines = run(zygote, "test_passes")
    assert exit_code(after, lines) == 0, "the next run starts a new server"


def test_the_no_processes_filter_holds_in_a_forked_run(zygote):
    if not zygote.sandboxed:
        pytest.skip("filters are installed only in the sandbox")
    forked, lines = run(zygote, "test_cannot_fork", sandbox.seccomp_program(no_processes=True))
    assert exit_code(forked, lines) == 0


def test_the_no_spawn_filter_of_timing_runs_holds(zygote):
    if not zygote.sandboxed:
        pytest.skip("filters are installed only in the sandbox")
    forked, lines = run(zygote, "test_cannot_start_a_thread", sandbox.seccomp_program(no_spawn=True))
    assert exit_code(forked, lines) == 0


def test_runs_cannot_rewrite_their_server(zygote):
    forked, lines = run(zygote, "test_cannot_rewrite_its_server")
    assert exit_code(forked, lines) == 0


def test_test_imports_names_what_the_tests_import_and_never_the_katas_own_modules(tmp_path):
    source = tmp_path / "test_x.py"
    source.write_text("import torch\nimport week2.attention\nfrom transformers import GPT2Config, GPT2LMHeadModel\n"
                      "from . import helpers\nfrom katas.week2 import attention\nfrom transformers import LlamaConfig\n")
    assert sandbox.test_imports([Path(source)]) == ["torch", "transformers:GPT2Config,GPT2LMHeadModel,LlamaConfig"]
