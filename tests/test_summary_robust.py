"""The sweep summary survives whatever a job directory holds, lists the bad jobs, and escapes strings."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_sweep import PNG_MAGIC, fake_job, read_csv

from modelfactory.app.plots import _panels, legend_labels
from modelfactory.app.summary import collect_jobs, incomplete_reason, write_summary
from modelfactory.cli import main


def _deep(job: Path) -> None:
    (job / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)


def _deep_object(job: Path) -> None:
    (job / "metrics.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)


def _directory(job: Path) -> None:
    (job / "metrics.json").unlink()
    (job / "metrics.json").mkdir()


def _fifo(job: Path) -> None:
    (job / "metrics.json").unlink()
    os.mkfifo(job / "metrics.json")  # reading it would block forever


def _dangling(job: Path) -> None:
    (job / "metrics.json").unlink()
    os.symlink(job / "nowhere", job / "metrics.json")


def _binary(job: Path) -> None:
    (job / "metrics.json").write_bytes(b"\x00\xff\xfe" * 1000)


def _list(job: Path) -> None:
    (job / "metrics.json").write_text("[1, 2, 3]")


def _patch(**fields):
    def damage(job: Path) -> None:
        data = json.loads((job / "metrics.json").read_text())
        data.update(fields)
        (job / "metrics.json").write_text(json.dumps(data))

    return damage


DAMAGE = {
    "nested 100,000 deep": (_deep, "nests arrays/objects 100000 deep"),
    "nested objects": (_deep_object, "nests arrays/objects 100000 deep"),
    "a directory": (_directory, "is a directory"),
    "a FIFO": (_fifo, "FIFO"),
    "a dangling link": (_dangling, "metrics.json is unreadable"),
    "binary": (_binary, "not UTF-8"),
    "a list": (_list, "not a JSON object"),
    "status a list": (_patch(status=["ok"]), "'status' is a list"),
    "status unknown": (_patch(status="great"), "'status' is 'great'"),
    "output a string": (_patch(output="big"), "'output' is a string"),
    "shape of strings": (_patch(output={"shape": ["2", "x"]}), "'output.shape' is a list"),
    "mean a string": (_patch(output={"shape": [2], "mean": "=1+1"}), "'output.mean' is a string"),
    "parameters a list": (_patch(parameters=[15]), "'parameters' is a list"),
    "parameters of floats": (_patch(parameters={"unique": 1.5}), "'parameters.unique' is a number"),
    "timings strings": (_patch(timings={"build_s": "fast"}), "'timings.build_s' is a string"),
    "activations an object": (_patch(activations={"0": 1}), "'activations' is an object"),
    "activation std a string": (
        _patch(activations=[{"module": "0", "std": "x"}]),
        "activations[0].std",
    ),
    "activation not an object": (_patch(activations=[7]), "'activations[0]' is a number"),
    "weights names numbers": (_patch(weights=[{"name": 3, "std": 1.0}]), "'weights[0].name'"),
    "model a number": (_patch(model=5), "'model' is a number"),
    "error an object": (_patch(status="failed", error={"x": 1}), "'error' is an object"),
    "huge integer": (
        lambda j: (j / "metrics.json").write_text('{"x": ' + "9" * 5000 + "}"),
        "digits",
    ),
    "NaN": (lambda j: (j / "metrics.json").write_text('{"output": {"mean": NaN}}'), "NaN"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_bad_job_is_listed_and_the_summary_still_written(tmp_path, kind, capsys):
    damage, reason = DAMAGE[kind]
    fake_job(tmp_path / "0")
    damage(fake_job(tmp_path / "1"))
    fake_job(tmp_path / "2")
    assert main(["summarize", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "3 jobs, 2 ok, 1 failed" in out
    rows = read_csv(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert reason in rows[1]["error"], rows[1]["error"]
    assert "failed: 1 (seed=1): " in out
    for name in ("summary.md", "activations.png", "weights.png"):
        assert (tmp_path / name).is_file()
    assert incomplete_reason(tmp_path / "1", "sha256:x") is not None  # and resume reruns it


def test_hostile_overrides_yaml_is_ignored(tmp_path):
    job = fake_job(tmp_path / "0", overrides=None)
    (job / ".hydra" / "overrides.yaml").write_text("[" * 50_000)
    (job2 := tmp_path / "1" / ".hydra").mkdir(parents=True)
    (job2 / "overrides.yaml").write_text("!!python/object/apply:os.system ['echo hi']")
    jobs = collect_jobs(tmp_path)
    assert [j.overrides for j in jobs] == [[], []]
    write_summary(tmp_path)


def test_every_string_from_a_job_is_escaped_in_the_csv_markdown_and_report(tmp_path):
    evil = '=HYPERLINK("http://x")\x1b[2J\u202e$x$_'
    fake_job(
        tmp_path / "0",
        overrides=["+seed=@SUM(1)", f"model={evil}"],
        model="-cmd|' /C calc'!A0",
    )
    fake_job(tmp_path / "1", status="failed", error=f"{evil}\nline two", overrides=["seed=\t1"])
    summary = write_summary(tmp_path)
    with open(tmp_path / "summary.csv", newline="") as handle:
        text = handle.read()
    assert "\x1b" not in text and "\u202e" not in text
    rows = list(csv.DictReader(text.splitlines()))
    for row in rows:
        for column in ("job", "overrides", "status", "error", "model", "checkpoint"):
            assert row[column][:1] not in set("=+-@\t\r"), (column, row[column])
    assert rows[0]["model"].startswith("'-cmd")
    assert rows[1]["error"].startswith("'=HYPERLINK") and "\\x1b[2J" in rows[1]["error"]
    md = (tmp_path / "summary.md").read_text()
    assert "\x1b" not in md and "\u202e" not in md
    report = summary.report()
    assert "\x1b" not in report and "\u202e" not in report and "\\x1b[2J" in report
    # a '$' in a legend label is literal text for matplotlib (no mathtext error)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in summary.files[2:])
    assert [p.name for p in summary.files[2:]] == ["activations.png", "weights.png"]


def test_skipped_jobs_are_counted_apart_and_are_not_failures(tmp_path):
    fake_job(tmp_path / "0")
    fake_job(tmp_path / "1", status="skipped", error="init preset 'mixed' is written for ...")
    summary = write_summary(tmp_path)
    assert not summary.failed and len(summary.skipped) == 1
    assert "2 jobs, 1 ok, 0 failed, 1 skipped" in summary.report()
    assert "2 jobs: 1 ok, 0 failed, 1 skipped." in (tmp_path / "summary.md").read_text()


def test_summarize_a_sweep_of_anything_never_prints_a_traceback(tmp_path):
    fake_job(tmp_path / "0")
    for index, damage in enumerate(DAMAGE.values(), start=1):
        damage[0](fake_job(tmp_path / str(index)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "modelfactory", "summarize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{len(DAMAGE) + 1} jobs, 1 ok, {len(DAMAGE)} failed" in proc.stdout


# --- plots at scale --------------------------------------------------------------------


def _sweep_of(tmp_path: Path, jobs: int, layers: int) -> Path:
    """``jobs`` fabricated jobs of a ``layers``-layer model, stds spread over decades."""
    import math

    for job in range(jobs):
        names = [f"stage{i // 10}.block{i % 10}.conv" for i in range(layers)]
        scale = 10 ** (job / 12 - 2)
        activations = [
            {"module": n, "call": 1, "std": scale * (1 + math.sin(i / 5 + job)) + 1e-4}
            for i, n in enumerate(names)
        ]
        weights = [
            {"name": f"{n}.weight", "std": scale * (i + 1) / layers} for i, n in enumerate(names)
        ]
        weights += [{"name": "head.bias", "std": None}]  # a one-element bias: undefined
        job_dir = tmp_path / str(job)
        job_dir.mkdir()
        metrics = {
            "status": "ok",
            "model": "deep",
            "overrides": [f"init=scheme_{job % 10}", f"seed={job // 10}"],
            "output": {"shape": [2, 10], "mean": 0.0, "std": scale},
            "parameters": {"unique": 1000, "total": 1000, "buffers": 0},
            "activations": activations,
            "weights": weights,
        }
        (job_dir / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def test_plots_of_a_50_job_60_layer_sweep(tmp_path):
    sweep = _sweep_of(tmp_path, 50, 60)
    summary = write_summary(sweep)
    assert not summary.problems
    for png in summary.files[2:]:
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert png.stat().st_size > 20_000


def test_fifty_jobs_get_fifty_distinct_styles():
    from matplotlib import colormaps

    from modelfactory.app import plots

    colours = len(colormaps["tab20"].colors)
    styles = {
        (i % colours, (i // colours) % len(plots._STYLES), i // (colours * len(plots._STYLES)))
        for i in range(50)
    }
    assert len(styles) == 50


def test_jobs_of_different_models_get_their_own_panels():
    series = [("a", ["0", "1"], [1.0, 2.0]), ("b", ["x"], [1.0]), ("c", ["0", "1"], [2.0, 3.0])]
    assert _panels(series) == [(["0", "1"], [0, 2]), (["x"], [1])]
    many = [(str(i), [str(i)], [1.0]) for i in range(10)]
    assert _panels(many) == [(None, list(range(10)))]


def test_legend_labels_drop_shared_overrides_and_name_the_job(tmp_path):
    a = fake_job(tmp_path / "0", overrides=["model=x", "seed=0"])
    b = fake_job(tmp_path / "1", overrides=["model=x", "seed=1"])
    del a, b
    assert legend_labels(collect_jobs(tmp_path)) == ["0: seed=0", "1: seed=1"]


def test_a_summary_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    fake_job(tmp_path / "0")
    (tmp_path / "summary.csv").mkdir()  # in the way (even root cannot open it for writing)
    assert main(["summarize", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "cannot write the summary" in err and "Traceback" not in out + err
