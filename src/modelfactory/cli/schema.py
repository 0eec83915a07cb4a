"""``modelfactory schema``: print the JSON Schema of model files for editors.

Generated from the registries, so layers and ops from ``--plugin`` modules are
included. Save it and point the YAML language server at it::

    modelfactory schema > modelfactory.schema.json
    # first line of a model file:
    # yaml-language-server: $schema=../modelfactory.schema.json
"""

from __future__ import annotations

import argparse
import json
import sys

from ..registry.plugins import PluginError, load_plugins
from ..safety.terminal import terminal_text
from ..spec.schema import model_schema
from .validate import add_trusted_options

__all__ = ["setup", "run"]


def setup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``schema``."""
    add_trusted_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the schema as JSON."""
    try:
        load_plugins(args.plugin)
    except PluginError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        return 2
    json.dump(model_schema(block_dir=args.block_dir), sys.stdout, indent=2)
    print()
    return 0
