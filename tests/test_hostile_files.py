"""Hostile and broken files: each a clear CheckpointError; nothing executed, nothing absurd allocated.

The corpus is built here, in tmp_path, from a good checkpoint.
"""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

import modelfactory as mf
from modelfactory.cli import main
from modelfactory.io.checkpoint import META_PREFIX, read_metadata

MLP = {
    "input": {"shape": [2, 4]},
    "network": [{"type": "Linear", "in_features": 4, "out_features": 3}],
}


@pytest.fixture
def good(tmp_path):
    return mf.save(mf.build(MLP), tmp_path / "good.safetensors")


def corrupt(good, name, edit):
    data = bytearray(good.read_bytes())
    path = good.with_name(name)
    path.write_bytes(bytes(edit(data)))
    return path


def header_length(data: bytes) -> int:
    return struct.unpack("<Q", bytes(data[:8]))[0]


CASES = [
    pytest.param(
        lambda d: d[: len(d) - 10],
        "file not fully covered",
        id="truncated-data",
    ),
    pytest.param(
        lambda d: d[:100], "the header claims .* bytes but the file has", id="truncated-header"
    ),
    pytest.param(lambda d: d[:5], "too short for a header", id="truncated-length"),
    pytest.param(
        lambda d: d[:8] + b"\xff" * 16 + d[24:], "invalid UTF-8 in header", id="corrupt-utf8"
    ),
    pytest.param(lambda d: d[:8] + b"[" + d[9:], "invalid JSON in header", id="corrupt-json"),
    pytest.param(
        lambda d: struct.pack("<Q", 2**60) + d[8:],
        "the header claims 1152921504606846976 bytes",
        id="huge-header-length",
    ),
    pytest.param(
        lambda d: d + b"\0" * 64,
        "file not fully covered",
        id="trailing",
    ),
]


def edit_header(data: bytearray, change) -> bytes:
    n = header_length(data)
    header = json.loads(bytes(data[8 : 8 + n]))
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (n - len(raw)) if len(raw) < n else b""
    return struct.pack("<Q", len(raw)) + raw + bytes(data[8 + n :])


def _huge_shape(header):
    header["0.weight"]["shape"] = [2**40, 2**40]


def _overlap(header):
    start = header["0.weight"]["data_offsets"][0]
    header["0.bias"]["data_offsets"] = [start, start + 12]  # on top of 0.weight


def _bad_dtype(header):
    header["0.bias"]["dtype"] = "PICKLE"


HEADER_CASES = [
    pytest.param(_huge_shape, r"overflow computing buffer size", id="huge-shape"),
    pytest.param(_overlap, "invalid offset for tensor `0.weight`", id="overlap"),
    pytest.param(_bad_dtype, "unknown variant `PICKLE`", id="dtype"),
]


@pytest.mark.parametrize(("edit", "match"), CASES)
def test_broken_file_is_a_clear_error(good, edit, match, capsys):
    bad = corrupt(good, "bad.safetensors", edit)
    for reader in (mf.load, mf.load_tensors, lambda p: mf.load_weights(mf.build(MLP), p)):
        with pytest.raises(mf.CheckpointError, match=match):
            reader(bad)
    assert main(["inspect", str(bad)]) == 1
    assert "is not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "match"), HEADER_CASES)
def test_lying_header_is_a_clear_error(good, change, match):
    bad = corrupt(good, "bad.safetensors", lambda d: edit_header(d, change))
    with pytest.raises(mf.CheckpointError, match=match):
        mf.load(bad)
    assert main(["inspect", str(bad)]) == 1


def test_missing_file(tmp_path):
    with pytest.raises(mf.CheckpointError, match="no checkpoint at .*does not exist"):
        mf.load(tmp_path / "nope.safetensors")


def test_metadata_spec_that_fails_validation(good):
    meta = read_metadata(good)
    spec = json.loads(meta[META_PREFIX + "spec"])
    spec["network"][0]["type"] = "Lineer"
    meta[META_PREFIX + "spec"] = json.dumps(spec)
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(good)), str(good), metadata=meta)
    with pytest.raises(mf.CheckpointError, match="stored architecture is invalid") as info:
        mf.load(good)
    assert "checkpoint.spec.network[0]" in str(info.value)
    assert "Did you mean 'Linear'?" in str(info.value)


def test_metadata_spec_that_is_not_json(good):
    meta = read_metadata(good)
    meta[META_PREFIX + "spec"] = "{'network': eval('1')}"
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(good)), str(good), metadata=meta)
    with pytest.raises(mf.CheckpointError, match="'modelfactory.spec' is not valid JSON"):
        mf.load(good)
    assert main(["inspect", str(good)]) == 1


# --- pickles ----------------------------------------------------------------------------------


class Trap:
    """Unpickling this calls builtins.open(sentinel, 'w'): it would create the sentinel file."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def pickle_files(tmp_path):
    sentinel = tmp_path / "PWNED"
    trap = Trap(str(sentinel))
    state = {"0.weight": torch.zeros(3, 4), "0.bias": trap}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(trap, protocol=2))
    return sentinel, [tmp_path / "zip.pt", tmp_path / "legacy.pt", tmp_path / "raw.pt"]


def test_the_trap_works_when_unpickled_unsafely(tmp_path):
    """The corpus is real: loading it the unsafe way does create the sentinel."""
    sentinel, files = pickle_files(tmp_path)
    torch.load(files[0], weights_only=False)
    assert sentinel.exists()


@pytest.mark.parametrize("force_unsafe_default", [False, True], ids=["default-env", "forced-env"])
def test_pt_pickle_that_would_create_a_file_executes_nothing(
    tmp_path, monkeypatch, force_unsafe_default
):
    if force_unsafe_default:  # flips torch's default only; we pass weights_only=True explicitly
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    sentinel, files = pickle_files(tmp_path)
    for path in files:
        for reader in (
            mf.load_state_dict,
            mf.load_tensors,
            lambda p: mf.load_weights(mf.build(MLP), p),
        ):
            # refused by the opcode scan (a legacy pickle) or by the weights-only unpickler
            with pytest.raises(
                mf.CheckpointError, match="could not read .* weights-only|refusing to load .*legacy"
            ):
                reader(path)
            assert not sentinel.exists()


def test_failed_pt_load_is_never_retried(tmp_path, monkeypatch):
    sentinel, files = pickle_files(tmp_path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(mf.CheckpointError, match="Unsupported global"):
        mf.load_state_dict(files[0])
    assert calls == [True]
    assert not sentinel.exists()


def test_pt_file_that_is_not_a_pytorch_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a zip nor a pickle")
    with pytest.raises(mf.CheckpointError, match="junk.pt' .*it does not start with a zip header"):
        mf.load_state_dict(tmp_path / "junk.pt")
