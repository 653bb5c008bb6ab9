"""The run-time half of the thread-and-process refusal (graders/guard.py `no_new_threads`).

The ways out are tried in a fresh interpreter, each inside its own guarded block: had a
refusal failed, an exec would have replaced the pytest worker itself."""

import subprocess
import sys
import textwrap

import pytest

EXEC = "[sys.executable, '-c', 'print(\"EXECUTED\")']"
WAYS_OUT = {
    "thread": "import threading; threading.Thread(target=print).start()",
    "fork": "import os; os.fork()",
    "posix.fork": "import posix; posix.fork()",
    "subprocess imported inside": "import subprocess; subprocess.run([sys.executable, '-c', 'pass'])",
    "os.system": "import os; os.system('true')",
    "posix_spawn": "import os; os.posix_spawn(sys.executable, [sys.executable, '-c', 'pass'], {})",
    "os.execv": f"import os; os.execv(sys.executable, {EXEC})",
    "os.execl": "import os; os.execl(sys.executable, sys.executable, '-c', 'print(\"EXECUTED\")')",
    "os.execvp": "import os; os.execvp('python3', ['python3', '-c', 'print(\"EXECUTED\")'])",
    "os.execve": f"import os; os.execve(sys.executable, {EXEC}, {{}})",
    "posix.execv": f"import posix; posix.execv(sys.executable, {EXEC})",
}

SCRIPT = """
import sys
from graders.guard import ForbiddenAPIError, no_new_threads
for name, way in WAYS_OUT.items():
    try:
        with no_new_threads(True):
            exec(way)
    except ForbiddenAPIError:
        print(name, "=", "refused", flush=True)
    else:
        print(name, "=", "allowed", flush=True)
import os
os.execv(sys.executable, [sys.executable, "-c", "print('restored = EXECUTED')"])
"""


@pytest.fixture(scope="module")
def outcomes() -> dict[str, str]:
    script = f"WAYS_OUT = {WAYS_OUT!r}\n" + textwrap.dedent(SCRIPT)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = [line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line]
    return {name: outcome for name, outcome in lines} | {"stderr": done.stderr[-2000:]}


@pytest.mark.parametrize("way", WAYS_OUT)
def test_student_code_cannot_start_or_become_another_process(outcomes, way):
    assert outcomes.get(way) == "refused", outcomes


def test_the_refusal_ends_with_the_block(outcomes):
    assert outcomes.get("restored") == "EXECUTED", outcomes
