"""Read a whole regular file of bounded size; never open a FIFO, device, socket or directory.

``Path.read_bytes()`` on a user-given path reads ``/dev/zero`` until memory
runs out, blocks forever on a FIFO with no writer (``open`` itself blocks),
and reads a 50 GB file before anyone checks its size. :func:`read_bounded`:

1. ``stat`` s the path (following symlinks, as ``open`` will) and refuses
   anything but a regular file *before* opening it, and a size over ``limit``;
2. opens it with ``O_NONBLOCK`` (so a FIFO swapped in after the check cannot
   block ``open``) and ``O_NOCTTY``, then ``fstat`` s the open descriptor and
   refuses it unless it is still a regular file, the same one (device and
   inode) that was checked;
3. reads at most ``limit + 1`` bytes and refuses the file if it got more
   (files in ``/proc`` report size 0, and files grow).
"""

from __future__ import annotations

import os
import stat
from typing import NoReturn

from ..errors import ModelFactoryError

__all__ = ["read_bounded", "read_text_bounded"]

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


_stat = os.stat  # the pre-open check (tests replace it to simulate a race)


def _short(value: object, limit: int = 80) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if isinstance(text, (str, bytes)) and len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return f"not a regular file (mode {stat.filemode(mode)})"


def read_bounded(
    path: str | os.PathLike[str],
    *,
    limit: int,
    what: str,
    error: type[ModelFactoryError] = ModelFactoryError,
) -> bytes:
    """The bytes of regular file ``path``, refused with ``error`` if over ``limit`` bytes.

    ``what`` says what the file is for (``"config file"``, ``"checkpoint"``)
    and starts every message; the path is shown as a clipped ``repr``.
    """
    if limit < 0:
        raise ValueError("read_bounded: limit must be non-negative")
    where = _short(path)
    what = what[:80]  # a caller's label; kept short all the same

    def refuse(finding: str, remedy: str) -> NoReturn:
        raise error(f"{what} {where}: {finding}. {remedy}")

    try:
        before = _stat(path)
    except FileNotFoundError:
        refuse("no such file", "Check the path.")
    except OSError as err:
        refuse(f"cannot be examined ({err.strerror or err})", "Check the path and permissions.")
    if not stat.S_ISREG(before.st_mode):
        refuse(f"is {_kind(before.st_mode)}, not a regular file", f"Pass the path of a {what}.")
    if before.st_size > limit:
        refuse(
            f"is {before.st_size} bytes (limit {limit})",
            "Pass a smaller file, or raise the limit if this size is expected.",
        )
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        refuse(f"cannot be opened ({err.strerror or err})", "Check its permissions.")
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            refuse(
                f"was replaced while being opened (now {_kind(now.st_mode)})"
                if not stat.S_ISREG(now.st_mode)
                else "was replaced by another file while being opened",
                "Retry once nothing else is writing that path.",
            )
        # regular files never return EAGAIN; the flag only guarded open()
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(limit + 1)
    except OSError as err:
        refuse(f"could not be read ({err.strerror or err})", "Check the file and retry.")
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        refuse(
            f"is over {limit} bytes (it grew, or its size was not reported)",
            "Pass a smaller file, or raise the limit if this size is expected.",
        )
    return data


def read_text_bounded(
    path: str | os.PathLike[str],
    *,
    limit: int,
    what: str,
    error: type[ModelFactoryError] = ModelFactoryError,
) -> str:
    """:func:`read_bounded`, decoded as strict UTF-8 (a clean error names the bad byte offset)."""
    data = read_bounded(path, limit=limit, what=what, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(
            f"{what} {_short(path)}: is not UTF-8 text (byte {err.start}). Save it as UTF-8."
        ) from None
