"""``python -m modelfactory <command>`` (also the ``modelfactory`` console script).

Each command is a function ``(args) -> exit code`` registered in ``COMMANDS``
with its argument parser set-up; output goes to stdout, problems to stderr.
Exit codes: 0 success, 1 invalid input (a file, a model), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import cli_schema, cli_validate
from .devices import available_devices
from .errors import ModelFactoryError
from .inspect_cmd import run_inspect, setup_inspect
from .sweep import run_summarize, setup_summarize

__all__ = ["main", "COMMANDS"]


def _setup_devices(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def _run_devices(args: argparse.Namespace) -> int:
    del args
    import torch

    from .devices import try_gpu

    current = try_gpu()
    for name in available_devices():
        if name.startswith("cuda"):
            index = int(name.split(":")[1])
            props = torch.cuda.get_device_properties(index)
            detail = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
        elif name == "mps":
            detail = "Apple Metal"
        else:
            detail = "host CPU"
        marker = "  (current: device=auto picks this)" if str(current) == name else ""
        print(f"{name:8s} {detail}{marker}")
    return 0


# name -> (help, parser set-up, handler); other modules add their commands here.
COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "devices": ("list the available devices", _setup_devices, _run_devices),
    "summarize": ("write the summary and plots of a sweep", setup_summarize, run_summarize),
    "validate": ("check model files (no Hydra)", cli_validate.setup, cli_validate.run),
    "schema": ("print the JSON Schema of model files", cli_schema.setup, cli_schema.run),
    "inspect": (
        "show a checkpoint's architecture, tensors and metadata (reads the header only)",
        setup_inspect,
        run_inspect,
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfactory", description="modelfactory tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, setup, _) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help exits 0
        return int(exit_.code or 0)
    try:
        return COMMANDS[args.command][2](args)
    except ModelFactoryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
