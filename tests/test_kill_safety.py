"""Crash safety: a saver killed with SIGKILL at random moments never leaves a broken checkpoint.

Children are forked from a forkserver that has already imported modelfactory
(and torch), so each of the trials costs a fork and a build, not an import.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time

import pytest
import torch

import modelfactory as mf

TRIALS = 24
# 2 x Linear(2048, 2048): 33.6 MB of float32 per checkpoint.
SPEC = {
    "input": {"shape": [1, 2048]},
    "network": [
        {"type": "Linear", "in_features": 2048, "out_features": 2048},
        "ReLU",
        {"type": "Linear", "in_features": 2048, "out_features": 2048},
    ],
}


def save_forever(path: str, start: int, done) -> None:
    """Save version start+1, start+2, ... (every tensor filled with the version); report each."""
    model = mf.build(SPEC)
    version = start
    while True:
        version += 1
        with torch.no_grad():
            for tensor in model.state_dict().values():
                tensor.fill_(version)
        mf.save(model, path)
        done.value = version  # only after save returned: this version is complete on disk


def stored_version(path) -> int:
    """The one version every tensor of a loadable checkpoint holds."""
    model = mf.load(path)
    values = {float(v.flatten()[0]) for v in model.state_dict().values()}
    values |= {float(v.flatten()[-1]) for v in model.state_dict().values()}
    assert len(values) == 1, f"checkpoint mixes versions {values}"
    return int(values.pop())


@pytest.mark.slow
def test_sigkill_during_repeated_saves_leaves_old_or_new_checkpoint(tmp_path):
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["modelfactory"])
    path = tmp_path / "model.safetensors"
    rng = random.Random(20240605)
    version = 0
    mid_save_kills = 0
    for trial in range(TRIALS):
        done = ctx.Value("q", version, lock=False)
        child = ctx.Process(target=save_forever, args=(str(path), version, done), daemon=True)
        child.start()
        deadline = time.monotonic() + 60
        while done.value <= version:  # wait for a first complete save of this child
            assert child.is_alive() and time.monotonic() < deadline, "saver did not start"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))  # a random moment: mid-write, mid-fsync, mid-rename...
        child.kill()
        child.join()
        assert child.exitcode == -9
        last_reported = done.value
        on_disk = stored_version(path)
        # old (last reported) or new (completed, killed before it could report)
        assert on_disk in (last_reported, last_reported + 1), (trial, on_disk, last_reported)
        mid_save_kills += any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        for leftover in tmp_path.glob(".mf-*.tmp"):
            leftover.unlink()  # the killed write's temp file; never the target
        version = on_disk
    print(f"{TRIALS} kills, {mid_save_kills} while a temp file existed (mid-save)")
    assert mid_save_kills >= 1, "no kill landed during a save: the test did not test anything"
