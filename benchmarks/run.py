"""What modelfactory costs, side by side with hand-written PyTorch and Hydra (issue 10).

``python benchmarks/run.py [--quick] [--write] [--no-memory]``

One run measures, each as a ratio of medians over interleaved repeats:

1. config overhead: a 1,000-layer spec of tiny layers built from a dict and from
   a YAML file, against ``nn.Sequential`` by hand and ``hydra.utils.instantiate``;
2. scaling: time per layer at 10, 100, 1,000 and 10,000 layers;
3. big-model build + init (``benchmarks/build.py``'s cases, on the CPU);
4. checkpoints of ``big_mlp``: save and load against ``torch.save`` /
   ``torch.load(weights_only=True)`` and a raw write / read of the same bytes;
5. start-up: ``python run.py model=mlp`` against a bare torch script;
6. peak memory of each case, in a child process, minus a process that only
   imports torch.

The target is printed beside each ratio. The exit status is 0 whether targets
are met or not. Without ``--quick`` the results go to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build as big  # noqa: E402  (benchmarks/build.py: the big-model cases)
from _bench import (  # noqa: E402
    ROOT,
    Case,
    baseline_peak,
    fmt_mib,
    fmt_seconds,
    format_table,
    machine_description,
    run_child,
    time_side_by_side,
    write_section,
)

WIDTH = 8  # tiny layers: the cost measured is the plumbing, not the arithmetic
CONFIG_LAYERS = 1000
SCALING_SIZES = (10, 100, 1000, 10_000)
THIS = str(Path(__file__).resolve())

Target = tuple[str, float | None, str]  # (comparison, measured ratio, target)


# ---------------------------------------------------------------- the tiny-layer specs


def tiny_layers(n: int) -> list[Any]:
    """``n`` layers alternating Linear(8, 8) and ReLU, as modelfactory list items."""
    linear = {"type": "Linear", "in_features": WIDTH, "out_features": WIDTH}
    return [dict(linear) if i % 2 == 0 else "ReLU" for i in range(n)]


def tiny_spec(n: int) -> dict[str, Any]:
    """A model spec of ``n`` tiny layers."""
    return {"input": {"shape": [2, WIDTH]}, "network": tiny_layers(n)}


def tiny_hand(n: int) -> nn.Sequential:
    """The same model written by hand."""
    return nn.Sequential(*(nn.Linear(WIDTH, WIDTH) if i % 2 == 0 else nn.ReLU() for i in range(n)))


def tiny_hydra(n: int) -> dict[str, Any]:
    """The same model as a Hydra ``_target_`` config."""
    linear = {"_target_": "torch.nn.Linear", "in_features": WIDTH, "out_features": WIDTH}
    relu = {"_target_": "torch.nn.ReLU"}
    return {
        "_target_": "torch.nn.Sequential",
        "_args_": [dict(linear) if i % 2 == 0 else dict(relu) for i in range(n)],
    }


def _dump_yaml(data: Any, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _pick(makers: dict[str, Callable[[], Callable[[], Any]]], only: str | None) -> list[Case]:
    """Cases from label -> maker; a maker runs (and imports) only when its case is wanted."""
    return [Case(label, make()) for label, make in makers.items() if only in (None, label)]


# ---------------------------------------------------------------- 1. config overhead

HAND = "nn.Sequential by hand"
MF_DICT = "mf.build(dict)"
MF_FILE = "mf.build(YAML file)"
MF_DICT_NOCHECK = "mf.build(dict, check=False)"
MF_FILE_NOCHECK = "mf.build(YAML file, check=False)"
CHECK_ONLY = "mf.check(spec) only: the symbolic shape check (info)"
HYDRA = "hydra.utils.instantiate(dict)"
HYDRA_FILE = "OmegaConf.load + instantiate (file)"
VALIDATE = "mf.validate(dict) only (info)"
YAML_ONLY = "yaml CSafeLoader of the file only (info)"


def config_cases(n: int, workdir: Path, only: str | None = None) -> list[Case]:
    """Section 1's variants: the same ``n``-layer model five ways."""
    spec = tiny_spec(n)
    spec_file = workdir / f"tiny{n}.yaml"
    hydra_file = workdir / f"tiny{n}_hydra.yaml"
    if not spec_file.exists():
        _dump_yaml(spec, spec_file)
        _dump_yaml(tiny_hydra(n), hydra_file)

    def mf_build(source: Any, check: bool = True) -> Callable[[], Any]:
        import modelfactory as mf

        return lambda: mf.build(source, check=check)

    def check_only() -> Callable[[], Any]:
        import modelfactory as mf

        validated = mf.validate(spec)
        return lambda: mf.check(validated)

    def hydra_dict() -> Callable[[], Any]:
        from hydra.utils import instantiate

        cfg = tiny_hydra(n)
        return lambda: instantiate(cfg)

    def hydra_from_file() -> Callable[[], Any]:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        return lambda: instantiate(OmegaConf.load(hydra_file))

    def validate_only() -> Callable[[], Any]:
        import modelfactory as mf

        return lambda: mf.validate(spec)

    def yaml_only() -> Callable[[], Any]:
        import yaml

        return lambda: yaml.load(spec_file.read_text(), Loader=yaml.CSafeLoader)

    return _pick(
        {
            HAND: lambda: lambda: tiny_hand(n),
            MF_DICT: lambda: mf_build(spec),
            MF_FILE: lambda: mf_build(spec_file),
            MF_DICT_NOCHECK: lambda: mf_build(spec, check=False),
            MF_FILE_NOCHECK: lambda: mf_build(spec_file, check=False),
            CHECK_ONLY: check_only,
            HYDRA: hydra_dict,
            HYDRA_FILE: hydra_from_file,
            VALIDATE: validate_only,
            YAML_ONLY: yaml_only,
        },
        only,
    )


def section_config(quick: bool, workdir: Path, peaks: Peaks) -> tuple[str, list[Target]]:
    """Section 1: time each variant, ratio against the hand-written Sequential."""
    n = 100 if quick else CONFIG_LAYERS
    times = time_side_by_side(config_cases(n, workdir), repeats=2 if quick else 15)
    mem = peaks.measure("config", [HAND, MF_DICT, MF_FILE, HYDRA], quick)
    rows = [
        [label, fmt_seconds(t), f"{t / times[HAND]:.2f}x", fmt_mib(mem.get(label))]
        for label, t in times.items()
    ]
    table = format_table(["case", "median", "vs hand", "peak RSS over baseline"], rows)
    targets = [
        ("1. mf.build(dict) / hand", times[MF_DICT] / times[HAND], "<= 1.5x"),
        ("1. mf.build(file) / hand", times[MF_FILE] / times[HAND], "<= 3x"),
        ("1. mf.build(dict, check=False) / hand", times[MF_DICT_NOCHECK] / times[HAND], "<= 1.5x"),
        ("1. mf.build(file, check=False) / hand", times[MF_FILE_NOCHECK] / times[HAND], "<= 3x"),
        ("1. hydra instantiate / hand (reference)", times[HYDRA] / times[HAND], "—"),
    ]
    title = f"### 1. Config overhead: {n} tiny layers (Linear(8, 8) and ReLU, alternating)"
    return f"{title}\n\n{table}", targets


# ---------------------------------------------------------------- 2. scaling


def section_scaling(quick: bool, peaks: Peaks) -> tuple[str, list[Target]]:
    """Section 2: mf.build(dict) time per layer across model sizes."""
    import modelfactory as mf

    sizes = SCALING_SIZES[:2] if quick else SCALING_SIZES
    rows, per_layer = [], {}
    for n in sizes:
        spec = tiny_spec(n)
        cases = [Case("mf", lambda s=spec: mf.build(s)), Case("hand", lambda n=n: tiny_hand(n))]
        repeats = 2 if quick else max(3, min(30, 30_000 // n))
        times = time_side_by_side(cases, repeats=repeats)
        per_layer[n] = times["mf"] / n
        rows.append(
            [
                f"{n:,}",
                fmt_seconds(times["mf"]),
                fmt_seconds(per_layer[n]),
                fmt_seconds(times["hand"] / n),
                f"{times['mf'] / times['hand']:.2f}x",
            ]
        )
    base = per_layer[sizes[0]]
    for row, n in zip(rows, sizes, strict=True):
        row.append(f"{per_layer[n] / base:.2f}x")
    mem = peaks.measure("scaling", ["hand", "mf"], quick)
    largest = f"{sizes[-1]:,} layers"
    table = format_table(
        ["layers", "mf.build", "mf per layer", "hand per layer", "mf / hand", "per layer vs 10"],
        rows,
    )
    table += (
        f"\n\nPeak RSS over baseline at {largest}: hand {fmt_mib(mem.get('hand'))}, "
        f"mf {fmt_mib(mem.get('mf'))}."
    )
    spread = max(per_layer.values()) / min(per_layer.values())
    targets = [
        (f"2. per-layer time, max / min over {', '.join(map(str, sizes))}", spread, "<= 1.3x"),
        (
            f"2. per-layer time, {sizes[-1]:,} / {sizes[-2]:,} layers (info)",
            per_layer[sizes[-1]] / per_layer[sizes[-2]],
            "—",
        ),
    ]
    return f"### 2. Scaling: mf.build(dict) of n tiny layers\n\n{table}", targets


def scaling_child(label: str, quick: bool) -> None:
    """The largest scaling size, one way, for its peak RSS."""
    n = (SCALING_SIZES[:2] if quick else SCALING_SIZES)[-1]
    if label == "mf":
        import modelfactory as mf

        mf.build(tiny_spec(n))
    else:
        tiny_hand(n)


# ---------------------------------------------------------------- 3. big build


def section_big(quick: bool, peaks: Peaks) -> tuple[str, list[Target]]:
    """Section 3: benchmarks/build.py's comparison, on the CPU."""
    width = big.QUICK_WIDTH if quick else big.FULL_WIDTH
    table, targets = big.measure(
        torch.device("cpu"), width, repeats=2 if quick else 5, memory=peaks.enabled, quick=quick
    )
    targets = [(f"3. {name}", ratio, target) for name, ratio, target in targets]
    return f"### 3. Big model build + init (`big_mlp`)\n\n{table}", targets


# ---------------------------------------------------------------- 4. checkpoints

MF_SAVE = "mf.save"
TORCH_SAVE = "torch.save(state_dict)"
TORCH_SAVE_FSYNC = "torch.save + fsync (info)"
RAW_WRITE = "raw write of the same bytes"
RAW_WRITE_FSYNC = "raw write + fsync (info)"
MF_LOAD_INTO = "mf load_weights into a built model"
TORCH_LOAD_INTO = "torch.load(weights_only=True) + load_state_dict"
RAW_READ_INTO = "raw readinto the parameters"
MF_LOAD = "mf.load(file) (rebuild + weights)"
TORCH_LOAD = "hand construct + torch.load + load_state_dict"
RAW_LOAD = "hand construct + raw readinto"
SAVES = [MF_SAVE, TORCH_SAVE, TORCH_SAVE_FSYNC, RAW_WRITE, RAW_WRITE_FSYNC]
LOADS_INTO = [MF_LOAD_INTO, TORCH_LOAD_INTO, RAW_READ_INTO]
LOADS = [MF_LOAD, TORCH_LOAD, RAW_LOAD]


def _raw_write(model: nn.Module, path: Path, fsync: bool) -> None:
    with open(path, "wb") as handle:
        for tensor in model.state_dict().values():
            handle.write(memoryview(tensor.detach().contiguous().numpy()).cast("B"))
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def _raw_read(model: nn.Module, path: Path) -> nn.Module:
    with open(path, "rb", buffering=0) as handle, torch.no_grad():
        for tensor in model.state_dict().values():
            handle.readinto(memoryview(tensor.numpy()).cast("B"))
    return model


def _torch_save(model: nn.Module, path: Path, fsync: bool) -> None:
    torch.save(model.state_dict(), path)
    if fsync:
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())


def checkpoint_cases(width: int, workdir: Path, only: str | None = None) -> list[Case]:
    """Section 4's variants; the model is built once, when a case needs it."""
    import modelfactory as mf

    spec = big.big_mlp_spec(width)
    built: list[nn.Module] = []

    def model() -> nn.Module:
        if not built:
            built.append(mf.build(spec))
        return built[0]

    files = {name: workdir / f"big.{name}" for name in ("mf", "torch", "raw")}

    def load_into_mf() -> Any:
        from modelfactory.io.weights import load_weights

        return load_weights(model(), files["mf"])

    makers: dict[str, Callable[[], Callable[[], Any]]] = {
        MF_SAVE: lambda: lambda: mf.save(model(), files["mf"]),
        TORCH_SAVE: lambda: lambda: _torch_save(model(), files["torch"], fsync=False),
        TORCH_SAVE_FSYNC: lambda: lambda: _torch_save(model(), files["torch"], fsync=True),
        RAW_WRITE: lambda: lambda: _raw_write(model(), files["raw"], fsync=False),
        RAW_WRITE_FSYNC: lambda: lambda: _raw_write(model(), files["raw"], fsync=True),
        MF_LOAD_INTO: lambda: load_into_mf,
        TORCH_LOAD_INTO: lambda: (
            lambda: model().load_state_dict(torch.load(files["torch"], weights_only=True))
        ),
        RAW_READ_INTO: lambda: lambda: _raw_read(model(), files["raw"]),
        MF_LOAD: lambda: lambda: mf.load(files["mf"]),
        TORCH_LOAD: lambda: (
            lambda: big.hand_mlp(width).load_state_dict(
                torch.load(files["torch"], weights_only=True)
            )
        ),
        RAW_LOAD: lambda: lambda: _raw_read(big.hand_mlp(width), files["raw"]),
    }
    return _pick(makers, only)


def section_checkpoints(quick: bool, workdir: Path, peaks: Peaks) -> tuple[str, list[Target]]:
    """Section 4: save and load throughput against torch and raw file I/O."""
    width = big.QUICK_WIDTH if quick else big.FULL_WIDTH
    cases = {case.label: case for case in checkpoint_cases(width, workdir)}
    nbytes = big.DEPTH * (width * width + width) * 4
    repeats = 2 if quick else 5
    # Saves first: the load cases read the files they write.
    times = time_side_by_side([cases[label] for label in SAVES], repeats=repeats)
    times |= time_side_by_side([cases[label] for label in LOADS_INTO], repeats=repeats)
    for case in cases.values():
        if case.label in LOADS:
            case.after = gc.collect  # drop the rebuilt model before the next one
    times |= time_side_by_side([cases[label] for label in LOADS], repeats=repeats)
    cases.clear()
    gc.collect()
    wanted = [MF_SAVE, TORCH_SAVE, RAW_WRITE, MF_LOAD, TORCH_LOAD, RAW_LOAD]
    mem = peaks.measure("checkpoint", wanted, quick, extra=["--workdir", str(workdir)])

    rows = []
    for group, reference in (
        (SAVES, TORCH_SAVE),
        (LOADS_INTO, TORCH_LOAD_INTO),
        (LOADS, TORCH_LOAD),
    ):
        for label in group:
            t = times[label]
            rows.append(
                [
                    label,
                    fmt_seconds(t),
                    f"{nbytes / t / 2**30:.2f} GiB/s",
                    f"{times[reference] / t:.2f}x",
                    fmt_mib(mem.get(label)),
                ]
            )
    header = ["case", "median", "throughput", "throughput vs torch", "peak RSS over baseline"]
    note = (
        f"{nbytes / 2**20:.0f} MiB of float32 weights, files in `{workdir.parent}` "
        "(page cache warm; only the fsync rows wait for the disk). Peak RSS of the save and "
        "load-into cases includes building the model itself."
    )
    targets = [
        ("4. mf.save throughput / torch.save", times[TORCH_SAVE] / times[MF_SAVE], ">= 0.9x"),
        (
            "4. mf.save / torch.save + fsync (info)",
            times[TORCH_SAVE_FSYNC] / times[MF_SAVE],
            "—",
        ),
        ("4. mf.load throughput / hand + torch.load", times[TORCH_LOAD] / times[MF_LOAD], "—"),
    ]
    return f"### 4. Checkpoints of `big_mlp`\n\n{note}\n\n{format_table(header, rows)}", targets


# ---------------------------------------------------------------- 5. start-up

BARE_SCRIPT = """\
import sys
import torch
from torch import nn

net = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
with torch.no_grad():
    print(net(torch.rand(2, 20)).shape)
torch.save(net.state_dict(), sys.argv[1])
"""


def section_startup(quick: bool, workdir: Path, peaks: Peaks) -> tuple[str, list[Target]]:
    """Section 5: wall time and peak RSS of whole processes, interleaved."""
    bare = workdir / "bare.py"
    bare.write_text(BARE_SCRIPT)
    commands = {
        "python run.py model=mlp": lambda i: [
            sys.executable,
            str(ROOT / "run.py"),
            "model=mlp",
            f"hydra.run.dir={workdir / f'run{i}'}",
        ],
        "bare script: import torch, build, run, torch.save": lambda i: [
            sys.executable,
            str(bare),
            str(workdir / f"bare{i}.pt"),
        ],
        "python -c 'import torch' (info)": lambda i: [sys.executable, "-c", "import torch"],
        "python -c 'import modelfactory' (info)": lambda i: [
            sys.executable,
            "-c",
            "import modelfactory",
        ],
    }
    if quick:  # the smoke run keeps only the two compared processes
        commands = dict(list(commands.items())[:2])
    samples: dict[str, list[tuple[float, int]]] = {label: [] for label in commands}
    for i in range(1 if quick else 7):
        for label, argv in commands.items():
            wall, peak, _ = run_child(argv(i))
            samples[label].append((wall, peak))
    base = peaks.baseline if peaks.baseline is not None else baseline_peak()
    medians = {
        label: (sorted(w for w, _ in s)[len(s) // 2], max(p for _, p in s))
        for label, s in samples.items()
    }
    run_label, bare_label = list(commands)[:2]
    reference = medians[bare_label][0]
    rows = [
        [label, f"{wall:.3f} s", f"{wall - reference:+.3f} s", fmt_mib(max(0, peak - base))]
        for label, (wall, peak) in medians.items()
    ]
    table = format_table(
        ["process", "median wall", "vs bare script", "peak RSS over baseline"], rows
    )
    extra = medians[run_label][0] - reference
    targets = [("5. run.py model=mlp minus bare script (seconds)", extra, "<= +0.5 s")]
    return f"### 5. Start-up\n\n{table}", targets


# ---------------------------------------------------------------- 6. peak memory


class Peaks:
    """Peak RSS per case, each case run once in its own child, minus the torch-only baseline."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.baseline = baseline_peak() if enabled else None

    def measure(
        self, section: str, labels: list[str], quick: bool, extra: list[str] | None = None
    ) -> dict[str, int]:
        """Child runs of ``labels``; the quick smoke run measures only the first one."""
        if not self.enabled or self.baseline is None:
            return {}
        peaks = {}
        for label in labels[:1] if quick else labels:
            argv = [sys.executable, THIS, "--child", f"{section}:{label}", *(extra or [])]
            _, peak, _ = run_child(argv + (["--quick"] if quick else []))
            peaks[label] = max(0, peak - self.baseline)
        return peaks


def child(which: str, quick: bool, workdir: Path) -> None:
    """Run one case once, in this process, for the parent to read its peak RSS."""
    section, label = which.split(":", 1)
    if section == "scaling":
        scaling_child(label, quick)
        return
    if section == "config":
        cases = config_cases(100 if quick else CONFIG_LAYERS, workdir, only=label)
    else:
        width = big.QUICK_WIDTH if quick else big.FULL_WIDTH
        cases = checkpoint_cases(width, workdir, only=label)
    cases[0].fn()


# ---------------------------------------------------------------- report


def summary(targets: list[Target]) -> str:
    """Every ratio beside its target, in one table."""
    rows = []
    for name, ratio, target in targets:
        if ratio is None:
            rows.append([name, "not available", target, "—"])
            continue
        seconds = target.endswith(" s")
        shown = f"{ratio:+.2f} s" if seconds else f"{ratio:.2f}x"
        bound = target.lstrip("<>= +").rstrip(" sx")
        met = "—"
        if target.startswith("<="):
            met = "yes" if ratio <= float(bound) else "no"
        elif target.startswith(">="):
            met = "yes" if ratio >= float(bound) else "no"
        rows.append([name, shown, target, met])
    return format_table(["comparison", "measured", "target", "met"], rows)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repeat")
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process RSS runs")
    parser.add_argument("--write", action="store_true", help="write docs even with --quick")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args.child, args.quick, Path(args.workdir or tempfile.mkdtemp()))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    try:
        peaks = Peaks(enabled=not args.no_memory)
        parts, targets = [], []
        for section in (
            lambda: section_config(args.quick, workdir, peaks),
            lambda: section_scaling(args.quick, peaks),
            lambda: section_big(args.quick, peaks),
            lambda: section_checkpoints(args.quick, workdir, peaks),
            lambda: section_startup(args.quick, workdir, peaks),
        ):
            text, found = section()
            print(text + "\n", flush=True)
            parts.append(text)
            targets += found
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    mode = "quick smoke run (small sizes)" if args.quick else "full run"
    baseline = "not measured" if peaks.baseline is None else fmt_mib(peaks.baseline)
    head = (
        "## Results (`benchmarks/run.py`)\n\n"
        f"Machine: {machine_description()}. Mode: {mode}. Times are medians over interleaved "
        f"repeats; peak RSS is measured per case in a child process, minus the peak of a "
        f"process that only imports torch ({baseline}).\n\n"
        "### Summary: ratios and targets\n\n" + summary(targets)
    )
    print(head)
    if args.write or not (args.quick or args.no_write):
        write_section("run.py", "\n\n".join([head, *parts]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
