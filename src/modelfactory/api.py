"""The public pipeline: ``build`` a model from a spec, ``load`` one from a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .builder import BuildInfo, construct
from .checkpoint import check_ties, read_checkpoint
from .devices import resolve_device
from .errors import ModelFactoryError
from .parse import to_spec
from .spec import ModelSpec
from .weights import check_weights, load_weights

__all__ = ["build", "load", "validate"]

log = logging.getLogger(__name__)


def validate(spec: Any) -> ModelSpec:
    """Validate a YAML path, mapping or spec; raise one error listing every problem."""
    return to_spec(spec)


def build(
    spec: ModelSpec | Any,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> nn.Module:
    """Build the ``nn.Module`` described by ``spec`` on ``device``.

    ``spec`` may be a YAML path, a mapping (a Hydra ``DictConfig`` too) or a
    validated :class:`ModelSpec`. The same spec and seed give the same weights.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelFactoryError(f"seed: must be a non-negative integer, found {seed!r}")
    model_spec = to_spec(spec)
    target = resolve_device(device)
    model = construct(model_spec, device=target, seed=seed)
    model.modelfactory_info = BuildInfo(spec=model_spec, seed=seed, device=str(target))
    log.debug("built %s on %s", type(model).__name__, target)
    return model


def load(path: str | Path, *, device: str | torch.device = "cpu", strict: bool = True) -> nn.Module:
    """Rebuild a model from its checkpoint alone and load its weights strictly.

    ``strict=False`` loads the tensors that match and logs (as warnings) what
    it skipped. See ``docs/checkpoints.md``.
    """
    stored = read_checkpoint(path)
    if strict:
        # Match names and shapes on a meta-device build first: a file cannot make us
        # allocate a model larger than the weights it actually holds.
        check_weights(build(stored.spec, device="meta", seed=stored.seed), path)
    model = build(stored.spec, device=device, seed=stored.seed)
    load_weights(model, path, strict=strict)
    check_ties(model, stored)
    return model
