"""Scan a ``torch.save`` zip for resource bombs before ``torch.load`` reads it; build nothing.

``torch.load(weights_only=True)`` refuses code, but it still builds whatever
containers the pickle describes and reads whatever storages it names. A file
can therefore exhaust memory (a zip member or storage declaring terabytes), or
hand back a key nested 200,000 deep that crashes the first ``hash()`` or
``repr()`` that recurses through it. :func:`scan_torch_file` checks a file
against explicit budgets first:

* the path is a regular file (never a FIFO or a device: opening one blocks or
  reads forever) no larger than ``max_bytes``;
* it starts with a zip local header, as ``torch.load`` requires to take its zip
  path (a legacy pickle file, or a pickle with a zip appended, is refused);
* the zip's end records are parsed by hand *before* :mod:`zipfile` reads the
  central directory, so a directory of millions of entries is refused unread;
  member names are unique ASCII under one ``<archive>/`` folder, members do not
  overlap, lie inside the file, are stored or deflated, and their declared
  sizes fit the budgets (a deflated member's ratio is capped: zip bombs);
* ``<archive>/data.pkl`` is read up to ``max_pickle_bytes`` and walked with
  :func:`pickletools.genops`, which decodes opcodes without running them. A
  small abstract pickle machine tracks, for every value, only its container
  nesting depth; it counts opcodes, bounds open ``MARK`` s and nesting depth,
  refuses a container changed after it was put inside another (cycles), and
  sums the storage bytes that persistent ids declare
  (``('storage', <storage class>, key, location, numel)``);
* every declared storage has its ``data/<key>`` member, of exactly the declared
  size, and no storage member is left unreferenced.

Every refusal is a :class:`modelfactory.errors.CheckpointError` naming the
file, the finding and the remedy. Only stdlib is used; torch is not imported.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ...errors import CheckpointError
from .common import (
    _ZIP_MAGIC,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_OPCODES,
    DEFAULT_MAX_PICKLE_BYTES,
    DEFAULT_MAX_RATIO,
    ELEMENT_SIZES,
    MAX_CENTRAL_DIRECTORY_BYTES,
    OTHER_MEMBERS_BUDGET,
    RAISE_LIMIT,
    RESAVE,
    Refuse,
    ScanStats,
    refuse,
    short,
)
from .pickle_layer import _PickleWalker
from .zip_layer import _check_members, _end_record, _read_at

__all__ = [
    "ELEMENT_SIZES",
    "ScanStats",
    "open_scanned",
    "scan_torch_file",
    "scan_torch_file_stats",
]


def _open_regular(path: Path, max_bytes: int) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file of at most ``max_bytes``."""
    try:
        before = os.stat(path)
    except OSError as err:
        refuse(f"the file cannot be examined: {err.strerror or err}", "Check the path.")
    if not stat.S_ISREG(before.st_mode):
        refuse(
            f"it is not a regular file (mode {stat.filemode(before.st_mode)})",
            "Pass the path of a torch.save file; FIFOs, devices and directories are never read.",
        )
    if before.st_size > max_bytes:
        refuse(f"the file is {before.st_size} bytes (limit {max_bytes})", RAISE_LIMIT)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        refuse(f"the file cannot be opened: {err.strerror or err}", "Check its permissions.")
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            refuse("the file was replaced while it was being opened", "Retry the load.")
        if now.st_size > max_bytes:
            refuse(f"the file is {now.st_size} bytes (limit {max_bytes})", RAISE_LIMIT)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _scan_open(
    f: BinaryIO,
    *,
    max_pickle_bytes: int,
    max_opcodes: int,
    max_depth: int,
    max_storage_bytes: int,
    max_members: int,
    max_ratio: int,
) -> ScanStats:
    file_size = os.fstat(f.fileno()).st_size
    head = _read_at(f, 0, 4)
    if head != _ZIP_MAGIC:
        if head[:1] == b"\x80":
            refuse(
                "it is a legacy (pre-1.6, non-zip) torch.save file, which is not accepted",
                "Load it once in a trusted environment and re-save it with a current torch.save.",
            )
        refuse(
            f"it does not start with a zip header (found {short(head)}), so it is not a "
            "torch.save file (torch.load would read it as a legacy pickle)",
            "Pass a file written by torch.save.",
        )
    end = _end_record(f, file_size)
    if end.entries > max_members:
        refuse(f"the archive has {end.entries} members (limit {max_members})", RAISE_LIMIT)
    if end.cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
        refuse(
            f"the zip central directory is {end.cd_size} bytes "
            f"(limit {MAX_CENTRAL_DIRECTORY_BYTES})",
            RESAVE,
        )
    f.seek(0)
    stats = ScanStats(members=end.entries)
    try:
        with zipfile.ZipFile(f) as zf:  # reads the (bounded) central directory only
            budget = max_storage_bytes + max_pickle_bytes + OTHER_MEMBERS_BUDGET
            prefix, members = _check_members(
                f, zf, end, max_members=max_members, budget=budget, max_ratio=max_ratio
            )
            pkl = members.get(prefix + "data.pkl")
            if pkl is None:
                refuse(f"the archive has no {short(prefix + 'data.pkl')}", RESAVE)
            if pkl.file_size > max_pickle_bytes:
                refuse(
                    f"data.pkl declares {pkl.file_size} bytes (limit {max_pickle_bytes})",
                    RAISE_LIMIT,
                )
            with zf.open(pkl) as handle:
                data = handle.read(max_pickle_bytes + 1)
            if len(data) > max_pickle_bytes:  # pragma: no cover - file_size is checked first
                refuse(f"data.pkl is over {max_pickle_bytes} bytes", RAISE_LIMIT)
            stats.pickle_bytes = len(data)
            walker = _PickleWalker(
                max_opcodes=max_opcodes, max_depth=max_depth, max_storage_bytes=max_storage_bytes
            )
            walker.walk(data)
            del data
            stats.opcodes = walker.opcodes
            stats.max_depth = walker.deepest
            stats.max_marks = walker.most_marks
            stats.storages = walker.storages
            storage_dir = prefix + "data/"
            for name, info in members.items():
                if name.startswith(storage_dir) and name[len(storage_dir) :] not in walker.storages:
                    refuse(
                        f"storage member {short(name)} ({info.file_size} bytes) is not "
                        "referenced by data.pkl",
                        RESAVE,
                    )
            for key, nbytes in walker.storages.items():
                found = members.get(storage_dir + key)
                if found is None:
                    refuse(
                        f"data.pkl declares storage {short(key)} but the archive has no "
                        f"member {short(storage_dir + key)}",
                        RESAVE,
                    )
                if found.file_size != nbytes:
                    refuse(
                        f"storage member {short(found.filename)} holds {found.file_size} bytes "
                        f"but data.pkl declares {nbytes}",
                        RESAVE,
                    )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, struct.error) as err:
        refuse(f"the zip archive is damaged: {short(str(err))}", RESAVE)
    except (RuntimeError, NotImplementedError, UnicodeDecodeError) as err:
        refuse(f"the zip archive cannot be read: {short(str(err))}", RESAVE)
    return stats


def _limits(max_bytes: int, max_storage_bytes: int | None) -> int:
    if max_bytes < 0 or (max_storage_bytes is not None and max_storage_bytes < 0):
        raise ValueError("limits must be non-negative")
    return max_bytes if max_storage_bytes is None else max_storage_bytes


def _error(path: str | os.PathLike[str], err: Refuse) -> CheckpointError:
    return CheckpointError(
        f"refusing to load {short(path)} with torch.load: {err.finding}. {err.remedy}"
    )


@contextmanager
def _scanned(
    path: str | os.PathLike[str], *, max_bytes: int, max_storage_bytes: int | None, **limits: int
) -> Iterator[tuple[BinaryIO, ScanStats]]:
    """Open ``path``, scan it within the limits, and yield the rewound handle and what was measured."""
    storage_limit = _limits(max_bytes, max_storage_bytes)
    try:
        f = _open_regular(Path(path), max_bytes)
    except Refuse as err:
        raise _error(path, err) from None
    with f:
        try:
            stats = _scan_open(f, max_storage_bytes=storage_limit, **limits)
        except Refuse as err:
            raise _error(path, err) from None
        except OSError as err:
            raise CheckpointError(
                f"refusing to load {short(path)}: reading it failed: {err.strerror or err}. "
                "Check the file and retry."
            ) from None
        f.seek(0)
        yield f, stats


@contextmanager
def open_scanned(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    max_pickle_bytes: int = DEFAULT_MAX_PICKLE_BYTES,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_storage_bytes: int | None = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> Iterator[BinaryIO]:
    """Scan ``path`` and yield the very file object scanned, rewound, for ``torch.load``.

    Passing the yielded handle to ``torch.load`` (instead of the path) closes
    the window in which the path could be swapped for another file between the
    scan and the load. Limits are those of :func:`scan_torch_file`.
    """
    with _scanned(
        path,
        max_bytes=max_bytes,
        max_pickle_bytes=max_pickle_bytes,
        max_opcodes=max_opcodes,
        max_depth=max_depth,
        max_storage_bytes=max_storage_bytes,
        max_members=max_members,
        max_ratio=max_ratio,
    ) as (f, _):
        yield f


def scan_torch_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    max_pickle_bytes: int = DEFAULT_MAX_PICKLE_BYTES,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_storage_bytes: int | None = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> None:
    """Refuse ``path`` with a :class:`CheckpointError` unless it is a torch.save zip within budgets.

    ``max_bytes`` bounds the file size; ``max_pickle_bytes`` the ``data.pkl``
    member; ``max_opcodes`` the pickle opcodes walked; ``max_depth`` both the
    container nesting depth and the open ``MARK`` s; ``max_storage_bytes``
    (default ``max_bytes``) the tensor bytes the pickle declares;
    ``max_members`` the zip members; ``max_ratio`` the expansion of a deflated
    member. Nothing is unpickled, and only ``data.pkl`` and zip headers are read.
    """
    scan_torch_file_stats(
        path,
        max_bytes=max_bytes,
        max_pickle_bytes=max_pickle_bytes,
        max_opcodes=max_opcodes,
        max_depth=max_depth,
        max_storage_bytes=max_storage_bytes,
        max_members=max_members,
        max_ratio=max_ratio,
    )


def scan_torch_file_stats(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    max_pickle_bytes: int = DEFAULT_MAX_PICKLE_BYTES,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_storage_bytes: int | None = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> ScanStats:
    """:func:`scan_torch_file`, returning what it measured (opcodes, depth, storages)."""
    with _scanned(
        path,
        max_bytes=max_bytes,
        max_pickle_bytes=max_pickle_bytes,
        max_opcodes=max_opcodes,
        max_depth=max_depth,
        max_storage_bytes=max_storage_bytes,
        max_members=max_members,
        max_ratio=max_ratio,
    ) as (_, stats):
        return stats
