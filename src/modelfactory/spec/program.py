"""A composite's forward program: its steps, and the checks that make it a valid data-flow graph.

Names are single-assignment values: the composite's inputs, its constants,
and each step's result. Every name is defined before use and every value is
used; these checks run at validation, so a bad program never gets to build.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any

from pydantic import Field, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from ..errors import MAX_SUGGESTIONS, did_you_mean, listing
from ..registry import OPS
from .validation import Frozen, Scope, problem, split_flat, validate_arguments

__all__ = [
    "IDENTIFIER",
    "Step",
    "ValueName",
    "ParamPath",
    "ChildName",
    "classify_step",
    "check_dataflow",
    "resolved_outputs",
]

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Step(Frozen):
    """One forward step: call a child, or apply a registered op.

    ``in`` names the step's inputs (default: the previous step's output) and
    ``out`` names its result (default: anonymous, consumed by the next step).
    Op arguments are written flat beside ``op``.
    """

    call: str | None = None
    op: str | None = None
    inputs: tuple[str, ...] | None = Field(default=None, alias="in")
    out: str | tuple[str, ...] | None = None  # a list unpacks a tuple-valued result
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _flatten(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, str):
            # A bare name: the composite decides whether it is a child or an op.
            data = {"call": data}
        elif isinstance(data, dict) and "op" in data:
            data = split_flat(data, ("op", "in", "out", "inputs"))
        if isinstance(data, dict) and isinstance(data.get("in"), str):
            data = {**data, "in": [data["in"]]}
        if isinstance(data, dict) and isinstance(data.get("out"), list):
            data = {**data, "out": tuple(data["out"])}
        step = handler(data)
        if (step.call is None) == (step.op is None):
            raise PydanticCustomError(
                "step_kind",
                "a step needs exactly one of 'call' (a child) or 'op' (a registered op)",
            )
        return step

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = (
            {"call": self.call} if self.call is not None else {"op": self.op, **self.args}
        )
        if self.inputs is not None:
            out["in"] = list(self.inputs)
        if self.out is not None:
            out["out"] = list(self.out) if isinstance(self.out, tuple) else self.out
        return out


ValueName = Annotated[str, Field(pattern=IDENTIFIER.pattern)]
# A parameter's state_dict name, e.g. "head.weight" or "0.block 1.2.bias".
ParamPath = Annotated[str, Field(pattern=r"^[^.]+(\.[^.]+)*$")]
ChildName = Annotated[str, Field(min_length=1, pattern=r"^[^.]+$")]


def classify_step(
    children: Collection[str], index: int, step: Step, problems: list[dict[str, Any]], scope: Scope
) -> Step:
    """Resolve a bare step name to a child call or an argument-less op."""
    loc = ("forward", index)
    if step.call is not None:
        if step.call in children:
            return step
        if step.call in OPS:
            return step.model_copy(update={"call": None, "op": step.call})
        known = list(children) + OPS.names()
        problems.append(
            problem(
                "unknown_step",
                f"unknown child or op '{step.call}' in forward step.{did_you_mean(step.call, known)}"
                f" Children: {', '.join(children) or 'none'}.",
                loc,
                step.call,
            )
        )
        return step
    assert step.op is not None  # guaranteed by Step._flatten
    if step.op not in OPS:
        problems.append(problem("unknown_op", OPS.unknown_message(step.op), loc + ("op",), step.op))
        return step
    clean, found = validate_arguments(
        OPS.get(step.op).args_model, step.args, f"op {step.op}", scope=scope
    )
    problems.extend(p | {"loc": loc + tuple(p["loc"])} for p in found)
    return step.model_copy(update={"args": clean})


def _hint(name: str, defined: Collection[str], problems: list[dict[str, Any]]) -> str:
    # suggestions for the problems that will be shown; past those, no more work
    return did_you_mean(name, defined) if len(problems) < MAX_SUGGESTIONS else ""


def check_dataflow(
    inputs: tuple[str, ...],
    constants: Collection[str],
    outputs: tuple[str, ...] | None,
    steps: tuple[Step, ...],
    problems: list[dict[str, Any]],
) -> None:
    """Names used before defined, produced twice, arity, and unused values."""
    defined: dict[str, str] = {name: "input" for name in inputs}
    defined.update({name: "constant" for name in constants})
    named = list(defined)  # the user's own names, in order (listed in errors)
    used: set[str] = set()
    current = inputs[0]
    for index, step in enumerate(steps):
        loc = ("forward", index)
        ins = step.inputs if step.inputs is not None else (current,)
        for name in ins:
            if name not in defined:
                problems.append(
                    problem(
                        "undefined_value",
                        f"input '{name}' is not defined before this step.{_hint(name, defined, problems)}"
                        f" Defined so far: {listing(named)}.",
                        loc + ("in",),
                        name,
                    )
                )
            used.add(name)
        if step.op is not None:
            entry = OPS.get(step.op)
            arity, least = entry.arity, entry.min_arity
            if least is None:
                least = arity
            if arity is not None and least is not None and not least <= len(ins) <= arity:
                takes = str(arity) if least == arity else f"{least} to {arity}"
                problems.append(
                    problem(
                        "arity",
                        f"op '{step.op}' takes {takes} input(s), found {len(ins)}: {list(ins)}",
                        loc + ("in",),
                    )
                )
        if step.out is None:
            produced: tuple[str, ...] = (f"%{index}",)
        else:
            produced = step.out if isinstance(step.out, tuple) else (step.out,)
        for name in produced:
            if name in defined:
                problems.append(
                    problem(
                        "produced_twice",
                        f"value '{name}' is already defined (as {defined[name]}); names are single-assignment",
                        loc + ("out",),
                        name,
                    )
                )
            elif step.out is not None and not IDENTIFIER.match(name):
                problems.append(
                    problem(
                        "bad_name",
                        f"value name {name!r} must be an identifier",
                        loc + ("out",),
                        name,
                    )
                )
            if name not in defined:
                named.append(name)
            defined[name] = f"output of step {index}"
        current = produced[0] if len(produced) == 1 else f"%{index}"
        if len(produced) > 1:
            # an unpacked result has no single "current" value for the next step
            defined.setdefault(current, f"output of step {index}")
            used.add(current)
    outputs = outputs if outputs is not None else (current,)
    for name in outputs:
        if name not in defined:
            problems.append(
                problem(
                    "undefined_value",
                    f"output '{name}' is never produced.{_hint(name, defined, problems)}",
                    ("outputs",),
                    name,
                )
            )
        used.add(name)
    for name, origin in defined.items():
        if name not in used and origin != "constant":
            label = name if not name.startswith("%") else f"the result of step {name[1:]}"
            problems.append(
                problem(
                    "unused_value",
                    f"{label} ({origin}) is never used; use it or remove it",
                    ("forward",),
                )
            )


def resolved_outputs(
    inputs: tuple[str, ...], forward: tuple[Step, ...], outputs: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Output value names, with the default (the last step's result) filled in."""
    if outputs is not None:
        return outputs
    if not forward:
        return (inputs[0],)
    last = forward[-1]
    if last.out is None:
        return (f"%{len(forward) - 1}",)
    return last.out if isinstance(last.out, tuple) else (last.out,)
