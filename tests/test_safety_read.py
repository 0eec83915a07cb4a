"""Tests for boundedread: devices, FIFOs and oversized files are refused promptly."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from modelfactory.errors import CheckpointError, ModelFactoryError
from modelfactory.safety import read as boundedread
from modelfactory.safety.read import read_bounded, read_text_bounded


def run_with_timeout(fn, seconds: float = 5.0):  # type: ignore[no-untyped-def]
    """Run ``fn`` in a daemon thread; fail (not hang) if it blocks."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as err:  # noqa: BLE001
            box.append(err)

    thread = threading.Thread(target=target, daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "read_bounded blocked"
    return box[0], time.perf_counter() - start


def test_normal_file(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_bytes(b"x: 1\n")
    assert read_bounded(path, limit=100, what="config file") == b"x: 1\n"
    assert read_bounded(str(path), limit=5, what="config file") == b"x: 1\n"  # exactly the limit
    assert read_text_bounded(path, limit=5, what="config file") == "x: 1\n"


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert read_bounded(path, limit=0, what="file") == b""


def test_file_of_limit_plus_one_bytes(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"y" * 101)
    with pytest.raises(ModelFactoryError, match=r"is 101 bytes \(limit 100\)"):
        read_bounded(path, limit=100, what="config file")


def test_dev_zero_is_refused_before_opening():
    result, elapsed = run_with_timeout(lambda: read_bounded("/dev/zero", limit=10, what="file"))
    assert isinstance(result, ModelFactoryError)
    assert "is a character device, not a regular file" in str(result)


def test_fifo_returns_promptly_with_an_error(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result, elapsed = run_with_timeout(lambda: read_bounded(fifo, limit=10, what="config file"))
    assert isinstance(result, ModelFactoryError)
    assert "is a FIFO (named pipe), not a regular file" in str(result)
    assert elapsed < 1.0


def test_fifo_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    # simulate the race: stat() saw a regular file, but open() meets a FIFO
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    regular = os.stat(__file__)
    monkeypatch.setattr(boundedread, "_stat", lambda p: regular)
    result, elapsed = run_with_timeout(lambda: read_bounded(fifo, limit=10**6, what="file"))
    assert isinstance(result, ModelFactoryError)
    assert "was replaced while being opened (now a FIFO" in str(result)


def test_file_replaced_after_the_check(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    seen = os.stat(a)
    monkeypatch.setattr(boundedread, "_stat", lambda p: seen)
    with pytest.raises(ModelFactoryError, match="replaced by another file"):
        read_bounded(b, limit=10, what="file")


def test_file_growing_past_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "grows"
    path.write_bytes(b"z" * 50)
    small = os.stat_result((stat.S_IFREG | 0o644, *os.stat(path)[1:6], 5, *os.stat(path)[7:]))
    monkeypatch.setattr(boundedread, "_stat", lambda p: small)
    with pytest.raises(ModelFactoryError, match=r"is over 10 bytes \(it grew"):
        read_bounded(path, limit=10, what="file")


def test_proc_file_reporting_size_zero():
    data = read_bounded("/proc/self/status", limit=100_000, what="file")
    assert b"Name:" in data
    with pytest.raises(ModelFactoryError, match="is over 10 bytes"):
        read_bounded("/proc/self/status", limit=10, what="file")


def test_directory_missing_and_symlinks(tmp_path):
    with pytest.raises(ModelFactoryError, match="is a directory"):
        read_bounded(tmp_path, limit=10, what="file")
    with pytest.raises(ModelFactoryError, match="no such file"):
        read_bounded(tmp_path / "nope", limit=10, what="file")
    link = tmp_path / "link"
    link.symlink_to("/dev/zero")
    with pytest.raises(ModelFactoryError, match="character device"):
        read_bounded(link, limit=10, what="file")


def test_socket_is_refused(tmp_path):
    import socket

    sock_path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        with pytest.raises(ModelFactoryError, match="is a socket"):
            read_bounded(sock_path, limit=10, what="file")
    finally:
        sock.close()


def test_error_class_message_and_truncated_path(tmp_path):
    path = tmp_path / ("\x1b[2J" + "n" * 200)
    path.write_bytes(b"12345")
    with pytest.raises(CheckpointError) as info:
        read_bounded(path, limit=2, what="checkpoint", error=CheckpointError)
    message = str(info.value)
    assert message.startswith("checkpoint '")
    assert "\x1b" not in message and len(message) < 250
    assert "raise the limit" in message


def test_non_utf8_text(tmp_path):
    path = tmp_path / "latin1"
    path.write_bytes(b"caf\xe9")
    with pytest.raises(ModelFactoryError, match=r"not UTF-8 text \(byte 3\)"):
        read_text_bounded(path, limit=10, what="config file")
