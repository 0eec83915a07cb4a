"""Where a run's model comes from: the ``model`` group or ``model_file=``, never both at once.

``model=NAME`` (and ``model.*`` overrides) compose a zoo model through Hydra;
``model_file=PATH`` reads someone's file as plain data, outside Hydra. Given
together, one would silently win, so that is an error saying which would and
how to combine them. ``--cfg job`` with ``model_file=`` shows the file's model,
which is what will run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from ..errors import ModelFactoryError
from ..safety.terminal import printable
from ..spec.compose import compose_model_file
from ..spec.validate import refuse_non_model_file
from ..zoo import CONF_DIR

__all__ = [
    "ConfigSourceError",
    "check_model_sources",
    "model_file_of",
    "show_model_file_config",
    "effective_config",
]


class ConfigSourceError(ModelFactoryError):
    """``model_file=`` was combined with ``model=`` or ``model.*`` overrides."""


def _parse(overrides: Sequence[str]) -> list[Any]:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return []  # Hydra reports a malformed override itself, with its own message


def check_model_sources(overrides: Sequence[str]) -> str | None:
    """The ``model_file`` value if one is given; raise if ``model`` overrides come with it."""
    parsed = _parse(overrides)
    model_file = next((o for o in parsed if o.key_or_group == "model_file"), None)
    if model_file is None or (not model_file.is_sweep_override() and model_file.value() is None):
        return None
    clashing = [
        o.input_line
        for o in parsed
        if o.key_or_group == "model" or o.key_or_group.startswith("model.")
    ]
    if clashing:
        shown = ", ".join(printable(c, 120) for c in clashing)
        raise ConfigSourceError(
            f"model_file= and {shown} both say which model to run; model_file= would win and "
            f"{shown} would be ignored, so nothing runs. Use one: model=NAME with model.* "
            "overrides for a zoo model, or model_file=PATH alone for a file (to change the "
            "file's values, edit a copy; to compose it with overrides, put it in a model/ "
            "directory and add it to the search path: hydra.searchpath=[file:///abs/conf])."
        )
    return model_file.input_line.partition("=")[2]


def model_file_of(args: Sequence[str]) -> str | None:
    """Check the command line's model sources; return the ``model_file`` value, if any."""
    return check_model_sources([a for a in _overrides_in(args)])


def _overrides_in(args: Sequence[str]) -> list[str]:
    from hydra._internal.utils import get_args_parser  # what Hydra itself parses argv with

    try:
        parsed, _ = get_args_parser().parse_known_args(list(args))
    except SystemExit:  # a usage error: Hydra reports it when it parses the same line
        return []
    return list(parsed.overrides or [])


def _cfg_kind(args: Sequence[str]) -> str | None:
    from hydra._internal.utils import get_args_parser

    try:
        parsed, _ = get_args_parser().parse_known_args(list(args))
    except SystemExit:
        return None
    return None if parsed.multirun else parsed.cfg


def show_model_file_config(args: Sequence[str], model_file: str) -> bool:
    """For ``--cfg job|all`` with ``model_file=``, print the config with the file's model.

    Returns ``False`` (Hydra handles the command line) for anything else.
    """
    kind = _cfg_kind(args)
    if kind not in ("job", "all") or "," in model_file:
        return False
    from hydra import compose, initialize_config_dir

    overrides = _overrides_in(args)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        cfg = compose("config", overrides=overrides, return_hydra_config=kind == "all")
    data = OmegaConf.to_container(cfg, resolve=False)
    refuse_non_model_file(model_file)
    model, _ = compose_model_file(model_file)
    data["model"] = model
    print(
        f"# model: read from model_file={printable(model_file, 200)} (plain data, not composed "
        "by Hydra)"
    )
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return True


def effective_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's config as plain data, ``model`` being the model file's when one is given.

    The resume digest is taken over this, so editing a model file reruns its job.
    """
    data = OmegaConf.to_container(cfg, resolve=True)
    path = cfg.get("model_file")
    if path:
        refuse_non_model_file(path)
        data["model"] = compose_model_file(Path(path))[0]
    return data
