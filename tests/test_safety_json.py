"""Tests for boundedjson: hostile JSON is refused cleanly; ordinary JSON parses as json does."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfactory.errors import CheckpointError, ModelFactoryError
from modelfactory.safety.json_bounded import json_depth, loads_bounded

WHAT = "metadata key 'modelfactory.spec' of 'model.safetensors'"


def load(text: str | bytes, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("max_bytes", 10_000_000)
    return loads_bounded(text, what=WHAT, **kw)


def refused(text: str | bytes, match: str, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelFactoryError, match=match) as info:
        load(text, **kw)
    message = str(info.value)
    assert message.startswith(WHAT + ": ")
    assert len(message) < 400
    assert info.value.__cause__ is None  # no chained json/ValueError traceback
    return message


def test_ordinary_json():
    assert load('{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": -3},
    }
    assert load(b'["\\u00e9", "\xc3\xa9"]') == ["\u00e9", "\u00e9"]


def test_100k_deep_nesting_is_refused_without_recursion():
    for text in ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000]:
        start = time.perf_counter()
        message = refused(text, r"nests arrays/objects 100000 deep \(limit 64\)")
        assert time.perf_counter() - start < 0.5
        assert "[[[" not in message


def test_depth_limit_is_exact():
    assert load("[" * 64 + "]" * 64) is not None
    refused("[" * 65 + "]" * 65, r"65 deep \(limit 64\)")
    assert load("[" * 3 + "]" * 3, max_depth=3) == [[[]]]


def test_brackets_inside_strings_do_not_count():
    text = json.dumps(["[" * 10_000, "\\" * 3 + '"' + "{" * 500, {"k[": "]]"}])
    assert json_depth(text) == 2
    assert load(text)[0] == "[" * 10_000


def test_unterminated_string_is_a_decode_error_not_a_crash():
    refused('["abc', "invalid JSON at line 1 column 2: Unterminated string")
    refused('"' + '\\"' * 200_000, "Unterminated string")  # linear, not quadratic
    refused("[" * 100_000 + '"', "100000 deep")


def test_5000_digit_integer_is_refused():
    start = time.perf_counter()
    message = refused('{"n": ' + "9" * 5000 + "}", r"an integer has 5000 digits \(limit 40\)")
    assert time.perf_counter() - start < 0.1
    assert "9" * 30 not in message
    refused("-" + "1" * 41, "41 digits")
    assert load("-" + "1" * 40) == -int("1" * 40)


def test_floats_and_constants():
    refused("1e400", "overflows to infinity")
    refused("[-1e400]", "overflows to infinity")
    refused("1." + "0" * 200, r"number literal is 202 characters")
    for token in ["NaN", "Infinity", "-Infinity"]:
        refused(f"[{token}]", f"{token} is not valid JSON")
    assert load("1.5e300") == 1.5e300


def test_size_limit_bytes_and_characters():
    refused(b"[" + b"1," * 100 + b"1]", r"is 203 bytes \(limit 100 bytes\)", max_bytes=100)
    refused("x" * 101, r"101 characters \(limit 100 bytes\)", max_bytes=100)
    refused('"' + "\u00e9" * 60 + '"', r"is 122 bytes \(limit 100 bytes\)", max_bytes=100)


def test_decode_errors_are_clean():
    message = refused('{"a": 1,}', r"invalid JSON at line 1 column 9")
    assert "Traceback" not in message
    refused(b"\xff\xfe[]", "not UTF-8")
    refused("\ufeff[]", "byte-order mark")
    refused("", "invalid JSON at line 1 column 1")


def test_duplicate_keys():
    refused('{"a": 1, "b": 2, "a": 3}', "the key 'a' appears twice")
    assert load('{"a": 1, "a": 3}', allow_duplicate_keys=True) == {"a": 3}


def test_caller_chooses_the_error_class_and_what_is_clipped():
    with pytest.raises(CheckpointError) as info:
        loads_bounded("[", max_bytes=10, what="x\x1b[2J" + "y" * 500, error=CheckpointError)
    message = str(info.value)
    assert "\x1b" not in message and "\\x1b[2J" in message
    assert len(message) < 300


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{}\n\u00e9\u202e'), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='k"\\[{', max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 1]))
def test_prescan_depth_and_result_match_json(value, indent):
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    assert json_depth(text) == depth_of(value)
    assert load(text) == json.loads(text)
