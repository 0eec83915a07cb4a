"""Match dotted paths against glob patterns with ``*`` and ``**`` segments, without recursion.

``pattern`` and ``path`` are split on ``.`` into segments (an empty string has
none). A pattern segment ``**`` matches any number of path segments, zero
included; any other segment matches exactly one path segment with
:func:`fnmatch.fnmatchcase` (so ``*``, ``?`` and ``[...]`` work inside it).
``encoder.**.weight`` matches ``encoder.weight`` and ``encoder.0.attn.weight``.

The naive recursive matcher backtracks exponentially on patterns such as
``**.**.**...x`` and overflows the stack on long ones. This one runs the
standard wildcard dynamic programme over segments, with the set of matched
path prefixes held as the bits of one Python integer: a plain segment is a
shift and a mask (the mask of path positions it matches is computed once per
distinct segment), ``**`` is "every position from the lowest matched one on".
Cost: O(len(pattern) * len(path) / 64) word operations, plus one ``fnmatch``
per distinct wildcard segment and path segment.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

__all__ = ["path_glob_match", "split_segments"]

_WILDCARD_CHARS = frozenset("*?[")


def split_segments(text: str) -> tuple[str, ...]:
    """``"a.b.c"`` -> ``("a", "b", "c")``; ``""`` -> ``()``."""
    return tuple(text.split(".")) if text else ()


def path_glob_match(pattern: str, path: str) -> bool:
    """Whether dotted ``path`` matches ``pattern`` (``*`` within a segment, ``**`` across)."""
    pat = split_segments(pattern)
    segs = split_segments(path)
    n = len(segs)
    everything = (1 << (n + 1)) - 1  # bit j: the first j path segments are matched
    tail = everything & ~1  # positions 1..n: "one more segment matched"
    by_name: dict[str, int] = {}
    for j, seg in enumerate(segs, start=1):
        by_name[seg] = by_name.get(seg, 0) | (1 << j)
    masks: dict[str, int] = {}
    state = 1  # the empty prefix of the pattern matches the empty prefix of the path
    previous_was_globstar = False
    for segment in pat:
        if segment == "**":
            if previous_was_globstar:  # "**.**" is the same as "**"
                continue
            previous_was_globstar = True
            lowest = state & -state
            state = everything & ~(lowest - 1) if state else 0
        else:
            previous_was_globstar = False
            mask = masks.get(segment)
            if mask is None:
                if segment == "*":
                    mask = tail
                elif _WILDCARD_CHARS.isdisjoint(segment):
                    mask = by_name.get(segment, 0)
                else:
                    mask = 0
                    for name, bits in by_name.items():
                        if fnmatchcase(name, segment):
                            mask |= bits
                masks[segment] = mask
            state = (state << 1) & mask
        if not state:
            return False
    return bool(state >> n & 1)
