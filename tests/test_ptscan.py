"""Tests for ptscan: hostile torch.save files are refused before torch.load sees them."""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import struct
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from modelfactory.errors import CheckpointError
from modelfactory.io import ptscan
from modelfactory.io.ptscan import (
    open_scanned,
    pickle_layer,
    scan_torch_file,
    scan_torch_file_stats,
)

MB = 1024 * 1024


# ---------------------------------------------------------------- hand-built torch-like files


class _Storage:
    def __init__(self, cls: type, key: str, numel: int) -> None:
        self.cls, self.key, self.numel = cls, key, numel


class _Tensor:
    """Pickles exactly as torch.save pickles a contiguous CPU tensor."""

    def __init__(self, storage: _Storage, size: tuple[int, ...]) -> None:
        self.storage, self.size = storage, size

    def __reduce__(self):  # type: ignore[no-untyped-def]
        stride = tuple(int(torch.tensor(self.size[i + 1 :]).prod()) for i in range(len(self.size)))
        return (
            torch._utils._rebuild_tensor_v2,
            (self.storage, 0, self.size, stride, False, collections.OrderedDict()),
        )


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):  # type: ignore[no-untyped-def]
        if isinstance(obj, _Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def dumps(obj: object, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def write_pt(
    path: Path,
    pkl: bytes,
    storages: dict[str, bytes] | None = None,
    *,
    archive: str = "archive",
    extra: list[tuple[str, bytes, int]] = (),  # type: ignore[assignment]
) -> Path:
    """A zip laid out as torch.save lays one out: data.pkl, data/<key>, byteorder, version."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", pkl)
        z.writestr(f"{archive}/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"{archive}/data/{key}", data)
        for name, data, method in extra:
            z.writestr(zipfile.ZipInfo(f"{archive}/{name}"), data, compress_type=method)
        z.writestr(f"{archive}/version", "3\n")
    return path


def small_state(path: Path) -> Path:
    a = _Tensor(_Storage(torch.FloatStorage, "0", 6), (2, 3))
    b = _Tensor(_Storage(torch.LongStorage, "1", 2), (2,))
    pkl = dumps({"w": a, "b": b})
    data0 = struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    data1 = struct.pack("<2q", 7, 8)
    return write_pt(path, pkl, {"0": data0, "1": data1})


def central_entries(data: bytes) -> dict[str, int]:
    """Offsets of each member's central directory header, by name."""
    found = {}
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        name = data[pos + 46 : pos + 46 + name_len].decode()
        found[name] = pos
        pos = data.find(b"PK\x01\x02", pos + 46)
    return found


def patch_sizes(path: Path, name: str, *, csize: int | None, usize: int | None) -> None:
    data = bytearray(path.read_bytes())
    pos = central_entries(bytes(data))[name]
    if csize is not None:
        struct.pack_into("<L", data, pos + 20, csize)
    if usize is not None:
        struct.pack_into("<L", data, pos + 24, usize)
    path.write_bytes(bytes(data))


def refused(path: Path, match: str, **limits: int) -> CheckpointError:
    limits.setdefault("max_bytes", 64 * MB)
    with pytest.raises(CheckpointError, match=match) as info:
        scan_torch_file(path, **limits)
    message = str(info.value)
    assert repr(str(path))[:40] in message or "..." in message
    assert len(message) < 800
    return info.value


# ---------------------------------------------------------------- good files pass


def test_real_state_dict_passes_then_loads(tmp_path):
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    stats = scan_torch_file_stats(path, max_bytes=MB)
    assert stats.storage_bytes == sum(
        t.numel() * t.element_size() for t in net.state_dict().values()
    )
    assert stats.max_depth <= 10
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["0.weight"], net.state_dict()["0.weight"])


def test_optimizer_protocol4_new_dtypes_and_shared_storage(tmp_path):
    net = nn.Linear(4, 4)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 4)).sum().backward()
    opt.step()
    base = torch.arange(12.0)
    obj = {
        "model": net.state_dict(),
        "opt": opt.state_dict(),
        "f8": torch.zeros(3, dtype=torch.float8_e4m3fn),
        "u16": torch.zeros(5, dtype=torch.uint16),
        "empty": torch.zeros(0),
        "view": base[3:],
        "base": base,
    }
    path = tmp_path / "ck.pt"
    torch.save(obj, path, pickle_protocol=4)
    stats = scan_torch_file_stats(path, max_bytes=MB)
    assert 3 in stats.storages.values() and 10 in stats.storages.values()  # untyped: bytes
    assert list(stats.storages.values()).count(48) == 1  # base and view share one storage
    # torch's weights-only unpickler rejects protocol 4 (FRAME); protocol 2 loads
    torch.save(obj, path)
    assert scan_torch_file_stats(path, max_bytes=MB).storages == stats.storages
    torch.load(path, weights_only=True)


def test_hand_built_layout_is_what_torch_loads(tmp_path):
    path = small_state(tmp_path / "hand.pt")
    stats = scan_torch_file_stats(path, max_bytes=MB)
    assert stats.storages == {"0": 24, "1": 16}
    loaded = torch.load(path, weights_only=True)
    assert loaded["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert loaded["b"].tolist() == [7, 8]


def test_open_scanned_yields_the_scanned_handle(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"x": torch.ones(3)}, path)
    with open_scanned(path, max_bytes=MB) as handle:
        assert torch.load(handle, weights_only=True)["x"].sum() == 3


# ---------------------------------------------------------------- nesting


DEEP = 200_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"N" + b"\x85" * DEEP, id="TUPLE1-chain"),
        pytest.param(b"(" * DEEP + b"N" + b"t" * DEEP, id="MARK-TUPLE-chain"),
        pytest.param(b"N" + b"N\x86" * DEEP, id="TUPLE2-chain"),
        pytest.param(b"]" * DEEP + b"a" * (DEEP - 1), id="nested-lists"),
    ],
)
def test_200k_deep_key_is_refused_quickly(tmp_path, body):
    # torch.load(weights_only=True) of the TUPLE1 file segfaults (recursive hash of the key).
    pkl = b"\x80\x02}" + body + b"K\x01s."
    path = write_pt(tmp_path / "deep.pt", pkl)
    start = time.perf_counter()
    refused(path, r"nests containers more than 100 deep|more than 100 nested MARKs")
    assert time.perf_counter() - start < 1.0


def test_the_segfaulting_file_is_a_clean_error_in_every_pt_reader(tmp_path):
    """In a subprocess: before the scan, these readers crashed the interpreter (exit 139)."""
    import subprocess
    import sys

    path = write_pt(tmp_path / "deep.pt", b"\x80\x02}N" + b"\x85" * DEEP + b"K\x01s.")
    code = (
        "import sys, modelfactory as mf\n"
        "for read in (mf.load_state_dict, mf.load_tensors):\n"
        "    try:\n"
        "        read(sys.argv[1])\n"
        "    except mf.CheckpointError as err:\n"
        "        assert 'nests containers more than 100 deep' in str(err), err\n"
        "    else:\n"
        "        raise SystemExit('read')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_depth_is_tracked_through_the_memo(tmp_path):
    # each level is built from a memo copy, popped from the stack: the stack stays shallow
    parts = [b"\x80\x02N\x85q\x00"]
    for i in range(1, 300):
        parts.append(b"0h" + bytes([(i - 1) % 256]) + b"\x85q" + bytes([i % 256]))
    parts.append(b".")
    path = write_pt(tmp_path / "memo.pt", b"".join(parts))
    err = refused(path, "nests containers more than 100 deep")
    assert "found depth 101" in str(err)


def test_container_filled_after_nesting_is_refused(tmp_path):
    # a top-down chain: a list is put in its parent first and filled afterwards,
    # which would hide the depth from a naive counter
    ops = [b"\x80\x02"]
    for i in range(5):
        ops.append(b"]q" + bytes([i]) + b"0")  # EMPTY_LIST, BINPUT i, POP
    for i in range(4):
        ops.append(b"h" + bytes([i]) + b"h" + bytes([i + 1]) + b"a0")  # memo[i].append(memo[i+1])
    ops.append(b"h\x00.")
    path = write_pt(tmp_path / "topdown.pt", b"".join(ops))
    refused(path, "changes a container after putting it inside another")


def test_cyclic_pickle_is_refused(tmp_path):
    cyc: list[object] = []
    cyc.append(cyc)
    path = write_pt(tmp_path / "cyc.pt", pickle.dumps({"k": cyc}, protocol=2))
    refused(path, "cyclic")


def test_wide_flat_data_is_fine(tmp_path):
    path = write_pt(tmp_path / "wide.pt", pickle.dumps({"k": list(range(50_000))}, protocol=2))
    stats = scan_torch_file_stats(path, max_bytes=MB)
    assert stats.max_depth == 2


# ---------------------------------------------------------------- zip bombs and layout


def test_deflate_bomb_is_refused_by_ratio(tmp_path):
    bomb = ("bomb", b"\0" * (20 * MB), zipfile.ZIP_DEFLATED)
    path = write_pt(tmp_path / "bomb.pt", pickle.dumps({}, protocol=2), extra=[bomb])
    assert path.stat().st_size < MB
    refused(path, r"ratio over 100: a zip bomb")


def test_member_declaring_huge_size_is_refused(tmp_path):
    path = write_pt(tmp_path / "big.pt", pickle.dumps({}, protocol=2), extra=[("pad", b"x", 0)])
    patch_sizes(path, "archive/pad", csize=3_000_000_000, usize=3_000_000_000)
    refused(path, r"the members declare more than \d+ bytes in all", max_bytes=MB)


def test_member_running_past_the_archive_is_refused(tmp_path):
    path = write_pt(tmp_path / "big.pt", pickle.dumps({}, protocol=2), extra=[("pad", b"x", 0)])
    patch_sizes(path, "archive/pad", csize=500_000, usize=500_000)
    refused(path, "run past the end of the archive data")


def test_stored_member_with_mismatched_sizes_is_refused(tmp_path):
    path = write_pt(tmp_path / "m.pt", pickle.dumps({}, protocol=2), extra=[("pad", b"x", 0)])
    patch_sizes(path, "archive/pad", csize=None, usize=10**9)
    refused(path, "declares 1000000000 bytes but occupies 1")


def test_too_many_members_refused_before_zipfile_reads_them(tmp_path, monkeypatch):
    path = small_state(tmp_path / "s.pt")

    def boom(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("zipfile.ZipFile was opened")

    monkeypatch.setattr(ptscan.zipfile, "ZipFile", boom)
    refused(path, r"the archive has 5 members \(limit 3\)", max_members=3)


def test_forged_end_record_with_a_huge_directory(tmp_path):
    path = small_state(tmp_path / "s.pt")
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HHLL", data, eocd + 8, 5, 5, 200 * MB, 0)
    path.write_bytes(bytes(data))
    refused(path, "central directory")


def test_duplicate_member_names_are_refused(tmp_path):
    path = tmp_path / "dup.pt"
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_pt(path, pickle.dumps({}, protocol=2), extra=[("byteorder", b"big", 0)])
    refused(path, "appears twice")


def test_members_outside_the_archive_folder_are_refused(tmp_path):
    path = write_pt(tmp_path / "o.pt", pickle.dumps({}, protocol=2))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("other/data.pkl", b"x")
    refused(path, "outside the archive folder")


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    refused(path, "TorchScript")


def test_legacy_format_is_refused(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"x": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    refused(path, "legacy")


def test_pickle_with_a_zip_appended_is_refused(tmp_path):
    good = small_state(tmp_path / "s.pt").read_bytes()
    path = tmp_path / "poly.pt"
    path.write_bytes(pickle.dumps({"x": 1}, protocol=2) + good)
    refused(path, "legacy")


def test_data_before_the_archive_is_refused(tmp_path):
    good = small_state(tmp_path / "s.pt").read_bytes()
    path = tmp_path / "pre.pt"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 60 + good)
    refused(path, "central directory does not end where")


def test_not_a_zip(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"\x1b[2Jhello")
    err = refused(path, "does not start with a zip header")
    assert "\x1b" not in str(err)


# ---------------------------------------------------------------- storages


def test_large_declared_storage_is_refused(tmp_path):
    huge = _Tensor(_Storage(torch.FloatStorage, "0", 10**12), (10**12,))
    path = write_pt(tmp_path / "huge.pt", dumps({"w": huge}), {"0": b"\0" * 16})
    start = time.perf_counter()
    refused(
        path,
        r"declares more than 1048576 bytes of tensor storage \(storage '0' alone "
        r"declares 4000000000000\)",
        max_bytes=MB,
    )
    assert time.perf_counter() - start < 1.0


def test_storage_budget_counts_shared_storages_once(tmp_path):
    s = _Storage(torch.FloatStorage, "0", 1000)
    obj = {f"v{i}": _Tensor(s, (1000,)) for i in range(50)}
    path = write_pt(tmp_path / "shared.pt", dumps(obj), {"0": b"\0" * 4000})
    scan_torch_file(path, max_bytes=MB, max_storage_bytes=4000)


def test_storage_member_size_must_match(tmp_path):
    w = _Tensor(_Storage(torch.FloatStorage, "0", 12), (12,))
    path = write_pt(tmp_path / "mm.pt", dumps({"w": w}), {"0": b"\0" * 40})
    refused(path, r"holds 40 bytes but data.pkl declares 48")


def test_missing_and_unreferenced_storage_members(tmp_path):
    w = _Tensor(_Storage(torch.FloatStorage, "0", 2), (2,))
    missing = write_pt(tmp_path / "missing.pt", dumps({"w": w}), {})
    refused(missing, "has no member 'archive/data/0'")
    extra = write_pt(tmp_path / "extra.pt", dumps({"w": w}), {"0": b"\0" * 8, "9": b"x" * 100})
    refused(extra, "is not referenced by data.pkl")


def test_same_storage_declared_with_two_sizes(tmp_path):
    a = _Tensor(_Storage(torch.FloatStorage, "0", 2), (2,))
    b = _Tensor(_Storage(torch.FloatStorage, "0", 4), (4,))
    path = write_pt(tmp_path / "two.pt", dumps({"a": a, "b": b}), {"0": b"\0" * 8})
    refused(path, "once as 8 and once as 16 bytes")


def test_unknown_storage_class_and_foreign_persistent_ids(tmp_path):
    bad = _Tensor(_Storage(os.system, "0", 2), (2,))  # type: ignore[arg-type]
    path = write_pt(tmp_path / "cls.pt", dumps({"w": bad}), {"0": b"\0" * 2})
    refused(path, "unknown class")

    class P(pickle.Pickler):
        def persistent_id(self, obj):  # type: ignore[no-untyped-def]
            return ("module", "os") if obj == "x" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"k": "x"})
    path = write_pt(tmp_path / "pid.pt", buf.getvalue())
    refused(path, "persistent id that is not")
    path = write_pt(tmp_path / "persid.pt", b"(Pfoo\nt.")
    refused(path, "persistent id that is not")


def test_element_sizes_match_torch():
    for dtype, name in torch.storage._dtype_to_storage_type_map().items():
        assert ptscan.ELEMENT_SIZES[name] == torch._utils._element_size(dtype), name
    assert len(ptscan.ELEMENT_SIZES) == len(torch.storage._dtype_to_storage_type_map())


def test_every_pickle_opcode_is_handled():
    assert pickle_layer.HANDLED_OPCODES == {op.name for op in pickletools.opcodes}


# ---------------------------------------------------------------- limits and files


def test_budget_limits(tmp_path):
    path = small_state(tmp_path / "s.pt")
    refused(path, r"more than 10 pickle opcodes", max_opcodes=10)
    refused(path, r"data.pkl declares \d+ bytes \(limit 100\)", max_pickle_bytes=100)
    refused(path, r"the file is \d+ bytes \(limit 100\)", max_bytes=100)
    refused(path, r"bytes of tensor storage", max_storage_bytes=30)
    with pytest.raises(ValueError, match="max_depth"):
        scan_torch_file(path, max_bytes=MB, max_depth=10**6)


def test_malformed_pickles_are_clean_errors(tmp_path):
    for i, pkl in enumerate([b"", b"\x80\x02}", b"\x80\x02h\x05.", b"\x80\x02t.", b"\xff."]):
        path = write_pt(tmp_path / f"bad{i}.pt", pkl)
        refused(path, "data.pkl is (malformed|not a valid pickle)")


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    result: list[BaseException] = []
    thread = threading.Thread(target=lambda: result.append(_catch(fifo)), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "scanning a FIFO blocked"
    assert isinstance(result[0], CheckpointError) and "not a regular file" in str(result[0])


def _catch(path: Path) -> BaseException:
    try:
        scan_torch_file(path, max_bytes=MB)
    except BaseException as err:  # noqa: BLE001
        return err
    raise AssertionError("no error")


def test_devices_directories_and_missing_files(tmp_path):
    refused(Path("/dev/zero"), "not a regular file")
    refused(tmp_path, "not a regular file")
    refused(tmp_path / "nope.pt", "cannot be examined")


def test_long_hostile_path_is_truncated_in_the_message(tmp_path):
    name = "\u202e" + "a" * 200 + ".pt"
    path = tmp_path / name
    path.write_bytes(b"junk")
    with pytest.raises(CheckpointError) as info:
        scan_torch_file(path, max_bytes=MB)
    assert "\u202e" not in str(info.value) and len(str(info.value)) < 400


# ---------------------------------------------------------------- robustness: fuzzing


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    return small_state(tmp_path_factory.mktemp("g") / "g.pt").read_bytes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)
)
def test_corrupted_files_never_raise_anything_else(tmp_path, good_bytes, edits):
    data = bytearray(good_bytes)
    for pos, value in edits:
        data[pos % len(data)] = value
    path = tmp_path / "fuzz.pt"
    path.write_bytes(bytes(data))
    try:
        scan_torch_file(path, max_bytes=MB)
    except CheckpointError:
        pass


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pkl=st.binary(max_size=60), keep=st.integers(0, 200))
def test_random_pickles_never_raise_anything_else(tmp_path, pkl, keep):
    w = _Tensor(_Storage(torch.FloatStorage, "0", 2), (2,))
    good = dumps({"w": w, "l": [1, (2, "x")], "d": {"a": None}})
    body = good[: keep % len(good)] + pkl
    path = write_pt(tmp_path / "fz.pt", body, {"0": b"\0" * 8})
    try:
        scan_torch_file(path, max_bytes=MB)
    except CheckpointError:
        pass


# ---------------------------------------------------------------- cost


def test_scanning_100mb_state_dict_is_cheap(tmp_path):
    state = {
        f"layer{i}.weight": torch.full((256, 1024), float(i)) for i in range(100)
    }  # 1 MiB each
    path = tmp_path / "big.pt"
    torch.save(state, path)
    del state
    size = path.stat().st_size
    start = time.perf_counter()
    stats = scan_torch_file_stats(path, max_bytes=2 * size)
    scan_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    torch.load(path, weights_only=True)
    load_ms = (time.perf_counter() - start) * 1000
    print(
        f"\nscan of {size / MB:.1f} MiB torch.save file ({len(stats.storages)} tensors, "
        f"{stats.opcodes} opcodes): {scan_ms:.1f} ms; torch.load: {load_ms:.1f} ms"
    )
    assert stats.storage_bytes == 100 * MB
    assert scan_ms < 1000


def test_scanning_many_small_tensors_costs_about_a_torch_load(tmp_path):
    state = {f"t{i}": torch.zeros(4) for i in range(5000)}
    path = tmp_path / "many.pt"
    torch.save(state, path)
    start = time.perf_counter()
    stats = scan_torch_file_stats(path, max_bytes=64 * MB)
    scan_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    torch.load(path, weights_only=True)
    load_ms = (time.perf_counter() - start) * 1000
    print(
        f"\nscan of 5000-tensor torch.save file ({stats.opcodes} opcodes, "
        f"{stats.opcodes / scan_ms * 1000:,.0f} opcodes/s): {scan_ms:.1f} ms; "
        f"torch.load: {load_ms:.1f} ms"
    )
    assert len(stats.storages) == 5000
