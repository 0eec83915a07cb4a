"""The data-flow checks of a forward program: every name defined before use, once, and used.

Names are single-assignment values: the composite's inputs, its constants and
learned parameters, and each step's kept results. These checks run at
validation, so a bad program never gets to build.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..errors import MAX_SUGGESTIONS, did_you_mean, listing
from ..registry import OPS
from .program import DISCARD, IDENTIFIER, Step, kept
from .validation import problem

__all__ = ["check_dataflow", "resolved_outputs"]


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
    """Names used before defined, produced twice, arity, and unused values.

    ``_`` in an ``out`` drops a value: it is never defined, so never produced
    twice nor unused, and it cannot be read. A step that keeps no single value
    (it unpacks several, or drops its result) leaves the next step without a
    default input. A value produced twice is accepted here when one of the
    producers has a ``when:`` (the expanded instance is checked again).
    """
    defined: dict[str, str] = {name: "input" for name in inputs}
    defined.update({name: "constant" for name in constants})
    named = list(defined)  # the user's own names, in order (listed in errors)
    conditional: set[str] = set()
    used: set[str] = set()
    current: str | None = inputs[0]
    for index, step in enumerate(steps):
        loc = ("forward", index)
        if step.inputs is not None:
            ins = step.inputs
        elif current is not None:
            ins = (current,)
        else:
            ins = ()
            problems.append(
                problem(
                    "no_input",
                    f"this step has no 'in' and step {index - 1} keeps no single value (it unpacks "
                    "several or drops its result); name this step's inputs with 'in'",
                    loc,
                )
            )
        for name, where in [(n, "in") for n in ins] + [(n, "kwargs") for n in step.value_refs()]:
            if name == DISCARD:
                problems.append(
                    problem(
                        "read_discard",
                        "'_' drops a value and cannot be read; name the value in 'out' to use it",
                        loc + (where,),
                        name,
                    )
                )
            elif name not in defined:
                problems.append(
                    problem(
                        "undefined_value",
                        f"{'input' if where == 'in' else 'keyword value'} '{name}' is not defined before this step.{_hint(name, defined, problems)}"
                        f" Defined so far: {listing(named)}.",
                        loc + (where,),
                        name,
                    )
                )
            used.add(name)
        if step.op is not None and step.op in OPS and (ins or current is not None):
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
        produced = kept(step, index)
        for name in produced:
            if name in defined:
                if step.when is None and name not in conditional:
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
            if step.when is not None:
                conditional.add(name)
        current = produced[0] if len(produced) == 1 else None
    if outputs is None:
        outputs = kept(steps[-1], len(steps) - 1) if steps else (inputs[0],)
        if not outputs:
            problems.append(
                problem(
                    "no_output",
                    "the last step drops its whole result ('_'), so the forward returns nothing; "
                    "name a value in its 'out' or list 'outputs'",
                    ("forward", len(steps) - 1, "out"),
                )
            )
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
    """Output value names; by default the last step's kept values (several: a tuple is returned)."""
    if outputs is not None:
        return outputs
    if not forward:
        return (inputs[0],)
    return kept(forward[-1], len(forward) - 1)
