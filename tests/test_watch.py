"""`kata watch`: re-run the kata whose file changed, show its first failure, move on when it passes.

The loop takes any iterable of change batches, so most tests drive it with a list (or a
generator that edits the kata file first) and no file events; one test uses watchfiles
itself on a temporary implementation root. Implementations are temporary roots holding a
copy of a kata's stub or reference, passed as `--impl` would pass them.
"""

import argparse
import io
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from watchfiles import Change

from graders import catalog, checking, impl, watch

pytestmark = pytest.mark.timeout(300)  # whole kata sessions run in this process

REFERENCE = impl.NAMED_ROOTS["reference"]
STUBS = impl.NAMED_ROOTS["katas"]
ATTENTION = catalog.load("week2/attention")
MICROGRAD = catalog.load("week2/micrograd")


@pytest.fixture(autouse=True)
def _isolated(state_dir):
    """Every test here runs kata sessions in this process (see tests/conftest.py)."""
    return state_dir


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100, force_terminal=False, color_system=None, highlight=False), out


def make_root(tmp_path: Path, **modules: Path) -> impl.Implementation:
    """An implementation root with `week2/<name>.py` copied from each given source root."""
    root = tmp_path / "impl"
    for name, source in modules.items():
        (root / "week2").mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "week2" / f"{name}.py", root / "week2" / f"{name}.py")
    return impl.resolve(str(root))


class FakeRuns:
    """checking.run_tests's stand-in: a kata passes when its module's file contains PASS."""

    def __init__(self, implementation, on_call=None):
        self.implementation = implementation
        self.calls: list[str] = []
        self.on_call = on_call

    def __call__(self, files, implementation, hidden, console):
        kata_id = catalog.kata_id_for_test_file(files[0])
        self.calls.append(kata_id)
        if self.on_call:
            self.on_call(len(self.calls))
        source = self.implementation.path_of(kata_id.replace("/", ".")).read_text()
        outcome = "passed" if "PASS" in source else "failed"
        message = "" if outcome == "passed" else "Called f(x[2])\nexpected [/b] got [red]\nHint (demo): look"
        return [{"nodeid": f"katas/{kata_id.split('/')[0]}/test_x.py::test_one[1]", "kata": kata_id, "points": 2.0,
                 "hidden": False, "outcome": outcome, "duration": 0.0, "message": message}]


def test_a_saved_fix_is_rerun_then_watch_moves_to_the_next_kata(tmp_path):
    """Real kata sessions: the stub fails with its first failure shown; the saved reference
    (same path, so the module must be imported afresh) passes; watch says so and moves on."""
    implementation = make_root(tmp_path, attention=STUBS, micrograd=REFERENCE)
    module = implementation.path_of("week2.attention")

    def changes():
        yield {(Change.modified, str(implementation.root / "notes.txt"))}  # not Python: ignored
        module.write_text((REFERENCE / "week2" / "attention.py").read_text())
        yield {(Change.modified, str(module))}

    out_console, out = console()
    code = watch.watch_loop([ATTENTION, MICROGRAD], ATTENTION, implementation, changes(), out_console)
    text = out.getvalue()
    assert code == 0
    assert "week2/attention: first failure" in text and "NOT STARTED" in text
    assert "More help: kata hint week2/attention" in text
    assert "✓ week2/attention passes" in text
    assert text.index("NOT STARTED") < text.index("✓ week2/attention passes")
    assert "Moving on to the next kata: week2/micrograd" in text
    assert "✓ week2/micrograd passes" in text
    assert "nothing left to watch" in text
    saved = checking.load_results(implementation)  # recorded for `kata list`, as `kata check` does
    assert saved["week2/attention"]["failed"] == 0 and saved["week2/micrograd"]["failed"] == 0


def test_watchfiles_sees_the_saved_file_and_reruns_the_kata(tmp_path):
    """The real watcher on a temporary root: the loop waits, the file is saved, the kata re-runs."""
    implementation = make_root(tmp_path, attention=STUBS)
    module = implementation.path_of("week2.attention")
    runs = FakeRuns(implementation)
    stop = threading.Event()
    safety = threading.Timer(30, stop.set)  # never hang the suite if no event comes
    safety.start()

    def changes():
        saved = False
        # yield_on_timeout: an empty batch every 100 ms, the first once the watcher is running
        for batch in watch._changes(implementation.root, stop_event=stop, rust_timeout=100,
                                    yield_on_timeout=True, debounce=200, step=20):
            if not saved:
                module.write_text(module.read_text() + "\n# PASS\n")
                saved = True
            yield batch

    try:
        out_console, out = console()
        started = time.monotonic()
        code = watch.watch_loop([ATTENTION], ATTENTION, implementation, changes(), out_console, run_tests=runs)
    finally:
        safety.cancel()
    assert code == 0
    assert not stop.is_set(), "watchfiles reported no change within 30 s"
    assert runs.calls == ["week2/attention", "week2/attention"]
    assert "✓ week2/attention passes" in out.getvalue()
    assert time.monotonic() - started < 30


def test_the_first_failure_is_shown_as_plain_text(tmp_path):
    """Messages and node ids are student- and test-controlled: markup-looking text stays as is."""
    implementation = make_root(tmp_path, attention=STUBS)
    out_console, out = console()
    watch.watch_loop([ATTENTION], ATTENTION, implementation, [], out_console, run_tests=FakeRuns(implementation))
    text = out.getvalue()
    assert "expected [/b] got [red]" in text and "test_one[1]" in text and "Hint (demo): look" in text
    assert "✗ week2/attention: failing, 0/1 tests passing, 0 / 2 points" in text


def test_ctrl_c_while_waiting_says_goodbye_and_exits_0(tmp_path):
    implementation = make_root(tmp_path, attention=STUBS)

    def changes():
        raise KeyboardInterrupt
        yield

    out_console, out = console()
    code = watch.watch_loop([ATTENTION], ATTENTION, implementation, changes(), out_console,
                            run_tests=FakeRuns(implementation))
    assert code == 0
    assert out.getvalue().rstrip().splitlines()[-1] == watch.GOODBYE


def test_ctrl_c_during_a_run_exits_0_without_recording_the_partial_result(tmp_path):
    """pytest swallows the KeyboardInterrupt of a Ctrl-C mid-run; watch still notices."""
    implementation = make_root(tmp_path, attention=STUBS)
    runs = FakeRuns(implementation, on_call=lambda n: signal.raise_signal(signal.SIGINT) if n == 2 else None)
    module = implementation.path_of("week2.attention")
    out_console, out = console()
    previous = signal.getsignal(signal.SIGINT)

    def runs_swallowing(*args):  # as pytest.main does: the interrupt ends the session, not the caller
        try:
            return runs(*args)
        except KeyboardInterrupt:
            return []

    code = watch.watch_loop([ATTENTION], ATTENTION, implementation, [{(Change.modified, str(module))}],
                            out_console, run_tests=runs_swallowing)
    assert code == 0
    assert runs.calls == ["week2/attention", "week2/attention"]
    assert out.getvalue().rstrip().splitlines()[-1] == watch.GOODBYE
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is put back
    assert checking.load_results(implementation)["week2/attention"]["failed"] == 1  # the first run's, only


def test_katas_known_to_pass_are_skipped_when_moving_on(tmp_path):
    implementation = make_root(tmp_path, attention=STUBS, micrograd=STUBS)
    for name in ("attention", "micrograd"):
        module = implementation.path_of(f"week2.{name}")
        module.write_text(module.read_text() + "\n# PASS\n")
    runs = FakeRuns(implementation)
    checking.save_results(implementation, [MICROGRAD], runs(catalog.test_files([MICROGRAD], False), None, False, None))
    runs.calls.clear()
    assert watch.first_unfinished([ATTENTION, MICROGRAD], implementation) == ATTENTION
    out_console, out = console()
    watch.watch_loop([ATTENTION, MICROGRAD], ATTENTION, implementation, [], out_console, run_tests=runs)
    assert runs.calls == ["week2/attention"]
    assert "week2/micrograd already passes" in out.getvalue()


def test_which_kata_a_change_reruns(tmp_path):
    root = tmp_path / "impl"
    course = [ATTENTION, MICROGRAD]

    def batch(*paths):
        return {(Change.modified, str(root / p)) for p in paths}

    assert watch.kata_for_changes(batch("week2/micrograd.py"), root, course, ATTENTION) == MICROGRAD
    assert watch.kata_for_changes(batch("week2/test_micrograd.py"), root, course, ATTENTION) == MICROGRAD
    assert watch.kata_for_changes(batch("week2/micrograd.py", "week2/attention.py"), root, course, MICROGRAD) \
        == MICROGRAD  # the current kata first
    assert watch.kata_for_changes(batch("week2/micrograd.py", "week2/attention.py"), root, course, None) \
        == ATTENTION  # else course order
    assert watch.kata_for_changes(batch("helpers.py"), root, course, MICROGRAD) == MICROGRAD
    assert watch.kata_for_changes(batch("week2/attention.py~", "week2/__pycache__/x.py", "notes.md"), root,
                                  course, ATTENTION) is None
    assert watch.kata_for_changes({(Change.modified, str(tmp_path / "elsewhere" / "week2" / "attention.py"))},
                                  root, course, None) is None


def test_the_watch_command_wiring(tmp_path, monkeypatch):
    """`kata watch weekN/kata --impl DIR` through add_parser, as graders/cli.py registers it."""
    implementation = make_root(tmp_path, attention=STUBS)
    parser = argparse.ArgumentParser(prog="kata")
    watch.add_parser(parser.add_subparsers(dest="command", required=True))  # as graders/cli.py does
    args = parser.parse_args(["watch", "week2/attention", "--impl", str(implementation.root)])
    assert args.func is watch.run and args.target == "week2/attention"
    runs = FakeRuns(implementation)
    monkeypatch.setattr(checking, "run_tests", runs)
    monkeypatch.setattr(watch, "_changes", lambda root: iter([]))
    out_console, out = console()
    assert args.func(args, out_console) == 0
    assert runs.calls == ["week2/attention"]
    args = parser.parse_args(["watch", "--impl", str(tmp_path / "missing")])
    assert args.func(args, out_console) == 2
    with pytest.raises(SystemExit, match="no kata or week called 'week99'"):
        args = parser.parse_args(["watch", "week99", "--impl", str(implementation.root)])
        args.func(args, out_console)
