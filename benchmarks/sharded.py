"""Memory per rank of a sharded build (issue 17): peak RSS per rank / model size, at world size 1 and 2.

``python benchmarks/sharded.py [--quick] [--no-write]``

Each configuration is one ``torchrun --standalone --nproc_per_node W`` run of
this script in worker mode, on the CPU (gloo). Every rank first builds and
runs a tiny model (one-time costs: lazy imports, DTensor dispatch, gloo), then
records its baseline, builds ``big_mlp`` (8 x Linear(4096, 4096), 512 MiB
float32) with ``build_sharded(shard=["*"])``, runs a forward pass, and reports
its peak RSS (``ru_maxrss``) and current RSS over that baseline. The reference
row is ``modelfactory.build`` in one process without FSDP.

glibc keeps freed blocks below its dynamic mmap threshold, so the per-layer
scratch of the init can stay resident after it is freed; the runs are repeated
with ``MALLOC_MMAP_THRESHOLD_=1048576`` (large blocks returned at free) to show
what the ranks actually hold. It reports and never judges: exit status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import ROOT, format_table, machine_description, write_section  # noqa: E402

FULL_WIDTH = 4096
QUICK_WIDTH = 256
MARK = "@@sharded "


def big_mlp(width: int) -> dict:
    import yaml

    data = yaml.safe_load((ROOT / "conf" / "model" / "big_mlp.yaml").read_text())
    data["blocks"]["layer"][0].update(in_features=width, out_features=width)
    data["input"]["shape"] = [2, width]
    return data


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(width: int, plain: bool) -> None:
    """One rank: warm up, then measure one big build and one forward."""
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    import modelfactory as mf
    from modelfactory.builder.forward import make_input
    from modelfactory.builder.sharded import build_sharded, local_parameter_bytes
    from modelfactory.distributed import gather_objects, process_group, rank, world_size

    with process_group(torch.device("cpu")):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size()))

        def make(w: int) -> torch.nn.Module:
            if plain:
                return mf.build(big_mlp(w), strategy="meta")
            return build_sharded(big_mlp(w), shard=["*"])

        with torch.no_grad():
            make(64)(torch.rand(2, 64))  # one-time costs before the baseline
        base_peak, base_now = _peak(), _now()
        start = time.perf_counter()
        model = make(width)
        build_s = time.perf_counter() - start
        built_peak, built_now = _peak(), _now()
        x = make_input(model.modelfactory_info.spec.input, seed=0)
        with torch.no_grad():
            model(x)
        row = {
            "rank": rank(),
            "model_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "local_bytes": (
                sum(p.numel() * p.element_size() for p in model.parameters())
                if plain
                else local_parameter_bytes(model)
            ),
            "baseline_peak": base_peak,
            "built_peak": built_peak - base_peak,
            "built_now": built_now - base_now,
            "forward_peak": _peak() - base_peak,
            "build_s": build_s,
        }
        rows = gather_objects(row)
        if rank() == 0:
            print(MARK + json.dumps(rows), flush=True)


def run(world: int, width: int, plain: bool, mmap_threshold: bool) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(world), __file__, "--worker", "--width", str(width)]
    command += ["--plain"] if plain else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "1048576"
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-4000:]}")


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def measure(width: int, quick: bool) -> str:
    configs = [
        ("mf.build, 1 process, no FSDP (reference)", 1, True),
        ("build_sharded, world size 1", 1, False),
        ("build_sharded, world size 2", 2, False),
    ]
    if quick:  # a smoke run: the 2-rank path only, once
        configs = configs[2:]
    header = [
        "run",
        "malloc",
        "rank",
        "parameters held",
        "peak RSS after build",
        "peak / model size",
        "RSS held after build",
        "peak after forward",
        "build",
    ]
    rows = []
    model_bytes = 0
    for mmap in (False,) if quick else (False, True):
        for label, world, plain in configs:
            for r in run(world, width, plain, mmap):
                model_bytes = r["model_bytes"]
                rows.append(
                    [
                        label,
                        "mmap threshold 1 MiB" if mmap else "glibc default",
                        str(r["rank"]),
                        mib(r["local_bytes"]),
                        mib(r["built_peak"]),
                        f"{r['built_peak'] / r['model_bytes']:.2f}",
                        mib(r["built_now"]),
                        mib(r["forward_peak"]),
                        f"{r['build_s']:.2f} s",
                    ]
                )
    intro = (
        f"`big_mlp` at width {width}: {model_bytes / 2**20:.1f} MiB of float32 parameters, "
        "sharded with `shard: ['*']` (one FSDP unit per Linear+ReLU block). Memory is per rank, "
        "over the rank's own baseline after imports, the process group and a warm-up build."
    )
    return intro + "\n\n" + format_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run: width {QUICK_WIDTH}")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    width = args.width or (QUICK_WIDTH if args.quick else FULL_WIDTH)
    if args.worker:
        worker(width, args.plain)
        return 0
    mode = "quick (smoke run, tiny model)" if args.quick else "one run per row"
    body = "\n\n".join(
        [
            "## Memory per rank of a sharded build (`benchmarks/sharded.py`)",
            f"Machine: {machine_description()}. Mode: {mode}.",
            measure(width, args.quick),
        ]
    )
    print(body)
    if not (args.quick or args.no_write):
        write_section("sharded.py", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
