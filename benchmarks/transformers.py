"""mf.build of the transformer zoo models beside their hand-written PyTorch classes.

``python benchmarks/transformers.py [--repeats N]``

For ``llama_tiny``, ``vit_tiny`` and ``lstm_classifier``: the median time of
``mf.build`` (validate, resolve, symbolic shape check, construct, init) and of
the hand-written reference's constructor (``tests/reference_transformers.py``,
the classes the parity tests compare against), interleaved in one run, and
their ratio. Also ``mf.build`` from an already checked spec (no earlier stage
runs again), the cost of the build stage alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

import reference_transformers as ref  # noqa: E402
from _bench import Case, time_side_by_side  # noqa: E402

import modelfactory as mf  # noqa: E402

MODELS = {
    "llama_tiny": lambda: ref.LlamaForCausalLM(),
    "vit_tiny": lambda: ref.VisionTransformer(),
    "lstm_classifier": lambda: ref.LSTMClassifier(),
}


def main(argv: list[str] | None = None) -> int:
    """Print a table: the hand-written constructor, mf.build, and their ratio, per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    print("| model | hand-written | mf.build(name) | ratio | mf.build(checked spec) | ratio |")
    print("|---|---|---|---|---|---|")
    for name, hand in MODELS.items():
        checked = mf.check(name)
        times = time_side_by_side(
            [
                Case("hand", hand),
                Case("mf", lambda name=name: mf.build(name)),
                Case("checked", lambda checked=checked: mf.build(checked)),
            ],
            repeats=args.repeats,
        )
        h, m, c = times["hand"], times["mf"], times["checked"]
        print(
            f"| {name} | {h * 1e3:.2f} ms | {m * 1e3:.2f} ms | {m / h:.2f}x | "
            f"{c * 1e3:.2f} ms | {c / h:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
