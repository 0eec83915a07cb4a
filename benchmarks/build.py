"""Big-model build + init: modelfactory vs hand-written PyTorch vs the RNG floor (issue 6).

``python benchmarks/build.py [--device cuda] [--quick] [--no-write]``

For ``big_mlp`` (8 x (Linear(4096, 4096) + ReLU), 134M parameters) it times, side
by side in one run:

- the floor: one ``uniform_`` fill of as many elements as the model has;
- hand-written PyTorch: default construction, and the text's way (construct,
  then re-init with ``net.apply(init_xavier)``);
- ``modelfactory.build`` with the default init, and with ``init="xavier"``
  when this version of ``build`` accepts ``init``.

It prints ratios beside their targets (<= 1.10x the floor; <= 0.6x the text's
construct-then-re-init) and refreshes its section of ``docs/benchmarks.md``.
It reports and never judges: the exit status is 0 whether targets are met or not.
"""

from __future__ import annotations

import argparse
import copy
import gc
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import (  # noqa: E402  (the helper lives beside this script)
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

BIG_MLP = ROOT / "conf" / "model" / "big_mlp.yaml"
FULL_WIDTH = 4096
QUICK_WIDTH = 256
DEPTH = 8  # Linear + ReLU pairs, as in big_mlp.yaml
XAVIER_CONF = ROOT / "conf" / "init" / "xavier.yaml"

FLOOR = "floor: one uniform_ fill"
HAND = "hand: nn.Sequential construction (default init)"
HAND_XAVIER = "hand: construct, then apply(init_xavier) (the text's way)"
HAND_TO = "hand: construct + init_xavier on CPU, then .to(device) (the text's way)"
MF = "mf.build(big_mlp) (default init)"
MF_XAVIER = 'mf.build(big_mlp, init="xavier")'


def big_mlp_spec(width: int) -> dict[str, Any]:
    """``conf/model/big_mlp.yaml`` as data, with its Linear width set to ``width``."""
    spec = yaml.safe_load(BIG_MLP.read_text())
    spec = copy.deepcopy(spec)
    spec["blocks"]["layer"][0].update(in_features=width, out_features=width)
    spec["input"]["shape"] = [2, width]
    assert spec["network"]["repeat"] == DEPTH  # the hand-written twin below mirrors this
    return spec


def hand_mlp(width: int) -> nn.Sequential:
    """The hand-written twin of big_mlp: same parameter names and shapes."""
    return nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(DEPTH)))


def init_xavier(m: nn.Module) -> None:
    """The text's ``init_xavier``, verbatim."""
    if type(m) is nn.Linear:
        nn.init.xavier_uniform_(m.weight)


def xavier_init_arg() -> Any | None:
    """What to pass as ``init=`` for Xavier, or None when ``build`` has no ``init``.

    The named form ``"xavier"`` is preferred; a build whose ``init`` takes a
    file or rules instead gets ``conf/init/xavier.yaml``.
    """
    import modelfactory as mf

    if "init" not in inspect.signature(mf.build).parameters:
        return None
    probe = big_mlp_spec(8)
    for candidate in ("xavier", str(XAVIER_CONF)):
        try:
            mf.build(probe, init=candidate)
        except Exception:  # noqa: BLE001 - any refusal means "try the next form"
            continue
        return candidate
    return None


def sync(device: torch.device) -> Callable[[], None]:
    """A barrier for asynchronous devices, so a timing includes the queued work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def make_cases(device: torch.device, width: int, only: str | None = None) -> tuple[list[Case], int]:
    """The timed variants (just ``only`` when given) and the model's element count.

    modelfactory is imported only by its own cases, so a child process that
    measures a hand-written case's memory does not pay for the library's imports.
    """
    spec = big_mlp_spec(width)
    numel = DEPTH * (width * width + width)
    barrier = sync(device)
    holder: list[Any] = []  # keeps the last result alive until `after` drops it

    def keep(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            holder.append(fn())
            barrier()

        return run

    def drop() -> None:
        holder.clear()
        gc.collect()

    def hand_default() -> nn.Module:
        with device:
            return hand_mlp(width)

    def hand_reinit() -> nn.Module:
        with device:
            net = hand_mlp(width)
        return net.apply(init_xavier)

    def mf_build(**kwargs: Any) -> nn.Module:
        import modelfactory as mf

        return mf.build(spec, device=str(device), **kwargs)

    makers: dict[str, Callable[[], Callable[[], Any] | None]] = {
        FLOOR: lambda: lambda: torch.empty(numel, device=device).uniform_(),
        HAND: lambda: hand_default,
        HAND_XAVIER: lambda: hand_reinit,
        # On the CPU this is the same as HAND_XAVIER.
        HAND_TO: lambda: (
            None if device.type == "cpu" else lambda: hand_mlp(width).apply(init_xavier).to(device)
        ),
        MF: lambda: mf_build,
        MF_XAVIER: lambda: _xavier_case(mf_build),
    }
    cases = []
    for label, make in makers.items():
        if only is not None and label != only:
            continue
        fn = make()
        if fn is not None:
            cases.append(Case(label, keep(fn), drop))
    return cases, numel


def _xavier_case(mf_build: Callable[..., nn.Module]) -> Callable[[], nn.Module] | None:
    init_arg = xavier_init_arg()
    if init_arg is None:
        return None
    return lambda: mf_build(init=init_arg)


def results_table(
    times: dict[str, float], peaks: dict[str, int | None], numel: int, device: torch.device
) -> tuple[str, list[tuple[str, float | None, str]]]:
    """The per-case table, and the (comparison, ratio, target) lines."""
    floor, hand_x = times[FLOOR], times[HAND_XAVIER]
    rows = []
    for label, seconds in times.items():
        rows.append(
            [
                label,
                fmt_seconds(seconds),
                f"{seconds / floor:.2f}x",
                f"{seconds / hand_x:.2f}x",
                fmt_mib(peaks.get(label)),
            ]
        )
    header = ["case", "median", "vs floor", "vs hand re-init", "peak RSS over baseline"]
    mf_x = times.get(MF_XAVIER)
    targets = [
        ("mf default build / floor", times[MF] / floor, "<= 1.10x"),
        ("mf xavier build / floor", None if mf_x is None else mf_x / floor, "<= 1.10x"),
        ("mf xavier build / hand re-init", None if mf_x is None else mf_x / hand_x, "<= 0.60x"),
        ("hand default construction / floor (reference)", times[HAND] / floor, "—"),
    ]
    note = f"{numel:,} parameters ({numel * 4 / 2**30:.2f} GiB float32) on {device}." + (
        ""
        if MF_XAVIER in times
        else ' `mf.build(..., init="xavier")`: not available in this version.'
    )
    return note + "\n\n" + format_table(header, rows), targets


def targets_table(targets: list[tuple[str, float | None, str]]) -> str:
    """Ratios beside their targets; a missing measurement says so."""
    rows = []
    for name, ratio, target in targets:
        if ratio is None:
            rows.append([name, "not available", target, "—"])
            continue
        met = "—"
        if target.startswith("<="):
            met = "yes" if ratio <= float(target[2:].strip(" x")) else "no"
        elif target.startswith(">="):
            met = "yes" if ratio >= float(target[2:].strip(" x")) else "no"
        rows.append([name, f"{ratio:.2f}x", target, met])
    return format_table(["comparison", "ratio", "target", "met"], rows)


def measure(
    device: torch.device, width: int, repeats: int, memory: bool, quick: bool
) -> tuple[str, list[tuple[str, float | None, str]]]:
    """Time every case side by side (and its peak memory in a child); return the report."""
    cases, numel = make_cases(device, width)
    times = time_side_by_side(cases, repeats=repeats)
    peaks: dict[str, int | None] = {}
    if memory:
        base = baseline_peak()
        # The quick smoke run measures one child, to exercise the path cheaply.
        for case in cases if not quick else [c for c in cases if c.label == MF]:
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                case.label,
                "--device",
                str(device),
            ]
            _, peak, _ = run_child(argv + (["--quick"] if quick else []))
            peaks[case.label] = max(0, peak - base)
    return results_table(times, peaks, numel, device)


def child(label: str, device: torch.device, width: int) -> None:
    """Run one case once, for its peak RSS (read by the parent through ``wait4``)."""
    cases, _ = make_cases(device, width, only=label)
    cases[0].fn()


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: width {QUICK_WIDTH}")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process RSS runs")
    parser.add_argument("--write", action="store_true", help="write docs even with --quick")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"build.py: skipped: --device {args.device} requested but CUDA is not available")
        return 0
    width = QUICK_WIDTH if args.quick else FULL_WIDTH
    if args.child:
        child(args.child, device, width)
        return 0
    repeats = args.repeats or (2 if args.quick else 5)
    # CUDA memory is not host RSS; the child runs measure the CPU build only.
    memory = not args.no_memory and device.type == "cpu"
    table, targets = measure(device, width, repeats, memory, args.quick)
    mode = "quick (smoke run, tiny model)" if args.quick else f"{repeats} repeats, medians"
    body = "\n\n".join(
        [
            f"## Big model build + init (`benchmarks/build.py --device {device}`)",
            f"Machine: {machine_description()}. Mode: {mode}.",
            table,
            targets_table(targets),
        ]
    )
    print(body)
    if args.write or not (args.quick or args.no_write):
        write_section(f"build.py {device.type}", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
