"""Tests for terminal: escapes, bidi controls, truncation and CSV formula neutralisation."""

from __future__ import annotations

import codecs
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfactory.safety.terminal import BIDI_CONTROLS, ELLIPSIS, csv_cell, printable


def unescape(text: str) -> str:
    return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")


def test_screen_clearing_and_hiding_escapes():
    hostile = "\x1b[2J\x1b[Hok: this file is valid\x1b[8m"
    shown = printable(hostile)
    assert shown == "\\x1b[2J\\x1b[Hok: this file is valid\\x1b[8m"
    assert "\x1b" not in shown and shown.isprintable()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x00b", "a\\x00b"),
        ("tab\there", "tab\\x09here"),
        ("cr\rlf\n", "cr\\x0dlf\\x0a"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b2J", "csi\\x9b2J"),  # C1 control: a one-byte CSI on some terminals
        ("nbsp\xa0shy\xad", "nbsp\\xa0shy\\xad"),
        ("abc\u202edcba.exe", "abc\\u202edcba.exe"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone\ud800", "lone\\ud800"),
        ("back\\slash", "back\\\\slash"),
        ("caf\u00e9 \u4e2d\u6587 \U0001f600", "caf\u00e9 \u4e2d\u6587 \U0001f600"),
        ("", ""),
    ],
)
def test_escapes(raw, shown):
    assert printable(raw) == shown
    assert unescape(shown) == raw


def test_every_listed_bidi_control_is_escaped():
    for char in BIDI_CONTROLS:
        assert printable(char) == f"\\u{ord(char):04x}"
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
        assert printable(chr(code)) == f"\\x{code:02x}"


def test_truncation():
    assert printable("abcdef", 6) == "abcdef"
    assert printable("abcdefg", 6) == "abcde" + ELLIPSIS
    # never inside an escape: "\x1b" is 4 characters and does not fit after "ab"
    assert printable("ab\x1bcd", 5) == "ab" + ELLIPSIS
    assert printable("ab\x1b", 6) == "ab\\x1b"
    assert printable("\x1b" * 10, 1) == ELLIPSIS
    with pytest.raises(ValueError):
        printable("x", 0)


def test_huge_input_with_a_limit_is_cheap():
    huge = "\x1b" * 50_000_000
    start = time.perf_counter()
    shown = printable(huge, 80)
    assert time.perf_counter() - start < 0.05
    assert len(shown) <= 80 and shown.endswith(ELLIPSIS)


@pytest.mark.parametrize(
    ("raw", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\\x09=1"),
        ("\r=1", "'\\x0d=1"),
        ("\uff1dcmd", "'\uff1dcmd"),
        ("layer.0.weight", "layer.0.weight"),
        (" =1", " =1"),
        ("", ""),
        ("\x1b[31mred", "\\x1b[31mred"),
    ],
)
def test_csv_cell(raw, cell):
    assert csv_cell(raw) == cell


def test_csv_cell_limit_counts_the_quote():
    assert csv_cell("=" + "a" * 100, 10) == "'=aaaaaaa" + ELLIPSIS
    assert len(csv_cell("=" + "a" * 100, 10)) == 10
    assert csv_cell("abc", 10) == "abc"


@settings(max_examples=400, deadline=None)
@given(text=st.text(), limit=st.none() | st.integers(1, 40))
def test_output_is_printable_bounded_and_reversible(text, limit):
    shown = printable(text, limit)
    assert shown.isprintable()
    assert not any(c in BIDI_CONTROLS for c in shown)
    if limit is None:
        assert unescape(shown) == text
    else:
        assert len(shown) <= limit
        if shown.endswith(ELLIPSIS):  # cut: what is shown is a prefix of the text
            assert text.startswith(unescape(shown[:-1]))
        else:
            assert unescape(shown) == text
    cell = csv_cell(text, None if limit is None else limit + 1)
    assert cell[:1] not in set("=+-@\t\r")
