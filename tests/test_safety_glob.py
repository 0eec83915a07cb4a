"""Tests for globmatch: agrees with the recursive reference, and stays fast on hostile patterns."""

from __future__ import annotations

import fnmatch
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfactory.safety.globs import path_glob_match


def ref(pattern: str, path: str) -> bool:
    def m(p, s):  # type: ignore[no-untyped-def]
        if not p:
            return not s
        if p[0] == "**":
            return any(m(p[1:], s[i:]) for i in range(len(s) + 1))
        return bool(s) and fnmatch.fnmatchcase(s[0], p[0]) and m(p[1:], s[1:])

    return m(
        tuple(pattern.split(".")) if pattern else (),
        tuple(path.split(".")) if path else (),
    )


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("encoder.**.weight", "encoder.weight", True),
        ("encoder.**.weight", "encoder.0.attn.weight", True),
        ("encoder.**.weight", "decoder.0.weight", False),
        ("encoder.*.weight", "encoder.weight", False),
        ("encoder.*.weight", "encoder.0.weight", True),
        ("**", "", True),
        ("**", "a.b", True),
        ("", "", True),
        ("", "a", False),
        ("*", "", False),
        ("*", "a", True),
        ("a.*", "a.", True),  # an empty segment
        ("layer[12].w?", "layer1.wx", True),
        ("layer[12].w?", "layer3.wx", False),
        ("a.**.b.**.c", "a.x.b.y.z.c", True),
        ("a.**.b.**.c", "a.x.c.b", False),
        ("[", "[", True),
    ],
)
def test_examples(pattern, path, expected):
    assert path_glob_match(pattern, path) is expected
    assert ref(pattern, path) is expected


segment = st.sampled_from(["a", "b", "ab", "", "*", "**", "?", "a*", "*b", "[ab]", "[!a]", "["])
path_segment = st.sampled_from(["a", "b", "ab", "ba", "", "[", "aab"])


@settings(max_examples=1500, deadline=None)
@given(
    pattern=st.lists(segment, max_size=6).map(".".join),
    path=st.lists(path_segment, max_size=6).map(".".join),
)
def test_equals_the_recursive_reference(pattern, path):
    assert path_glob_match(pattern, path) == ref(pattern, path)


def test_3000_globstars_are_fast():
    pattern = ".".join(["**"] * 3000 + ["x"])
    path = ".".join(["a"] * 3000)
    start = time.perf_counter()
    assert path_glob_match(pattern, path) is False
    assert path_glob_match(pattern, path + ".x") is True
    elapsed = time.perf_counter() - start
    print(f"\n3,000 '**' segments vs 3,000-segment path: {elapsed * 1000:.2f} ms")
    assert elapsed < 0.1


def test_alternating_globstars_and_wildcards_are_fast():
    # no two '**' are adjacent, so none collapse: 3,000 real DP rows of 3,001 bits
    pattern = ".".join(["**", "a*"] * 1500 + ["x"])
    path = ".".join(["ab"] * 3000)
    start = time.perf_counter()
    assert path_glob_match(pattern, path) is False
    assert path_glob_match(pattern, path + ".x") is True
    distinct = ".".join(f"**.a{i}*" for i in range(1500))  # 1,500 distinct wildcard segments
    assert path_glob_match(distinct, path) is False
    elapsed = time.perf_counter() - start
    print(f"\n3,000-segment alternating patterns vs 3,000-segment path: {elapsed * 1000:.2f} ms")
    assert elapsed < 1.0


def test_no_recursion_limit():
    depth = sys.getrecursionlimit() * 5
    assert path_glob_match(".".join(["*"] * depth), ".".join(["a"] * depth)) is True
