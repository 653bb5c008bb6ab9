"""A fork server: `python -m graders.zygote <socket fd> [module ...]`.

Starting Python and importing torch, pytest and hypothesis costs about 2 s of CPU, and a
whole-course grade starts ~50 test runs (each kata, public and hidden, again past a test
that hung, and once per timed test), and as many replays. So a zygote imports all that,
and what the tests import at their top level (the modules named after the fd), once; it
runs no test and no student code itself, and forks a child per run, which starts with
everything imported in a few milliseconds.

Two kinds run this module. Inside bubblewrap, a sandbox's zygote (graders.sandbox.Zygote)
forks the recording runs of student code; nothing it says is trusted, since it shares its
uid and sandbox with the code it forks (a run may kill it, and is then started again; it
is not dumpable, so no run can rewrite it through /proc). Outside, the grader's replay
server (graders.replay) forks the trusted replays.

The grader sends each request over a SOCK_SEQPACKET socket: a JSON object with the pytest
arguments (and a system-call filter for the run to install on itself), with two or three
file descriptors (SCM_RIGHTS) that become the run's control pipe, its stdout/stderr and,
for a timing run, the pipe it waits on. This process answers with the run's pid (as its
PID namespace numbers it); the grader maps it to its own numbering to follow the run and
to kill its session. Runs are reaped by the kernel (SIGCHLD ignored here).
"""

import base64
import ctypes
import gc
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
import traceback

import pytest

# What every run imports anyway, imported once before the first fork. Nothing here may start
# a thread (a fork copies only the thread that calls it): torch's pools start on first use.
PRELOADED = ("torch", "numpy", "hypothesis", "_hypothesis_pytestplugin", "pytest_timeout", "graders.plugin")

MAX_REQUEST = 1 << 20
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 4, 38, 22, 2  # <linux/prctl.h>, <linux/seccomp.h>


def load_seccomp(program: bytes) -> None:
    """Install a compiled (cBPF) system-call filter on this process, as bubblewrap's
    `--seccomp` does; it stacks on the sandbox's own. (libseccomp cannot be used here: its
    Python bindings look for the library with `ldconfig -p`, which finds nothing as an
    unprivileged uid.)"""
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    instructions = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(instructions))  # 8 bytes per instruction
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                                                                  ctypes.byref(fprog), 0, 0):
        raise OSError(ctypes.get_errno(), "the run's system-call filter could not be installed")


def _run(request: dict, fds: list[int]) -> None:
    """In the forked child: become one run of pytest, and never return (`os._exit`: tearing
    down an interpreter that imported torch costs ~0.6 s, and nothing is left to do by then:
    recordings are written at each test's teardown and the control pipe is unbuffered).
    `fds`: its control pipe, its stdout/stderr, and for a timing run the pipe it waits on."""
    control_fd, output_fd, *timing = fds
    code = 70
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run waits for processes it starts
        os.setsid()  # its own process group: the grader kills this run, not its neighbours
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # a run is an ordinary process again
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        argv = [*request["argv"], "--kata-control-fd", str(control_fd)]
        if timing:
            argv += ["--kata-timing-fd", str(timing[0])]
        if request.get("seccomp"):
            load_seccomp(base64.b64decode(request["seccomp"]))
        code = int(pytest.main(argv))
        os.write(control_fd, json.dumps({"e": "exited", "code": code}).encode() + b"\n")
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, MAX_REQUEST, 3)
        except OSError:
            return
        if not message:  # the grader closed its end: the grade is over
            return
        pid = os.fork() if len(fds) in (2, 3) else -1
        if pid == 0:
            sock.close()
            _run(json.loads(message), fds)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def preload(spec: str) -> None:
    """Import "module" or "module:name,name" (graders.sandbox.test_imports) as a test would,
    unless it comes from the submission or the tests' own directory. A failure is left for
    the run to report."""
    module_name, _, names = spec.partition(":")
    try:
        found = importlib.util.find_spec(module_name)
        origin = os.path.realpath(found.origin or "") if found else ""
        if not found or origin.startswith(("/kata/submission/", "/kata/katas/")):
            return
        module = importlib.import_module(module_name)
        for name in filter(None, names.split(",")):
            getattr(module, name, None)
    except Exception:  # noqa: BLE001 - the run imports it again and says what is wrong
        return


def main() -> None:
    # Not dumpable: a run (same uid) may not read or write this process's memory through /proc
    # to change what the next run starts as.
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for spec in (*PRELOADED, *sys.argv[2:]):
        preload(spec)
    # What is imported now lives as long as every run: out of the collector's sight, a run's
    # garbage collections neither scan it nor write to its pages (which the fork shares).
    gc.collect()
    gc.freeze()
    serve(socket.socket(fileno=int(sys.argv[1])))
    os._exit(0)


if __name__ == "__main__":
    main()
