"""``modelfactory schema [--kind model|block|init]``: print a JSON Schema for editors.

Generated from the registries, so layers, ops and init schemes from
``--plugin`` modules are included. Save it and point the YAML language server
at it (the path is relative to the file that names it)::

    modelfactory schema > modelfactory.schema.json
    # first line of conf/model/my_net.yaml:
    # yaml-language-server: $schema=../../modelfactory.schema.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..registry.plugins import PluginError, load_plugins
from ..safety.terminal import terminal_text
from ..spec.schema_files import KINDS, schema_for
from .validate import add_trusted_options

__all__ = ["setup", "run"]


def setup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``schema``."""
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="model",
        help="which files the schema is for: model (default), block (library blocks) or init",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of models a defaults list may name (their names become an enum)",
    )
    add_trusted_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the schema as JSON."""
    try:
        load_plugins(args.plugin)
    except PluginError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        return 2
    schema = schema_for(args.kind, block_dir=args.block_dir, model_dir=args.model_dir)
    json.dump(schema, sys.stdout, indent=2)
    print()
    return 0
