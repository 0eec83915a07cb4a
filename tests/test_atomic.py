"""The atomic writer: replace durably, clean errors on full disks, stale temp files cleaned up."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from modelfactory.errors import CheckpointError
from modelfactory.io import atomic
from modelfactory.io.atomic import atomic_path, remove_stale_temps, temp_name_pattern

HERE = Path(__file__).resolve().parent


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".mf-"))


def old_target(tmp_path: Path, mode: int = 0o640) -> Path:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"GOOD OLD CONTENT")
    target.chmod(mode)
    return target


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# ---------------------------------------------------------------- the happy path


def test_replaces_keeps_mode_and_leaves_nothing(tmp_path):
    target = old_target(tmp_path, 0o640)
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert temp_name_pattern(target).match(tmp.name) and len(tmp.name) == 25
        assert tmp.stat().st_mode & 0o777 == 0o600  # private while being written
        tmp.write_bytes(b"NEW")
        assert target.read_bytes() == b"GOOD OLD CONTENT"
    assert target.read_bytes() == b"NEW"
    assert target.stat().st_mode & 0o777 == 0o640
    assert temps(tmp_path) == []


def test_new_file_gets_the_umask_default(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "sub" / "new.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "new.bin").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("length", [250, 255])
def test_long_target_names_work(tmp_path, length):
    target = tmp_path / ("n" * (length - 12) + ".safetensors")
    assert len(target.name) == length
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok" and temps(tmp_path) == []


def test_too_long_a_name_fails_before_the_block_runs(tmp_path):
    ran = False
    with pytest.raises(CheckpointError, match=r"File name too long|over 255 bytes") as info:
        with atomic_path(tmp_path / ("n" * 256)):
            ran = True
    assert not ran and "no file was created" in str(info.value)
    assert len(str(info.value)) < 500


def test_concurrent_writers_each_land_whole(tmp_path):
    target = tmp_path / "t.bin"
    payloads = [bytes([i]) * 200_000 for i in range(6)]

    def write(data: bytes) -> None:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                for k in range(0, len(data), 10_000):
                    f.write(data[k : k + 10_000])

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads and temps(tmp_path) == []


# ---------------------------------------------------------------- failures


def test_exception_in_the_block_leaves_the_old_file(tmp_path):
    target = old_target(tmp_path)
    with pytest.raises(ValueError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError("boom")
    assert target.read_bytes() == b"GOOD OLD CONTENT" and temps(tmp_path) == []


def test_full_disk_is_a_clean_checkpoint_error(tmp_path):
    target = old_target(tmp_path)
    with pytest.raises(CheckpointError) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    message = str(info.value)
    assert "No space left on device [ENOSPC]" in message
    assert "the previous file is unchanged" in message and "Free disk space" in message
    assert isinstance(info.value.__cause__, OSError)
    assert target.read_bytes() == b"GOOD OLD CONTENT" and temps(tmp_path) == []


def test_fsync_failure_is_clean(tmp_path, monkeypatch):
    target = old_target(tmp_path)

    def broken(path: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(atomic, "_fsync_path", broken)
    with pytest.raises(CheckpointError, match=r"\(flushing to disk\): Input/output error"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"GOOD OLD CONTENT" and temps(tmp_path) == []


def test_rlimit_fsize_gives_a_clean_error_not_a_dead_process(tmp_path):
    target = old_target(tmp_path)
    child = run_child(
        """
        import resource, signal, sys
        from modelfactory.io.atomic import atomic_path
        from modelfactory.errors import CheckpointError
        assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN, signal.getsignal(signal.SIGXFSZ)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
        try:
            with atomic_path(sys.argv[1]) as tmp:
                with open(tmp, "wb") as f:
                    for _ in range(100):
                        f.write(b"x" * 10_000)
        except CheckpointError as err:
            print("CLEAN:", err)
            sys.exit(0)
        sys.exit(3)
        """,
        str(target),
    )
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert "File too large [EFBIG]" in child.stdout and "RLIMIT_FSIZE" in child.stdout
    assert "the previous file is unchanged" in child.stdout
    assert target.read_bytes() == b"GOOD OLD CONTENT" and temps(tmp_path) == []


def test_sigxfsz_default_kills_and_the_stale_temp_is_cleaned(tmp_path):
    """What an application that restores SIG_DFL gets: death by SIGXFSZ, then cleanup."""
    target = old_target(tmp_path)
    child = run_child(
        """
        import resource, signal, sys
        from modelfactory.io.atomic import atomic_path
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        with atomic_path(sys.argv[1]) as tmp:
            with open(tmp, "wb") as f:
                for _ in range(100):
                    f.write(b"x" * 10_000)
                    f.flush()
        """,
        str(target),
    )
    assert child.returncode == -signal.SIGXFSZ
    left = temps(tmp_path)
    assert len(left) == 1 and temp_name_pattern(target).match(left[0])
    assert remove_stale_temps(target) == []  # too recent for the default age rule
    assert remove_stale_temps(target, stale_after=0) == [tmp_path / left[0]]
    assert target.read_bytes() == b"GOOD OLD CONTENT" and temps(tmp_path) == []


# ---------------------------------------------------------------- stale temp files


def test_live_writer_is_spared_and_killed_writer_is_cleaned(tmp_path):
    target = old_target(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    code = textwrap.dedent(
        """
        import sys, time
        from modelfactory.io.atomic import atomic_path
        with atomic_path(sys.argv[1]) as tmp:
            with open(tmp, "wb") as f:   # the caller opens and closes its own handle
                f.write(b"partial")
            print(tmp, flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        tmp = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
        assert tmp.exists()
        old = time.time() - 3600
        os.utime(tmp, (old, old))  # even an old-looking file is spared while locked
        assert remove_stale_temps(target, stale_after=0) == []
        assert tmp.exists()
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert tmp.exists() and target.read_bytes() == b"GOOD OLD CONTENT"
    assert remove_stale_temps(target, stale_after=0) == [tmp]
    assert temps(tmp_path) == []


def test_atomic_path_removes_old_stale_temps_of_its_target_only(tmp_path):
    target = old_target(tmp_path)
    other = tmp_path / "other.bin"
    stale = tmp_path / f".mf-{atomic._tag(target)}-0123abcd.tmp"
    fresh = tmp_path / f".mf-{atomic._tag(target)}-89abcdef.tmp"
    foreign = tmp_path / f".mf-{atomic._tag(other)}-0123abcd.tmp"
    lookalike = tmp_path / f".mf-{atomic._tag(target)}-notmine.tmp"
    for path in (stale, fresh, foreign, lookalike):
        path.write_bytes(b"junk")
    old = time.time() - 3600
    for path in (stale, foreign, lookalike):
        os.utime(path, (old, old))
    link = tmp_path / f".mf-{atomic._tag(target)}-deadbeef.tmp"
    link.symlink_to(target)  # a symlink with a temp name is never followed or removed
    os.utime(link, (old, old), follow_symlinks=False)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"NEW")
    assert not stale.exists()
    assert fresh.exists() and foreign.exists() and lookalike.exists() and link.is_symlink()
    assert target.read_bytes() == b"NEW"


# ---------------------------------------------------------------- hashing while writing
