"""``modelfactory validate FILE...``: check shared model files without building them.

Each file is read as plain data (never through Hydra), validated, held to the
size limits (parameters counted on the ``meta`` device) and, where the shape
check exists, dry-run on ``meta``. Every problem is printed with its config
path, ``file:line:col`` and a did-you-mean.

Exit codes: 0 every file is valid; 1 some file is invalid; 2 usage error
(no files, a file that does not exist or is a directory, a plugin that cannot
be imported, a bad option). A usage error wins over invalid files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checker.limits import budget
from ..errors import ModelFactoryError
from ..pipeline import check
from ..registry.plugins import PluginError, load_plugins
from ..safety.terminal import terminal_text
from ..spec.validate import load_spec_file
from ..tables import format_counts

__all__ = ["setup", "run", "add_trusted_options"]


def add_trusted_options(parser: argparse.ArgumentParser) -> None:
    """Options every sharing tool takes: plugins and the library directory (both trusted)."""
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this Python module first, to register its layers/ops (trusted code; repeatable)",
    )
    parser.add_argument(
        "--block-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of library blocks a file's defaults list may name "
        "(default: the block/ directory beside the file's model/ directory)",
    )


def setup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``validate``."""
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="model files (YAML)")
    add_trusted_options(parser)
    parser.add_argument(
        "--max-parameters",
        type=int,
        default=None,
        metavar="N",
        help="budget in elements (unique parameters + buffers); default 1e9",
    )


def _validate_one(path: Path, block_dir: Path | None) -> str:
    spec, _ = load_spec_file(path, block_dir=block_dir)
    result = check(spec)  # limits, inferred sizes, shape errors, the budget: each once
    shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in result.output_shapes)
    return (
        f"{spec.name or path.stem}: {format_counts(result.counts)}; shapes checked, output {shapes}"
    )


def run(args: argparse.Namespace) -> int:
    """Validate every file; print one line per valid file and every problem of the others."""
    try:
        load_plugins(args.plugin)
    except PluginError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        return 2
    if args.max_parameters is not None and args.max_parameters < 1:
        print(
            f"error: --max-parameters must be positive, found {args.max_parameters}",
            file=sys.stderr,
        )
        return 2
    usage = invalid = False
    with budget(max_parameters=args.max_parameters):
        for path in args.files:
            if not path.is_file():
                why = "is a directory" if path.is_dir() else "does not exist"
                print(
                    f"error: {terminal_text(str(path))}: {why}; pass model files", file=sys.stderr
                )
                usage = True
                continue
            try:
                summary = _validate_one(path, args.block_dir)
            except ModelFactoryError as err:
                where = "" if str(path) in str(err) else f"{path}: "
                print(f"error: {terminal_text(where + str(err))}", file=sys.stderr)
                invalid = True
            else:
                print(f"ok: {terminal_text(str(path))} ({terminal_text(summary)})")
    return 2 if usage else 1 if invalid else 0
