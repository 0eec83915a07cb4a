"""The ``parallel:`` run config as data: no sharding, or FSDP2 units chosen by glob rules.

::

    strategy: fsdp
    shard:
      - "layers.*"            # each module matching the glob is its own FSDP unit
      - [embedding, head]     # the modules matched by these globs form ONE unit
    reshard_after_forward: true
    backend: auto

Globs are the init rules' module globs (``*`` one path segment, ``**`` any
number). The root module is always the last unit; see ``docs/scale.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from ..errors import ModelFactoryError
from .validate import plain_data, problems_from
from .validation import Frozen, problem, raise_problems

__all__ = ["ParallelSpec", "ShardRule", "to_parallel_spec", "malformed_glob"]

ShardRule = str | tuple[str, ...]


def malformed_glob(glob: str) -> str | None:
    """Why ``glob`` cannot be a module glob, or ``None`` if it can."""
    if not glob:
        return "an empty glob selects nothing; name a module path such as 'layers.*'"
    if "***" in glob or glob.startswith(".") or glob.endswith(".") or ".." in glob:
        return f"malformed glob {glob!r}: use '*' for one path segment and '**' for any number"
    return None


class ParallelSpec(Frozen):
    """How one run is spread over processes (``conf/parallel/*.yaml``)."""

    strategy: Literal["none", "fsdp"] = "none"
    shard: tuple[ShardRule, ...] = Field(
        default=(),
        description="FSDP units: a glob (each match its own unit) or a list of globs (one unit)",
    )
    reshard_after_forward: Annotated[
        bool, Field(description="free gathered parameters after each unit's forward")
    ] = True
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    safetensors: Annotated[
        bool, Field(description="also convert the DCP checkpoint to model.safetensors (rank 0)")
    ] = False

    @field_validator("shard", mode="before")
    @classmethod
    def _lists_to_tuples(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
        return value

    @field_validator("shard")
    @classmethod
    def _check_globs(cls, rules: tuple[ShardRule, ...]) -> tuple[ShardRule, ...]:
        problems = []
        for index, rule in enumerate(rules):
            globs = (rule,) if isinstance(rule, str) else rule
            if not globs:
                message = "an empty group selects nothing; list module globs"
                problems.append(problem("empty_group", message, (index,), []))
            for glob in globs:
                why = malformed_glob(glob)
                if why is not None:
                    problems.append(problem("bad_glob", why, (index,), glob))
        raise_problems("ParallelSpec", problems)
        return rules


def to_parallel_spec(data: Any, *, root: str = "parallel") -> ParallelSpec:
    """Validate a ``parallel`` mapping (a Hydra node too); one error lists every problem."""
    if isinstance(data, ParallelSpec):
        return data
    data = plain_data(data)
    if data is None:
        return ParallelSpec()
    if not isinstance(data, Mapping):
        raise ModelFactoryError(
            f"{root}: must be a mapping such as {{strategy: fsdp, shard: ['layers.*']}}, "
            f"found {type(data).__name__}. Pick one with parallel=none or parallel=fsdp."
        )
    try:
        return ParallelSpec.model_validate(dict(data))
    except ValidationError as err:
        problems = problems_from(err, None, root)
        raise ModelFactoryError(
            f"invalid parallel config: {len(problems)} problem(s)", problems
        ) from None
