"""Fuzzed checkpoints, safetensors headers and .pt files: every reader returns or raises a ModelFactoryError.

Random mutations (bytes flipped, cut, inserted, header numbers rewritten) of
valid files go to every public reader; anything but a clean ModelFactoryError
(a traceback, a crash) fails. 300 examples per file kind run in CI.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelfactory as mf
from modelfactory.io.safetensors_file import read_header

EXAMPLES = int(os.environ.get("MF_FILE_FUZZ_EXAMPLES", "300"))
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SPEC = {
    "input": {"shape": [2, 4]},
    "network": [
        {"type": "Linear", "in_features": 4, "out_features": 3},
        "ReLU",
        {"type": "BatchNorm1d", "num_features": 3},
    ],
}


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("originals")
    model = mf.build(SPEC, seed=1)
    checkpoint = mf.save(model, directory / "m.safetensors")
    tensors = mf.save_tensors(
        {"a": torch.arange(6.0), "b": torch.ones(2, 2)}, directory / "t.safetensors"
    )
    pt = mf.save_state_dict(model, directory / "m.pt")
    return {
        name: path.read_bytes()
        for name, path in [("ckpt", checkpoint), ("tensors", tensors), ("pt", pt)]
    }


@st.composite
def mutation(draw, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "header-length", "header-text"]))
        if not data:
            break
        if kind == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "header-length" and len(data) >= 8:
            data[:8] = struct.pack(
                "<Q", draw(st.sampled_from([0, 1, 7, 2**31, 2**63 - 1, len(data)]))
            )
        elif kind == "header-text" and len(data) > 16:
            end = min(len(data), 8 + struct.unpack("<Q", bytes(data[:8]))[0])
            i = draw(st.integers(8, max(8, end - 1)))
            data[i : i + 1] = draw(st.sampled_from([b"[", b"{", b"9" * 30, b'"', b"-1", b"1e999"]))
    return bytes(data)


def _readers(kind: str):
    model = mf.build(SPEC)
    if kind == "pt":
        return [mf.load_state_dict, mf.load_tensors, lambda p: mf.load_weights(model, p)]
    return [
        mf.load,
        read_header,
        mf.load_tensors,
        lambda p: mf.load_weights(model, p),
        lambda p: mf.load(p, strict=False),
    ]


def _feed(tmp_path: Path, kind: str, data: bytes) -> None:
    path = tmp_path / ("x.pt" if kind == "pt" else "x.safetensors")
    path.write_bytes(data)
    for read in _readers(kind):
        try:
            read(path)
        except mf.ModelFactoryError:
            pass


@pytest.mark.parametrize("kind", ["ckpt", "tensors", "pt"])
def test_mutated_files_give_a_result_or_a_clean_error(kind, originals, tmp_path):
    @PROFILE
    @given(data=mutation(originals[kind]))
    def run(data):
        _feed(tmp_path, kind, data)

    run()
