"""The sandboxed child's entry point: `python -m graders.child <pytest arguments>`.

It is `python -m pytest`, except that it leaves with `os._exit` once pytest has finished:
tearing down an interpreter that imported torch takes about 0.6 s, paid by every child of
every grade, and nothing is left to do by then (recordings are written at each test's
teardown and the control pipe is unbuffered).
"""

import os
import sys

import pytest


def main() -> None:
    code = pytest.main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


if __name__ == "__main__":
    main()
