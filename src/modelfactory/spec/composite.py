"""The composite node: named children, constants, learned parameters and a forward program.

Its program is checked as a whole here (names, steps, data flow; see
:mod:`.program`). When a child or constant fails to validate, the program is
still checked from the raw names, so one broken part hides no other problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo, model_validator

from .dataflow import check_dataflow, resolved_outputs
from .program import IDENTIFIER, ChildName, Step, ValueName, classify_step
from .tensors import ConstantSpec, ParameterSpec
from .validation import (
    Frozen,
    Scope,
    When,
    mapping_keys,
    problem,
    raise_problems,
    raise_with,
    scope_of,
    when_problems,
)

if TYPE_CHECKING:
    from .nodes import Node

__all__ = ["CompositeNode", "program_problems"]


class CompositeNode(Frozen):
    """A module with named children, constants, learned parameters and an explicit forward program.

    Printed with ``name`` (or its block's name) as the class name, e.g. ``NestMLP(...)``.
    Without ``forward``, the children are called in order, like a Sequential.
    """

    name: Annotated[str, Field(pattern=IDENTIFIER.pattern)] | None = None
    inputs: tuple[ValueName, ...] = Field(default=("x",), min_length=1)
    children: dict[ChildName, Node] = Field(default_factory=dict)
    constants: dict[ValueName, ConstantSpec] = Field(default_factory=dict)
    parameters: dict[ValueName, ParameterSpec] = Field(
        default_factory=dict,
        exclude_if=lambda value: not value,
        description="learned tensors (nn.Parameter) under exactly these names",
    )
    forward: tuple[Step, ...] | None = None
    outputs: tuple[str, ...] | None = None
    when: When = None

    @model_validator(mode="wrap")
    @classmethod
    def _check_program(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(data, CompositeNode):
            return data
        try:
            node = handler(data)
        except ValidationError as err:
            # A child (or constant) that failed must not hide the program's own problems.
            partial = _partial_program_problems(data, info)
            raise_with("CompositeNode", err, partial)
        steps, problems = program_problems(
            node.children,
            set(node.constants),
            set(node.parameters),
            node.inputs,
            node.forward,
            node.outputs,
            scope_of(info),
        )
        raise_problems("CompositeNode", when_problems(node.when, info) + problems)
        object.__setattr__(node, "forward", steps)
        return node

    def resolved_outputs(self) -> tuple[str, ...]:
        """Output value names, with the default (the last step's result) filled in."""
        assert self.forward is not None  # filled in by validation
        return resolved_outputs(self.inputs, self.forward, self.outputs)


def program_problems(
    children: Mapping[str, Any],
    constants: set[str],
    parameters: set[str],
    inputs: tuple[str, ...],
    forward: tuple[Step, ...] | None,
    outputs: tuple[str, ...] | None,
    scope: Scope,
) -> tuple[tuple[Step, ...], list[dict[str, Any]]]:
    """A composite's program, classified, and every problem of it (names, steps, data flow)."""
    problems: list[dict[str, Any]] = []
    for name in sorted(set(children) & constants):
        problems.append(
            problem("name_clash", f"'{name}' is both a child and a constant", ("constants", name))
        )
    for name in sorted(parameters & (set(children) | constants)):
        problems.append(
            problem(
                "name_clash",
                f"parameter '{name}' clashes with a child or constant name",
                ("parameters", name),
            )
        )
    for name in sorted(set(inputs) & (set(children) | constants | parameters)):
        problems.append(
            problem(
                "name_clash",
                f"input '{name}' clashes with a child or constant name",
                ("inputs",),
            )
        )
    if forward is None and not children:
        problems.append(
            problem("empty_composite", "a composite needs 'children', 'forward' or both")
        )
        return (), problems
    steps = forward if forward is not None else tuple(Step(call=c) for c in children)
    steps = tuple(classify_step(children, i, s, problems, scope) for i, s in enumerate(steps))
    check_dataflow(inputs, constants | parameters, outputs, steps, problems)
    return steps, problems


_STEPS: TypeAdapter[tuple[Step, ...]] = TypeAdapter(tuple[Step, ...])
_NAMES: TypeAdapter[tuple[ValueName, ...]] = TypeAdapter(tuple[ValueName, ...])


def _partial_program_problems(data: Any, info: ValidationInfo) -> list[dict[str, Any]]:
    """The program's problems from raw data, when some other part of the composite failed."""
    if not isinstance(data, dict) or not isinstance(data.get("children", {}), dict):
        return []
    try:
        inputs = _NAMES.validate_python(data.get("inputs", ("x",))) or ("x",)
        raw_steps = data.get("forward")
        forward = (
            None if raw_steps is None else _STEPS.validate_python(raw_steps, context=info.context)
        )
        raw_outputs = data.get("outputs")
        outputs = None if raw_outputs is None else _NAMES.validate_python(raw_outputs)
    except ValidationError:
        return []  # those parts' own errors are already reported
    children = {k: None for k in mapping_keys(data.get("children"))}
    _, problems = program_problems(
        children,
        set(mapping_keys(data.get("constants"))),
        set(mapping_keys(data.get("parameters"))),
        inputs,
        forward,
        outputs,
        scope_of(info),
    )
    return problems
