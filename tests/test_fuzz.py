"""Property test: mutated zoo specs give a valid model or a located ModelFactoryError, nothing else.

Profiles (``MF_FUZZ_PROFILE``): ``ci`` (300 examples, the default) and ``long``
(5,000): ``MF_FUZZ_PROFILE=long python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from conftest import CONF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelfactory as mf
from modelfactory import limits
from modelfactory.spec.validate import to_spec
from modelfactory.spec.yaml_reader import load_yaml_file

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile(os.environ.get("MF_FUZZ_PROFILE", "ci"))

# big_mlp is left out: every valid mutation of it would allocate 134M parameters.
ZOO = {
    p.stem: load_yaml_file(p).data
    for p in sorted((CONF / "model").glob("*.yaml"))
    if p.stem != "big_mlp"
}

Path = tuple[Any, ...]


def paths(data: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value inside ``data`` (the root itself excluded)."""
    out: list[Path] = []
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else ()
    )
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(paths(value, prefix + (key,)))
    return out


def get(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


NUMBERS = st.sampled_from(["negate", "huge", "float", "zero", "enormous"])
VALUES = st.sampled_from(
    ["ReLU", "Lineer", 0, -1, 1.5, None, True, [], {}, "x", [1, 2], {"type": 1}]
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(ZOO)))
    data = copy.deepcopy(ZOO[name])
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(data)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = get(data, path[:-1]), path[-1]
        value = parent[key]
        op = draw(st.sampled_from(["drop", "duplicate", "retype", "rename", "number"]))
        if op == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            how = draw(NUMBERS)
            parent[key] = {
                "negate": -value,
                "huge": value * 10**9 + 1,
                "float": value + 0.5,
                "zero": 0,
                "enormous": 10**40,
            }[how]
        elif op == "drop":
            del parent[key]
        elif op == "duplicate":
            if isinstance(parent, list):
                parent.insert(key, copy.deepcopy(value))
            else:
                parent[f"{key}_copy"] = copy.deepcopy(value)
        elif op == "rename" and isinstance(parent, dict):
            new = draw(
                st.sampled_from([str(key)[:-1], str(key) + "s", str(key).upper(), "_target_", "1"])
            )
            parent[new] = parent.pop(key)
        else:
            parent[key] = copy.deepcopy(draw(VALUES))  # never mutate the shared sample
    return name, data


@PROFILE
@given(case=mutated())
def test_mutations_give_a_model_or_a_located_error(case):
    name, data = case
    with limits.budget(max_parameters=2_000_000, max_modules=5_000):
        try:
            spec = to_spec(data, block_dir=CONF / "block")
            mf.build(spec)
        except mf.ModelFactoryError as err:
            assert err.problems or "a model spec must be a mapping" in str(err), (name, str(err))
            for problem in err.problems:
                assert problem.path and problem.path != "<root>" or "input" in problem.message, (
                    name,
                    str(err),
                )
