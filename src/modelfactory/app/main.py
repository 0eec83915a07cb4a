"""The Hydra application behind ``python run.py ...`` and ``modelfactory run ...`` (one app, two doors).

Its configs are the ones shipped in the package (``modelfactory/conf``), so
the command works from any directory after ``pip install``. Outputs go to the
Hydra run directory under the current directory (``outputs/<date>/<time>/``).
A bad config exits with status 1 and a message, no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from ..errors import ModelFactoryError
from ..safety.terminal import terminal_text
from ..zoo import CONF_DIR, first_comment, list_inits, list_models

__all__ = ["main", "CONF_DIR"]

HELP_RESOLVER = "modelfactory_groups"


def _help_groups() -> str:
    """The config groups a user can choose from, for ``--help`` (library blocks are not one)."""
    lines = []
    parallel = sorted(p.stem for p in (CONF_DIR / "parallel").glob("*.yaml"))
    for group, names in (("model", list_models()), ("init", list_inits()), ("parallel", parallel)):
        lines.append(f"{group}: {', '.join(names)}")
    lines.append("hydra/launcher: basic, parallel (joblib), slurm, submitit_local, submitit_slurm")
    lines.append("")
    lines.append("Zoo models (model=NAME):")
    for name in list_models():
        lines.append(f"  {name:18s} {first_comment(CONF_DIR / 'model' / f'{name}.yaml')}")
    return "\n".join(lines)


if not OmegaConf.has_resolver(HELP_RESOLVER):
    # Used only by hydra.help.template in conf/config.yaml: lists the groups a user can select.
    OmegaConf.register_new_resolver(HELP_RESOLVER, _help_groups)


def _fast_help() -> str:
    """``--help``: the help template of conf/config.yaml, filled from a plain compose."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    text = OmegaConf.to_container(cfg.hydra.help, resolve=True)["template"]
    plain = OmegaConf.to_yaml({k: v for k, v in cfg.items() if k != "hydra"}, resolve=True)
    return str(text).replace("$CONFIG", plain).rstrip()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(cfg: DictConfig) -> None:
    """One job (in a multirun, a failed job is recorded, not raised)."""
    # imported here: --help, --cfg and shell completion never get here, so they import no torch
    from .sweep import run_guarded

    try:
        run_guarded(cfg, conf_dir=CONF_DIR)
    except ModelFactoryError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        sys.exit(1)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run the Hydra app with ``argv`` (default: ``sys.argv[1:]``) as its command line.

    ``model_file=`` together with ``model=`` or ``model.*`` overrides is refused
    before anything runs; ``--cfg job`` with ``model_file=`` shows the file's model.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    sys.argv = [prog or sys.argv[0], *args]
    if args and args[0] in ("--help", "-h") and len(args) == 1:
        # The same text Hydra prints, without Hydra's listing of its own config groups,
        # which it works out on every --help whether the template shows it or not (1.3 s).
        print(_fast_help())
        return
    try:
        if any("model_file" in arg for arg in args):  # the rest never needs the spec reader
            from .sources import model_file_of, show_model_file_config

            path = model_file_of(args)
            if path is not None and show_model_file_config(args, path):
                return
    except ModelFactoryError as err:
        print(f"error: {terminal_text(str(err))}", file=sys.stderr)
        sys.exit(1)
    _app()
