"""Atomic writes: a temp file beside the target, fsynced and renamed over it; killed writers' temp files cleaned up.

:func:`atomic_path` yields a temporary path beside the target; when the block
ends normally the temp file is fsynced, given the target's mode, renamed over
the target and the directory fsynced. On any failure the temp file is removed
and the target is untouched; an ``OSError`` (full disk, quota, file size
limit, permissions) becomes a :class:`modelfactory.errors.CheckpointError`
that says the old file is intact.

Temp files are named ``.mf-<tag>-<rand>.tmp`` (25 characters, whatever the
target's name: a 250-character target name still works), where ``<tag>`` is 8
hex digits of a BLAKE2b hash of the target's file name and ``<rand>`` 8 random
hex digits.

Stale temp files (a writer killed by SIGKILL, OOM or power loss leaves its
temp file behind) are found and removed by :func:`remove_stale_temps`, which
:func:`atomic_path` calls before each write. Ownership and liveness:

* the *tag* narrows the candidates to temp files of this target name (another
  target's files are never examined, except on a 1-in-4-billion tag clash);
* a live writer holds an exclusive ``flock`` on its temp file for as long as it
  writes. The kernel drops it when the process dies, however it dies, so "can
  I take the lock?" is exactly "is its writer gone?". Unlike a pid in the name
  this survives pid reuse and pid namespaces (containers sharing a volume), and
  unlike POSIX ``fcntl``/``lockf`` record locks, a ``flock`` belongs to the open
  file description, so the caller opening and closing the temp path to write
  it cannot release it by accident;
* a candidate is removed only if it is also older than ``stale_after`` seconds
  (by mtime, which a live writer keeps fresh). That covers the instant between
  a writer creating its file and locking it, and writers that replace the temp
  file's inode (whose new inode is unlocked);
* the cleaner removes a file only while holding its lock, and only if the name
  still refers to the inode it locked.

``flock`` is advisory and local: on NFS, Linux emulates it with byte-range
locks (works between clients that all lock); on filesystems without locking
the age rule alone applies.

A full disk shows up as ``ENOSPC``. A process file-size limit
(``RLIMIT_FSIZE``, ``ulimit -f``) makes the kernel send ``SIGXFSZ``, whose
default action kills the process; CPython sets ``SIGXFSZ`` to ``SIG_IGN`` at
startup (next to ``SIGPIPE``), so ``write`` fails with ``EFBIG`` instead, which
arrives here as a clean ``CheckpointError``. (An embedding application that
restores ``SIG_DFL`` gets killed instead; then the stale-temp cleanup applies.)
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError

__all__ = [
    "DEFAULT_STALE_AFTER",
    "atomic_path",
    "remove_stale_temps",
    "temp_name_pattern",
]

TEMP_PREFIX = ".mf-"
TEMP_SUFFIX = ".tmp"
DEFAULT_STALE_AFTER = 60.0  # seconds
_HEX8 = "[0-9a-f]{8}"


def _short(value: object, limit: int = 80) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if isinstance(text, (str, bytes)) and len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _tag(target: Path) -> str:
    return hashlib.blake2b(os.fsencode(target.name), digest_size=4).hexdigest()


def temp_name_pattern(target: str | os.PathLike[str]) -> re.Pattern[str]:
    """The names of temp files that writers of ``target`` create beside it."""
    tag = _tag(Path(target))
    return re.compile(rf"\A{re.escape(TEMP_PREFIX)}{tag}-{_HEX8}{re.escape(TEMP_SUFFIX)}\Z")


def _directory(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def remove_stale_temps(
    target: str | os.PathLike[str], *, stale_after: float = DEFAULT_STALE_AFTER
) -> list[Path]:
    """Remove temp files left beside ``target`` by writers that died; return what was removed.

    A temp file is stale when its name carries ``target``'s tag, no process
    holds its ``flock``, and it has not been modified for ``stale_after``
    seconds. Files that cannot be examined are left alone. Never raises for
    a file it skips; ``OSError`` listing the directory propagates.
    """
    target = Path(target)
    directory = _directory(target)
    pattern = temp_name_pattern(target)
    removed: list[Path] = []
    now = time.time()
    with os.scandir(directory) as entries:
        for entry in entries:
            if not pattern.match(entry.name):
                continue
            try:
                fd = os.open(
                    entry.path,
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                )
            except OSError:
                continue  # gone already, a symlink, unreadable: not ours to judge
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < stale_after:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live writer holds it (or locks are unsupported)
                try:
                    current = os.lstat(entry.path)
                except OSError:
                    continue
                if (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                    continue  # the name was reused meanwhile
                try:
                    os.unlink(entry.path)
                except OSError:
                    continue
                removed.append(Path(entry.path))
            finally:
                os.close(fd)
    return removed


def _umask() -> int:
    """The process umask, read without changing it (os.umask(0) races other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # fallback: a restrictive value for the instant it is swapped
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError as err:
        # some filesystems (FUSE, network) cannot sync a directory: not a failure
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EROFS):
            raise
    finally:
        os.close(fd)


def _create_locked_temp(directory: Path, tag: str) -> tuple[int, Path]:
    """Create a new temp file and take its ``flock``; return the descriptor and path."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = directory / f"{TEMP_PREFIX}{tag}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # pragma: no cover - 1 in 4 billion per try
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # a cleaner run with stale_after=0 grabbed it first and will delete it
            os.close(fd)
            continue
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            # no locking on this filesystem: the stale_after age rule still protects us
        try:
            same = os.path.samestat(os.lstat(tmp), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            return fd, tmp
        os.close(fd)  # pragma: no cover - deleted by such a cleaner before we locked it
    raise FileExistsError(errno.EEXIST, "no usable temporary file name", str(directory))


_REMEDIES = {
    errno.ENOSPC: "Free disk space and retry.",
    errno.EDQUOT: "Free space within your disk quota and retry.",
    errno.EFBIG: (
        "The file exceeds a file size limit: the process limit (ulimit -f, RLIMIT_FSIZE) or "
        "the filesystem's largest file. Raise the limit or write elsewhere."
    ),
    errno.EACCES: "Check the permissions of the directory.",
    errno.EPERM: "Check the permissions of the directory.",
    errno.EROFS: "The filesystem is read-only: write elsewhere.",
    errno.ENAMETOOLONG: "Use a shorter file name.",
}


def _write_error(target: Path, err: OSError, existed: bool, stage: str) -> CheckpointError:
    code = errno.errorcode.get(err.errno or 0, "")
    reason = f"{err.strerror or err}" + (f" [{code}]" if code else "")
    state = (
        "the previous file is unchanged" if existed else "no file was created"
    ) + " and no temporary file was left"
    remedy = _REMEDIES.get(err.errno or 0, "Check the disk and retry.")
    return CheckpointError(
        f"could not write {_short(target)} ({stage}): {reason}; {state}. {remedy}"
    )


@contextmanager
def atomic_path(
    target: str | os.PathLike[str], *, stale_after: float = DEFAULT_STALE_AFTER
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` durably.

    Write the file at the yielded path (by name: open it, or hand it to a
    writer). When the block ends normally the file is fsynced, given the
    target's permission bits (or the umask default for a new file), renamed
    over ``target``, and the directory is fsynced. On an exception the temp
    file is removed and ``target`` is untouched; an ``OSError`` (raised by the
    block or here) is re-raised as :class:`CheckpointError`. Before writing,
    stale temp files of earlier, dead writers of ``target`` are removed (see
    :func:`remove_stale_temps`; ``stale_after`` is passed on).
    """
    target = Path(target)
    directory = _directory(target)
    existed = os.path.lexists(target)
    try:
        if not target.name:
            raise IsADirectoryError(errno.EISDIR, "the target names a directory", str(target))
        directory.mkdir(parents=True, exist_ok=True)
        name_max = os.pathconf(directory, "PC_NAME_MAX")
        if len(os.fsencode(target.name)) > name_max:
            raise OSError(errno.ENAMETOOLONG, f"the file name is over {name_max} bytes")
        try:
            remove_stale_temps(target, stale_after=stale_after)
        except OSError:
            pass  # cleaning up is best effort; writing is what was asked
        fd, tmp = _create_locked_temp(directory, _tag(target))
    except OSError as err:
        raise _write_error(target, err, existed, "preparing a temporary file") from err
    stage = "writing"
    try:
        yield tmp
        stage = "flushing to disk"
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        _fsync_path(tmp)
        stage = "replacing the old file"
        os.replace(tmp, target)
        stage = "syncing the directory"
        _fsync_dir(directory)
    except BaseException as err:
        if stage != "syncing the directory":
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # pragma: no cover - the directory vanished or turned read-only
                pass
        if isinstance(err, OSError):
            if stage == "syncing the directory":
                raise CheckpointError(
                    f"wrote {_short(target)}, but syncing its directory failed: "
                    f"{err.strerror or err}; the new file may not survive a power loss. "
                    "Check the disk."
                ) from err
            raise _write_error(target, err, existed, stage) from err
        raise
    finally:
        os.close(fd)  # releases the flock
