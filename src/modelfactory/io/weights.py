"""Loading weights into a built model: strictly, with an explicit account of any mismatch.

Weights come from a safetensors file, or from a plain PyTorch state_dict file
(``.pt``/``.pth``, read weights-only by :mod:`modelfactory.ptfile`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import CheckpointError, ConfigProblem
from ..sharing import tensor_groups
from .ptfile import load_state_dict
from .safetensors_file import SafetensorsHeader, read_header, read_into
from .suffixes import CHECKSUM_KEY, TORCH_SUFFIXES

__all__ = ["load_weights", "check_weights", "check_layout", "TORCH_SUFFIXES"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Stored:
    """A file's tensors as far as matching needs: shapes and dtypes, data on demand."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]  # torch dtype names


def _match(
    model: nn.Module, stored: _Stored, get: Callable[[str], torch.Tensor] | None
) -> tuple[list[tuple[str, torch.Tensor]], list[ConfigProblem]]:
    """Pair every model tensor with a file key; collect every missing, extra or mismatched one.

    ``get`` (None for a shapes-only check) reads a tensor, to check that a file
    holding several names of one tied group holds the same values under each.
    """
    state = model.state_dict(keep_vars=True)
    problems: list[ConfigProblem] = []
    plan: list[tuple[str, torch.Tensor]] = []  # (file key, model tensor)
    for group in tensor_groups(model):
        present = [name for name in group if name in stored.shapes]
        if not present:
            problems.append(ConfigProblem(group[0], "missing from the checkpoint"))
            continue
        target = state[group[0]]
        key = present[0]
        shape, dtype = stored.shapes[key], stored.dtypes[key]
        model_dtype = str(target.dtype).removeprefix("torch.")
        if shape != tuple(target.shape):
            problems.append(
                ConfigProblem(
                    key,
                    f"shape mismatch: checkpoint {list(shape)}, model {list(target.shape)}",
                )
            )
            continue
        if dtype != model_dtype:
            # Never cast silently: a float64 file into a float32 model changes the values.
            problems.append(
                ConfigProblem(key, f"dtype mismatch: checkpoint {dtype}, model {model_dtype}")
            )
            continue
        if get is not None and len(present) > 1:
            first = get(key)
            unequal = [name for name in present[1:] if not torch.equal(first, get(name))]
            if unequal:
                problems.append(
                    ConfigProblem(
                        key,
                        f"the model ties it to {', '.join(unequal)}, but the checkpoint holds "
                        "different values under those names",
                    )
                )
                continue
        plan.append((key, target))
    for key in sorted(set(stored.shapes) - set(state)):
        problems.append(ConfigProblem(key, "unexpected key in the checkpoint (not in the model)"))
    return plan, problems


def _mismatch(path: Path, problems: list[ConfigProblem]) -> CheckpointError:
    return CheckpointError(
        f"load: '{path}' does not match the model ({len(problems)} problem(s)); nothing was "
        "loaded. Check that the file belongs to this architecture, or pass strict=False to "
        "load the matching tensors only.",
        problems,
    )


def _report(path: Path, problems: list[ConfigProblem]) -> list[str]:
    skipped = [str(p) for p in problems]
    for item in skipped:
        log.warning("load: '%s': skipped %s", path, item)
    return skipped


def _safetensors_layout(path: Path) -> _Stored:
    return _layout(read_header(path))  # checked sizes before safetensors maps anything


def _layout(header: SafetensorsHeader) -> _Stored:
    return _Stored(
        {name: e.shape for name, e in header.tensors.items()},
        {name: e.torch_dtype for name, e in header.tensors.items()},
    )


def _torch_layout(state: Mapping[str, torch.Tensor]) -> _Stored:
    return _Stored(
        {k: tuple(v.shape) for k, v in state.items()},
        {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()},
    )


def check_weights(model: nn.Module, path: str | Path) -> None:
    """Raise if a safetensors file's names, shapes and dtypes do not match ``model`` exactly.

    Reads only the header, and works on a model built on the ``meta`` device:
    :func:`modelfactory.load` uses it to refuse a file before allocating the
    model its metadata describes.
    """
    path = Path(path)
    _, problems = _match(model, _safetensors_layout(path), None)
    if problems:
        raise _mismatch(path, problems)


def check_layout(
    model: nn.Module,
    shapes: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, str],
    path: str | Path,
) -> None:
    """Raise if stored names, shapes and dtypes (torch dtype names) do not match ``model`` exactly.

    For checkpoints whose layout is known without a safetensors header (a DCP
    directory's ``.metadata``); works on a ``meta`` model, like :func:`check_weights`.
    """
    _, problems = _match(model, _Stored(dict(shapes), dict(dtypes)), None)
    if problems:
        raise CheckpointError(
            f"load: '{path}' does not match the model ({len(problems)} problem(s)); nothing was "
            "loaded. Check that the checkpoint belongs to this architecture.",
            problems,
        )


def load_weights(
    model: nn.Module, path: str | Path, *, strict: bool = True, verify: bool = True
) -> list[str]:
    """Copy the tensors of a safetensors or ``.pt`` state_dict file into ``model`` in place.

    Copying (never ``assign=True``) keeps shared modules and tied parameters the
    same objects. A tensor stored under several names needs only one of them in
    the file. With ``strict`` any missing key, unexpected key, shape or dtype
    mismatch is an error listing all of them, and nothing is loaded;
    ``strict=False`` loads what matches, logs a warning for everything skipped
    and returns the list of what it skipped. A checkpoint's checksum is
    verified on the same read unless ``verify=False``.
    """
    path = Path(path)
    if path.suffix.lower() in TORCH_SUFFIXES:
        state = load_state_dict(path)
        plan, problems = _match(model, _torch_layout(state), state.__getitem__)
        if problems and strict:
            raise _mismatch(path, problems)
        _copy(plan, state.__getitem__)
        return _report(path, problems)
    header = read_header(path)
    try:
        with safe_open(str(path), framework="pt") as handle:  # for tied duplicates only
            plan, problems = _match(model, _layout(header), handle.get_tensor)
    except SafetensorError as err:
        raise CheckpointError(
            f"load: '{path}' is not a readable safetensors file ({err}). It may be truncated or "
            "corrupted: re-save it from the original model."
        ) from None
    if problems and strict:
        raise _mismatch(path, problems)
    # straight into the model's own storage; the checksum (when the file has one)
    # is checked on the same pass over the bytes
    checksums = header.metadata.get(CHECKSUM_KEY) if verify else None
    read_into(header, dict(plan), checksums=checksums)
    return _report(path, problems)


def _copy(plan: list[tuple[str, torch.Tensor]], get: Callable[[str], torch.Tensor]) -> None:
    with torch.no_grad():
        for key, target in plan:
            target.copy_(get(key).to(device=target.device))
