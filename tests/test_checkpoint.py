"""Checkpoints: self-describing metadata, exact reload, ties, explicit mismatches, atomic writes."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest
import torch
from conftest import ZOO
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import modelfactory as mf
from modelfactory.builder.forward import make_input
from modelfactory.errors import LimitError
from modelfactory.io.checkpoint import META_PREFIX, fingerprint, read_metadata
from modelfactory.sharing import tensor_groups

MLP = {
    "input": {"shape": [2, 4]},
    "network": [
        {"type": "Linear", "in_features": 4, "out_features": 8},
        "ReLU",
        {"type": "Linear", "in_features": 8, "out_features": 3},
    ],
}


def rewrite(path, *, tensors=None, metadata=None):
    """Rewrite a checkpoint with some tensors or metadata replaced (as an editor or attacker would)."""
    with safe_open(str(path), framework="pt") as handle:
        old_meta = dict(handle.metadata())
    save_file(
        load_file(str(path)) if tensors is None else tensors,
        str(path),
        metadata=old_meta if metadata is None else metadata,
    )


# --- metadata -------------------------------------------------------------------------------


def test_metadata_describes_the_model(zoo_path, tmp_path):
    model = mf.build(zoo_path("shared"), seed=7)
    path = mf.save(model, tmp_path / "m.safetensors")
    meta = read_metadata(path)
    spec = mf.validate(zoo_path("shared"))
    assert json.loads(meta[META_PREFIX + "spec"]) == spec.model_dump(mode="json")
    assert meta[META_PREFIX + "fingerprint"] == fingerprint(spec)
    assert json.loads(meta[META_PREFIX + "ties"]) == [
        ["2.bias", "4.bias"],
        ["2.weight", "4.weight"],
    ]
    assert meta[META_PREFIX + "seed"] == "7"
    assert meta[META_PREFIX + "device"] == "cpu"
    assert meta[META_PREFIX + "format"] == "1"
    assert json.loads(meta[META_PREFIX + "versions"])["torch"] == torch.__version__
    # shared tensors are stored once
    with safe_open(str(path), framework="pt") as handle:
        assert "2.weight" in handle.keys() and "4.weight" not in handle.keys()


def test_init_rules_are_stored_when_present(tmp_path):
    rules = [{"module": "0", "param": "weight", "scheme": "zeros"}]
    model = mf.build(MLP, init=rules)
    meta = read_metadata(mf.save(model, tmp_path / "m.safetensors"))
    # the rules the build applied, with where each was written
    assert json.loads(meta[META_PREFIX + "init"]) == [
        {"path": "init.rules[0]", "module": "0", "param": "weight", "scheme": "zeros"}
    ]
    assert torch.all(mf.load(tmp_path / "m.safetensors")[0].weight == 0)


FIRST = """
# an MLP
input: {shape: [2, 4]}
name: first
network:
  - {type: Linear, in_features: 4, out_features: 8}
  - ReLU
"""
SAME_REORDERED = """
name: second            # labels are not architecture
network:
  - {out_features: 8, in_features: 4, type: Linear}   # keys in another order
  - {type: ReLU}
input:
  shape: [2, 4]
"""
DIFFERENT = FIRST.replace("out_features: 8", "out_features: 9")


def test_fingerprint_ignores_key_order_comments_and_labels(tmp_path):
    texts = {"a": FIRST, "b": SAME_REORDERED, "c": DIFFERENT}
    prints = {}
    for key, text in texts.items():
        (tmp_path / f"{key}.yaml").write_text(text)
        prints[key] = fingerprint(mf.validate(tmp_path / f"{key}.yaml"))
    assert prints["a"] == prints["b"]
    assert prints["a"] != prints["c"]


def test_save_refuses_a_model_not_built_by_modelfactory(tmp_path):
    with pytest.raises(mf.CheckpointError, match="was not built by modelfactory.build"):
        mf.save(torch.nn.Linear(2, 2), tmp_path / "m.safetensors")


# --- exact reload -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ZOO if n != "big_mlp"])
def test_zoo_model_reloads_bitwise_identical(name, zoo_path, tmp_path):
    model = mf.build(zoo_path(name), seed=11).eval()
    path = mf.save(model, tmp_path / f"{name}.safetensors")
    reloaded = mf.load(path).eval()
    assert type(reloaded) is type(model)
    for (key, a), (key2, b) in zip(
        model.state_dict().items(), reloaded.state_dict().items(), strict=True
    ):
        assert key == key2 and torch.equal(a, b), key
    assert sorted(map(sorted, tensor_groups(reloaded))) == sorted(map(sorted, tensor_groups(model)))
    spec = mf.validate(zoo_path(name))
    x = make_input(spec.input, seed=5)
    with torch.no_grad():
        out, again = model(x), reloaded(x)
    outs, agains = (out, again) if isinstance(out, tuple) else ((out,), (again,))
    for a, b in zip(outs, agains, strict=True):
        assert torch.equal(a, b)


def test_reload_is_not_just_a_rebuild_from_the_seed(zoo_path, tmp_path):
    model = mf.build(zoo_path("mlp"), seed=0)
    with torch.no_grad():
        model[0].weight.add_(1.0)  # trained weights differ from the seed's
    reloaded = mf.load(mf.save(model, tmp_path / "m.safetensors"))
    assert torch.equal(reloaded[0].weight, model[0].weight)


def test_shared_module_stays_one_object_after_load(zoo_path, tmp_path):
    reloaded = mf.load(mf.save(mf.build(zoo_path("shared")), tmp_path / "m.safetensors"))
    assert reloaded[2] is reloaded[4]


def test_load_rejects_a_tie_map_the_rebuilt_model_does_not_have(zoo_path, tmp_path):
    path = mf.save(mf.build(zoo_path("shared")), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    meta[META_PREFIX + "ties"] = json.dumps([["2.weight", "4.weight"]])
    rewrite(path, metadata=meta)
    with pytest.raises(mf.CheckpointError, match=r"rebuilt model ties .* checkpoint records ties"):
        mf.load(path)


def test_load_rejects_a_fingerprint_that_does_not_match_the_architecture(tmp_path):
    path = mf.save(mf.build(MLP), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    meta[META_PREFIX + "fingerprint"] = "sha256:" + "0" * 64
    rewrite(path, metadata=meta)
    with pytest.raises(mf.CheckpointError, match="fingerprint .* does not match"):
        mf.load(path)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        pytest.param("format", "99", "checkpoint format '99'", id="format"),
        pytest.param("seed", "-1", "seed' must be a non-negative integer", id="seed"),
        pytest.param("ties", "{not json", "'modelfactory.ties' is not valid JSON", id="ties-json"),
        pytest.param("ties", '{"a": 1}', "must be a list of lists of names", id="ties-shape"),
    ],
)
def test_load_rejects_bad_metadata_values(key, value, match, tmp_path):
    path = mf.save(mf.build(MLP), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    meta[META_PREFIX + key] = value
    rewrite(path, metadata=meta)
    with pytest.raises(mf.CheckpointError, match=match):
        mf.load(path)


def test_load_of_a_plain_safetensors_file_says_what_to_do(tmp_path):
    mf.save_tensors({"w": torch.ones(2)}, tmp_path / "t.safetensors")
    with pytest.raises(mf.CheckpointError, match="no modelfactory architecture.*load_weights"):
        mf.load(tmp_path / "t.safetensors")


# --- mismatches -------------------------------------------------------------------------------


@pytest.fixture
def tampered(tmp_path):
    """A checkpoint of MLP with 2.bias removed, an extra tensor and 0.weight of another shape."""
    path = mf.save(mf.build(MLP), tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    del tensors["2.bias"]
    tensors["extra.weight"] = torch.zeros(3)
    tensors["0.weight"] = torch.zeros(8, 5)
    rewrite(path, tensors=tensors)
    return path


def test_strict_load_lists_missing_unexpected_and_shape_mismatches(tampered):
    with pytest.raises(mf.CheckpointError, match="3 problem") as info:
        mf.load(tampered)
    problems = {p.path: p.message for p in info.value.problems}
    assert problems == {
        "2.bias": "missing from the checkpoint",
        "extra.weight": "unexpected key in the checkpoint (not in the model)",
        "0.weight": "shape mismatch: checkpoint [8, 5], model [8, 4]",
    }
    assert "nothing was loaded" in str(info.value)


def test_strict_load_weights_loads_nothing_on_mismatch(tampered):
    model = mf.build(MLP, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(mf.CheckpointError, match=r"2\.bias: missing from the checkpoint"):
        mf.load_weights(model, tampered)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dtype_mismatch_is_reported_not_cast(tmp_path):
    path = mf.save(mf.build(MLP), tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    tensors["0.bias"] = tensors["0.bias"].double()
    rewrite(path, tensors=tensors)
    with pytest.raises(mf.CheckpointError, match="0.bias: dtype mismatch: checkpoint float64"):
        mf.load(path)


def test_non_strict_load_is_opt_in_and_reports_what_it_skipped(tampered, caplog):
    with caplog.at_level(logging.WARNING, logger="modelfactory"):
        model = mf.load(tampered, strict=False)
    stored = load_file(str(tampered))
    assert torch.equal(model[0].bias, stored["0.bias"])  # the matching tensors are loaded
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for fragment in ("2.bias: missing", "extra.weight: unexpected", "0.weight: shape mismatch"):
        assert fragment in warned
    skipped = mf.load_weights(mf.build(MLP), tampered, strict=False)
    assert len(skipped) == 3 and any(s.startswith("0.weight: shape mismatch") for s in skipped)


def test_tied_names_holding_different_values_are_a_mismatch(zoo_path, tmp_path):
    model = mf.build(zoo_path("shared"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["4.weight"] += 1
    torch.save(state, tmp_path / "s.pt")
    with pytest.raises(mf.CheckpointError, match="2.weight: the model ties it to 4.weight"):
        mf.load_weights(model, tmp_path / "s.pt")


@pytest.mark.parametrize(
    ("width", "error", "match"),
    [
        pytest.param(1_000_000, LimitError, r"over the parameter budget", id="over-budget"),
        pytest.param(
            2_000,
            mf.CheckpointError,
            r"0.weight: shape mismatch: checkpoint \[8, 4\]",
            id="mismatch",
        ),
    ],
)
def test_huge_architecture_is_refused_before_it_is_allocated(tmp_path, width, error, match):
    """A spec claiming far more weights than the file holds fails on meta, before allocating."""
    path = mf.save(mf.build(MLP), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    spec = json.loads(meta[META_PREFIX + "spec"])
    spec["network"][0]["out_features"] = width
    spec["network"][0]["in_features"] = width
    spec["input"]["shape"] = [2, width]
    spec["network"][2]["in_features"] = width
    meta[META_PREFIX + "spec"] = json.dumps(spec)
    meta[META_PREFIX + "fingerprint"] = fingerprint(mf.validate(spec))
    rewrite(path, metadata=meta)
    with pytest.raises(error, match=match):
        mf.load(path)


# --- atomic writes ----------------------------------------------------------------------------


def test_save_keeps_the_target_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    mf.save(mf.build(MLP), path)
    os.chmod(path, 0o640)
    mf.save(mf.build(MLP, seed=1), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    mf.save_tensors(torch.ones(1), tmp_path / "t.safetensors")
    os.chmod(tmp_path / "t.safetensors", 0o604)
    mf.save_tensors(torch.ones(2), tmp_path / "t.safetensors")
    assert stat.S_IMODE((tmp_path / "t.safetensors").stat().st_mode) == 0o604


def test_new_file_gets_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = mf.save(mf.build(MLP), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_overwriting_the_file_a_model_was_loaded_from(zoo_path, tmp_path):
    path = mf.save(mf.build(zoo_path("shared"), seed=1), tmp_path / "m.safetensors")
    model = mf.load(path)
    with safe_open(str(path), framework="pt") as handle:  # a reader still has the file mapped
        with torch.no_grad():
            model[0].weight.add_(1)
        mf.save(model, path)
        old = handle.get_tensor("0.weight")
    assert torch.equal(mf.load(path)[0].weight, model[0].weight)
    assert torch.equal(old + 1, model[0].weight)
    tensors = mf.load_tensors(path)
    mf.save_tensors({k: v * 2 for k, v in tensors.items()}, path)
    assert torch.equal(mf.load_tensors(path)["0.weight"], tensors["0.weight"] * 2)


def test_failing_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = mf.save(mf.build(MLP, seed=1), tmp_path / "m.safetensors")
    before = path.read_bytes()

    def half_write_then_fail(filename, tensors, metadata=None, **options):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("modelfactory.io.checkpoint.write_safetensors", half_write_then_fail)
    with pytest.raises(mf.CheckpointError, match="could not write .*No space left on device"):
        mf.save(mf.build(MLP, seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left
    mf.load(path)


def test_corrupted_tensor_data_is_refused_by_load_and_resume(tmp_path):
    """Every tensor byte inverted, header intact: a clear error, not garbage weights."""
    from modelfactory.app.summary import incomplete_reason
    from modelfactory.io.checkpoint import verify_checksum

    model = mf.build(MLP, seed=4)
    path = mf.save(model, tmp_path / "model.safetensors")
    assert mf.load(path) is not None
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok", "config_sha256": "c"}))
    assert incomplete_reason(tmp_path, "c") is None  # a complete job, before the damage
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start:] = bytes(b ^ 0xFF for b in data[start:])
    path.write_bytes(bytes(data))
    with pytest.raises(
        mf.CheckpointError, match=r"the data of 4 tensor\(s\) .* does not match the checksum"
    ):
        mf.load(path)
    with pytest.raises(mf.CheckpointError, match="the file is corrupted"):
        verify_checksum(path)
    assert "the file is corrupted" in incomplete_reason(tmp_path, "c")  # resume reruns it
    loaded = mf.load(path, verify=False)  # the documented switch: loads, unverified
    assert not torch.equal(loaded[0].weight, model[0].weight)
