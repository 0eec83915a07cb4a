"""The Hydra job behind ``run.py`` and ``modelfactory run``: build, print, run and checkpoint one model.

Hydra is imported only in this package (:mod:`modelfactory.app`); everything
it calls takes plain data and returns plain ``nn.Module`` s. Looking at the
model never changes it: the forward passes keep every buffer as built, so the
checkpoint is the initialised model (see :mod:`modelfactory.builder.forward`).
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

from ..builder.forward import make_input, run_forward
from ..checker.limits import set_budget
from ..checker.shapes import CheckedSpec
from ..errors import ModelFactoryError, PluginError, SpecError
from ..io.checkpoint import save
from ..pipeline import build, check
from ..registry.plugins import load_plugins
from ..safety.terminal import printable
from ..spec.compose import compose_model_file
from ..spec.parallel import to_parallel_spec
from ..spec.validate import load_spec_file, plain_data, validate_data
from ..spec.yaml_reader import SourceMap
from ..tables import parameter_counts, parameter_stats
from .console import describe_model, print_level
from .progress import DelayedProgress
from .sources import check_model_sources
from .summary import config_digest

__all__ = ["run_job", "architecture_yaml", "plugin_list"]

log = logging.getLogger(__name__)


def _model_source(choice: str | None, conf_dir: Path | None) -> SourceMap | None:
    """Positions in ``conf/model/<choice>.yaml`` (composed), so errors can name file:line."""
    if not choice or conf_dir is None:
        return None
    try:
        return compose_model_file(conf_dir / "model" / f"{choice}.yaml")[1]
    except (SpecError, OSError):
        return None


def _checked_model(cfg: DictConfig, choice: str | None, conf_dir: Path | None) -> CheckedSpec:
    """Validate and shape-check the model; problems point into conf/model/<choice>.yaml."""
    if cfg.get("model_file"):  # someone else's file: plain data, never composed by Hydra
        block_dir = conf_dir / "block" if conf_dir else None
        return check(load_spec_file(cfg.model_file, block_dir=block_dir)[0])
    source = _model_source(choice, conf_dir)
    return check(validate_data(plain_data(cfg.model), source=source, root="model"))


def plugin_list(value: Any) -> list[str]:
    """``plugins=`` as a list of module names; a bare string is refused with the fix."""
    if isinstance(value, str):
        shown = printable(value, 80)
        raise PluginError(
            f"plugins: found the string '{shown}', expected a list of module names: write "
            f"plugins=[{shown}] (with the brackets; several: plugins=[a.layers,b.ops])"
        )
    return list(plain_data(value) or [])


def _without_nulls(data: Any) -> Any:
    """``data`` without keys whose value is null, except a layer's or op's own arguments.

    A null structural field is "not given"; a null argument (``dim: null``)
    may differ from the argument's default, so it stays.
    """
    if isinstance(data, list):
        return [_without_nulls(item) for item in data]
    if isinstance(data, dict):
        keep_nulls = "type" in data or "op" in data
        return {k: _without_nulls(v) for k, v in data.items() if v is not None or keep_nulls}
    return data


def architecture_yaml(spec: Any) -> str:
    """The resolved architecture as YAML: what was built, without null placeholders."""
    return yaml.safe_dump(_without_nulls(spec.model_dump(mode="json")), sort_keys=False)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def job_seed(cfg: DictConfig) -> int:
    """The run's seed, checked: ``seed=abc`` on the command line is a clear error."""
    value = cfg.get("seed")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelFactoryError(
            f"seed: must be a non-negative integer, found {str(value)[:40]!r}; pass e.g. seed=0"
        )
    return value


def run_job(cfg: DictConfig, *, conf_dir: Path | None = None) -> dict[str, Any]:
    """Validate, build, print, run and save the configured model; return the metrics.

    ``conf_dir`` is the Hydra config directory; with it, errors in a zoo model
    name ``conf/model/<name>.yaml:line:col``.
    """
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    check_model_sources(overrides)  # model_file= with model=/model.* says which would win
    choice = hydra_cfg.runtime.choices.get("model")
    label = Path(cfg.model_file).stem if cfg.get("model_file") else choice
    level = print_level(cfg.get("print_model", "summary"))

    seed = job_seed(cfg)
    load_plugins(plugin_list(cfg.get("plugins")))  # trusted: the command line or conf/
    set_budget(max_parameters=cfg.get("max_parameters"))

    timings: dict[str, float] = {}
    start = time.perf_counter()
    checked = _checked_model(cfg, choice, conf_dir)
    spec = checked.spec
    timings["validate_s"] = time.perf_counter() - start

    init = plain_data(cfg.get("init")) if cfg.get("init") is not None else None
    parallel = to_parallel_spec(cfg.get("parallel"))
    if parallel.strategy == "fsdp":
        from .sharded_job import run_sharded_job  # torch.distributed only when asked for

        extra = {
            "overrides": list(hydra_cfg.overrides.task),
            "config_sha256": config_digest(OmegaConf.to_container(cfg, resolve=True)),
        }
        return run_sharded_job(
            cfg,
            parallel,
            checked,
            init,
            output_dir=output_dir,
            label=label,
            timings=timings,
            extra=extra,
        )
    start = time.perf_counter()
    with DelayedProgress("initialising") as progress:
        model = build(checked, device=cfg.device, seed=seed, init=init, progress=progress)
    timings["build_s"] = time.perf_counter() - start
    info = model.modelfactory_info
    device = info.device

    x = make_input(spec.input, seed=seed, device=device)
    text = describe_model(model, x, level=level, label=spec.name or label or "model")
    if text:
        print(text)

    result = run_forward(model, x)  # buffers as built before and after
    timings["forward_s"] = result.seconds
    stats = result.output_stats()
    print(
        f"output: shape {tuple(stats['shape'])}"
        + "".join(
            f", {k} {stats[k]:.6g}"
            for k in ("mean", "std", "min", "max")
            if stats.get(k) is not None
        )
    )

    checkpoint = output_dir / "model.safetensors"
    saving = device != "meta" and bool(cfg.get("save_checkpoint", True))
    start = time.perf_counter()
    if saving:
        save(model, checkpoint)
    else:  # an older checkpoint would pass for this run's
        checkpoint.unlink(missing_ok=True)
    timings["save_s"] = time.perf_counter() - start

    _write_json(output_dir / "init_report.json", info.init_report)
    (output_dir / "architecture.yaml").write_text(architecture_yaml(info.spec))
    metrics = {
        "status": "ok",  # a failed job's metrics.json says "failed" (see app.sweep.run_guarded)
        "model": spec.name or label,
        "init": (init or {}).get("name") if isinstance(init, dict) else None,
        "strategy": info.facts.get("strategy"),
        "device": device,
        "seed": seed,
        "input_shape": list(spec.input.shape),
        "output": stats,
        "parameters": parameter_counts(model),
        "timings": timings,
        "checkpoint": str(checkpoint) if saving else None,
        "activations": result.activations,
        "weights": parameter_stats(model),
        "overrides": overrides,
        "config_sha256": config_digest(_config_for_digest(cfg)),  # for resume
    }
    _write_json(output_dir / "metrics.json", metrics)
    print(f"wrote {output_dir}" + ("" if saving else " (no checkpoint: save_checkpoint=false)"))
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    return metrics


def _config_for_digest(cfg: DictConfig) -> dict[str, Any]:
    from .sources import effective_config

    try:
        return effective_config(cfg)
    except ModelFactoryError:  # the job ran, so the file read fine a moment ago
        return OmegaConf.to_container(cfg, resolve=True)
