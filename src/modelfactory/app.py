"""The Hydra application behind ``run.py``: build, print, run and checkpoint one model.

This is the only library module that imports Hydra; everything it calls takes
plain data and returns plain ``nn.Module`` s.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .api import build
from .checkpoint import save
from .errors import SpecError
from .limits import set_budget
from .parse import load_spec_file, plain_data, validate_data
from .plugins import load_plugins
from .runner import make_input, run_forward
from .source import SourceMap, load_yaml_file
from .spec import ModelSpec
from .summary import format_parameter_table, parameter_counts

__all__ = ["run_job"]

log = logging.getLogger(__name__)


def _model_source(choice: str | None, conf_dir: Path | None) -> SourceMap | None:
    """Positions in ``conf/model/<choice>.yaml``, so errors can name file:line."""
    if not choice or conf_dir is None:
        return None
    path = conf_dir / "model" / f"{choice}.yaml"
    try:
        return load_yaml_file(path).source
    except (SpecError, OSError):
        return None


def _validated_model(cfg: DictConfig, choice: str | None, conf_dir: Path | None) -> ModelSpec:
    if cfg.get("model_file"):  # someone else's file: plain data, never composed by Hydra
        return load_spec_file(cfg.model_file, block_dir=conf_dir / "block" if conf_dir else None)[0]
    data = plain_data(cfg.model)
    return validate_data(data, source=_model_source(choice, conf_dir), root="model")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def run_job(cfg: DictConfig, *, conf_dir: Path | None = None) -> dict[str, Any]:
    """Validate, build, print, run and save the configured model; return the metrics.

    ``conf_dir`` is the Hydra config directory; with it, errors in a zoo model
    name ``conf/model/<name>.yaml:line:col``.
    """
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    choice = hydra_cfg.runtime.choices.get("model")

    load_plugins(cfg.get("plugins") or ())  # trusted: the command line or conf/, never a model file
    set_budget(max_parameters=cfg.get("max_parameters"))

    timings: dict[str, float] = {}
    start = time.perf_counter()
    spec = _validated_model(cfg, choice, conf_dir)
    timings["validate_s"] = time.perf_counter() - start

    start = time.perf_counter()
    model = build(spec, device=cfg.device, seed=int(cfg.seed))
    timings["build_s"] = time.perf_counter() - start
    info = model.modelfactory_info
    device = info.device

    if cfg.get("print_model", True):
        print(model)
        print()
        print(format_parameter_table(model))
        print()

    x = make_input(spec.input, seed=int(cfg.seed), device=device)
    result = run_forward(model, x)
    timings["forward_s"] = result.seconds
    stats = result.output_stats()
    print(
        f"output: shape {tuple(stats['shape'])}"
        + "".join(f", {k} {stats[k]:.6g}" for k in ("mean", "std", "min", "max") if k in stats)
    )

    checkpoint = output_dir / "model.safetensors"
    start = time.perf_counter()
    if device != "meta":
        save(model, checkpoint)
    timings["save_s"] = time.perf_counter() - start

    (output_dir / "architecture.yaml").write_text(
        yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    )
    metrics = {
        "model": spec.name or choice,
        "device": device,
        "seed": int(cfg.seed),
        "input_shape": list(spec.input.shape),
        "output": stats,
        "parameters": parameter_counts(model),
        "timings": timings,
        "checkpoint": str(checkpoint) if device != "meta" else None,
        "activations": result.activations,
        "overrides": list(hydra_cfg.overrides.task),
    }
    _write_json(output_dir / "metrics.json", metrics)
    print(f"wrote {output_dir}")
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    return metrics
