"""Reading what an untrusted process wrote, and naming what it may write.

The grader reads files from directories a sandboxed child could write. Such a file may be
a symbolic link to anything on the machine, a FIFO that blocks forever, a device, or far
bigger than any honest recording; its JSON may nest deep enough to crash a recursive
decoder. `read_regular` and `nesting_depth_at_most` are the only ways the grader reads them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path


def file_stem(nodeid: str) -> str:
    """The file name (without suffix) of a test's recording: the same in record and replay,
    and nothing a node id could turn into a path."""
    return hashlib.sha256(nodeid.encode()).hexdigest()[:24]


class FileTooLarge(OSError):
    pass


def read_regular(path: Path, max_bytes: int, dir_fd: int | None = None) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`: never follows a
    symbolic link, never blocks on a FIFO or device, never reads past the limit."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise FileTooLarge(errno.EFBIG, f"{path} is larger than {max_bytes} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise FileTooLarge(errno.EFBIG, f"{path} grew past {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def nesting_depth_at_most(value, limit: int) -> bool:
    """Whether decoded JSON nests no deeper than `limit` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True
