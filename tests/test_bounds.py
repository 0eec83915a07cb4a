"""Bounded work for hostile inputs: each case ends in a clean ModelFactoryError within 1 GB and 30 s.

Every case runs in its own process, limited to 1 GB of address space above
what ``import torch, modelfactory`` takes and to 30 s of CPU, so a case that
allocates or loops is a failed test, not a stalled suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PRELUDE = """
import os, resource, sys
import torch, modelfactory as mf
def _vm():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
base = _vm()
resource.setrlimit(resource.RLIMIT_AS, (base + 2**30, base + 2**30))
resource.setrlimit(resource.RLIMIT_CPU, (30, 30))
def expect(fn, *args, match, **kwargs):
    try:
        fn(*args, **kwargs)
    except mf.ModelFactoryError as err:
        assert match in str(err), str(err)[:2000]
        assert len(str(err)) <= 60_000, len(str(err))
        print("refused:", str(err)[:300].replace("\\n", " | "))
    else:
        raise SystemExit("not refused")
"""


def run_bounded(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = PRELUDE + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    assert "Traceback" not in done.stderr
    return done


CASES = {
    "upsample-scale": """
        spec = {"input": {"shape": [1, 3, 32, 32]},
                "network": [{"type": "Upsample", "scale_factor": 11585}]}
        expect(mf.check, spec, match="over the budget")
    """,
    "zero-pad": """
        spec = {"input": {"shape": [1, 3, 8, 8]},
                "network": [{"type": "ZeroPad2d", "padding": 100000}]}
        expect(mf.check, spec, match="over the budget")
    """,
    "cutoffs": """
        spec = {"input": {"shape": [2, 8]},
                "network": {"type": "AdaptiveLogSoftmaxWithLoss", "in_features": 8,
                            "n_classes": 1000001, "cutoffs": list(range(1, 900001))}}
        expect(mf.validate, spec, match="modules")
    """,
    "repeat-decoder-layers": """
        spec = {"input": {"shape": [2, 4, 8]},
                "network": {"repeat": 99999,
                            "body": {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2}}}
        expect(mf.check, spec, match="modules")
    """,
    "huge-input": """
        spec = {"input": {"shape": [700000000], "dtype": "float64"}, "network": ["ReLU"]}
        from modelfactory.builder.forward import make_input
        checked = mf.check(spec)  # shapes only: nothing is drawn or allocated
        expect(make_input, checked.spec.input, seed=0, match="could not allocate the declared input")
    """,
    "fifo-model-file": """
        os.mkfifo("model.yaml")
        expect(mf.build, "model.yaml", match="not a regular file")
    """,
    "dev-zero-model-file": """
        expect(mf.build, "/dev/zero", match="not a regular file")
    """,
    "undefined-names": """
        names = [f"value_with_a_rather_long_similar_name_{i:06d}" for i in range(20000)]
        forward = [{"op": "relu", "in": ["x"], "out": names[0]}]
        forward += [{"op": "relu", "in": ["y" + n], "out": names[i + 1]}
                    for i, n in enumerate(names[:-1])]
        spec = {"input": {"shape": [2]}, "network": {"name": "G", "forward": forward}}
        expect(mf.validate, spec, match="more problem(s)")
    """,
    "deep-glob": """
        spec = {"input": {"shape": [2, 4]},
                "network": [{"type": "Linear", "in_features": 4, "out_features": 4}]}
        mf.build(spec, init=[{"module": ".".join(["**"] * 3000) + ".0", "scheme": "zeros"}])
    """,
    "deep-checkpoint-json": """
        from modelfactory.io.safetensors_file import write_safetensors
        meta = {"modelfactory.format": "1", "modelfactory.spec": "[" * 100000 + "]" * 100000}
        write_safetensors("m.safetensors", {"w": torch.zeros(1)}, meta)
        expect(mf.load, "m.safetensors", match="not valid JSON")
    """,
}


@pytest.mark.parametrize("code", list(CASES.values()), ids=list(CASES))
def test_hostile_input_is_refused_within_bounds(code, tmp_path):
    run_bounded(code, tmp_path)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


# ---------------------------------------------------------------- refusals in the same process
def test_fill_and_dtype_combinations_are_validated():
    import modelfactory as mf

    def refused(data, match):
        with pytest.raises(mf.ModelFactoryError, match=match):
            mf.validate(data)

    refused(
        {"input": {"shape": [2], "dist": "randn", "dtype": "bool"}, "network": ["ReLU"]},
        "dist 'randn' draws floating-point values",
    )
    refused(
        {"input": {"shape": [2], "dist": "randint", "high": 2**70}, "network": ["ReLU"]},
        "beyond what dtype 'int64' holds",
    )
    constant = {"name": "C", "forward": [{"op": "add", "in": ["x", "c"]}]}
    refused(
        {
            "input": {"shape": [2]},
            "network": {**constant, "constants": {"c": {"shape": [0, 2**70]}}},
        },
        "less than or equal to",
    )
    refused(
        {
            "input": {"shape": [2]},
            "network": {
                **constant,
                "constants": {"c": {"shape": [2], "fill": "randn", "dtype": "int64"}},
            },
        },
        "fill 'randn' draws floating-point values",
    )


def test_a_yaml_merge_key_is_refused(tmp_path):
    import modelfactory as mf

    path = tmp_path / "merge.yaml"
    path.write_text(
        "input: {shape: [2, 4]}\n"
        "base: &b {type: Linear, in_features: 4, out_features: 4}\n"
        "network:\n  - {<<: *b, out_features: 8}\n"
    )
    with pytest.raises(mf.ModelFactoryError, match=r"merge key \('<<'\) is not allowed"):
        mf.validate(path)


def test_a_checkpoint_spec_with_an_interpolation_is_refused(tmp_path):
    import json

    import torch

    import modelfactory as mf
    from modelfactory.io.checkpoint import META_PREFIX, fingerprint
    from modelfactory.io.safetensors_file import write_safetensors

    model = mf.build(
        {
            "input": {"shape": [2, 4]},
            "network": [{"type": "Linear", "in_features": 4, "out_features": 4}],
        }
    )
    path = mf.save(model, tmp_path / "m.safetensors")
    meta = mf.io.checkpoint.read_metadata(path)
    spec = json.loads(meta[META_PREFIX + "spec"])
    spec["name"] = "${oc.env:HOME}"
    meta[META_PREFIX + "spec"] = json.dumps(spec)
    meta[META_PREFIX + "fingerprint"] = fingerprint(mf.validate({**spec, "name": "x"}))
    state = {k: v for k, v in model.state_dict().items()}
    write_safetensors(tmp_path / "evil.safetensors", state, meta)
    with pytest.raises(
        mf.CheckpointError, match="interpolation '\\$\\{oc.env:HOME\\}' is not allowed"
    ):
        mf.load(tmp_path / "evil.safetensors")
    del torch


def test_run_py_with_a_non_integer_seed_is_a_clean_error(tmp_path):
    from test_app import run_app

    proc = run_app("seed=abc", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "seed: must be a non-negative integer, found 'abc'" in proc.stderr
