"""Output files: written atomically (an error leaves an existing file untouched, and no partial
file appears), and only over regular files.

A symlink is written through: its target gets the new content and the link stays, as editors do.
Anything that is not a regular file (a device such as /dev/null, a FIFO, a socket, a folder) is
refused rather than replaced. An existing file keeps its permission bits.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import OutputPathError


def output_target(path) -> Path:
    """The file that writing `path` replaces: `path`, or the target of a symlink. Raises
    OutputPathError when that exists and is not a regular file."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file name")
    if not stat.S_ISREG(mode):
        raise OutputPathError(f"cannot write {path}: it is a {_kind(mode)}, not a regular file, and "
                              f"would be replaced; choose another path")
    return target


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def write_atomic(path, data: bytes) -> Path:
    """Write `data` to `path` (through a symlink) via a temporary file in the same folder and a
    rename; returns the path of the file written."""
    path = output_target(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask  # the permissions a plain open() would give, not mkstemp's 0600
    # A short prefix: the temporary name must fit in NAME_MAX even when the file's name nearly does.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
