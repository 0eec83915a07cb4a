"""The pickle layer of the ``.pt`` scanner: an abstract walk of ``data.pkl`` that builds nothing.

Opcodes are decoded by :func:`pickletools.genops`; only each value's nesting
depth is tracked, with counts of opcodes and open marks and the storage bytes
that persistent ids declare.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import NoReturn

from .common import (
    _INT64_MAX,
    _TYPED_MODULES,
    _UNTYPED_MODULES,
    ELEMENT_SIZES,
    RAISE_LIMIT,
    RESAVE,
    Refuse,
    refuse,
    short,
)

# The abstract values on the walker's stack and in its memo:
#
# * ``bytearray([depth % 256, depth // 256, placed])``: a container or object the
#   pickle builds, by identity (memo copies share it), holding only its nesting
#   depth and whether it has been put inside another container. A bytearray is
#   not tracked by the cyclic garbage collector (an object with slots, or an
#   array.array, is), and the collector otherwise dominates the cost of a pickle
#   that pushes a few hundred thousand empty containers;
# * a ``tuple`` of at most 8 atoms: a small tuple kept whole (depth 1), which is
#   what a persistent id ``('storage', cls, key, location, numel)`` is;
# * atoms ``int``, ``str``, ``_Global`` (depth 0), and ``_LEAF`` for everything
#   else that cannot nest (None, bools, floats, bytes, storages, buffers).
_NODE = bytearray((1, 0, 0))  # copied for each new container: depth 1, not placed
_MAX_DEPTH_LIMIT = 60_000  # depths are stored in two bytes
_SMALL_TUPLE = 8


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _Sentinel:
    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


_LEAF = _Sentinel("<leaf>")  # None, bools, floats, bytes, buffers, storages, ...

_ATOM_TYPES = (int, str, _Global)
_INT_OPS = frozenset({"BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_STR_OPS = frozenset({"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})
_LEAF_OPS = frozenset(
    {
        "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
        "BYTEARRAY8", "NEXT_BUFFER", "NONE", "NEWTRUE", "NEWFALSE", "FLOAT", "BINFLOAT",
        "EXT1", "EXT2", "EXT4",
    }
)  # fmt: skip
_EMPTY_OPS = frozenset({"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"})
_FROM_MARK_OPS = frozenset({"LIST", "DICT", "FROZENSET", "TUPLE", "INST", "OBJ"})
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CALL_N = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}
_MUTATE_ONE = {"APPEND": 1, "SETITEM": 2, "BUILD": 1}
_MUTATE_MARK = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NOOP_OPS = frozenset({"PROTO", "FRAME"})


(
    _K_PUT, _K_ATOM, _K_GET, _K_MARK, _K_LEAF, _K_TUPLE_N, _K_FROM_MARK, _K_CALL, _K_MUTATE_MARK,
    _K_MUTATE_ONE, _K_EMPTY, _K_INT, _K_GLOBAL, _K_STACK_GLOBAL, _K_BINPERSID, _K_PERSID,
    _K_MEMOIZE, _K_POP, _K_POP_MARK, _K_DUP, _K_KEEP_TOP, _K_NOOP, _K_STOP,
) = range(23)  # fmt: skip
_KINDS: dict[str, int] = {
    **{n: _K_PUT for n in _PUT_OPS},
    **{n: _K_ATOM for n in _INT_OPS | _STR_OPS},
    **{n: _K_GET for n in _GET_OPS},
    "MARK": _K_MARK,
    **{n: _K_LEAF for n in _LEAF_OPS},
    **{n: _K_TUPLE_N for n in _TUPLE_N},
    **{n: _K_FROM_MARK for n in _FROM_MARK_OPS},
    **{n: _K_CALL for n in _CALL_N},
    **{n: _K_MUTATE_MARK for n in _MUTATE_MARK},
    **{n: _K_MUTATE_ONE for n in _MUTATE_ONE},
    **{n: _K_EMPTY for n in _EMPTY_OPS | {"EMPTY_TUPLE"}},
    "INT": _K_INT,
    "GLOBAL": _K_GLOBAL,
    "STACK_GLOBAL": _K_STACK_GLOBAL,
    "BINPERSID": _K_BINPERSID,
    "PERSID": _K_PERSID,
    "MEMOIZE": _K_MEMOIZE,
    "POP": _K_POP,
    "POP_MARK": _K_POP_MARK,
    "DUP": _K_DUP,
    "READONLY_BUFFER": _K_KEEP_TOP,
    **{n: _K_NOOP for n in _NOOP_OPS},
    "STOP": _K_STOP,
}
_MISSING = _Sentinel("<missing>")


HANDLED_OPCODES = frozenset(_KINDS)


def _storage_element_size(cls: object) -> int | None:
    if type(cls) is not _Global:
        return None
    if cls.name == "UntypedStorage" and cls.module in _UNTYPED_MODULES:
        return 1  # numel counts bytes
    if cls.module in _TYPED_MODULES:
        return ELEMENT_SIZES.get(cls.name)
    return None


class _PickleWalker:
    """Walks ``pickletools.genops`` keeping an abstract stack and memo; builds nothing real."""

    def __init__(self, *, max_opcodes: int, max_depth: int, max_storage_bytes: int) -> None:
        if not 0 <= max_depth <= _MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be between 0 and {_MAX_DEPTH_LIMIT}")
        self.max_opcodes = max_opcodes
        self.max_depth = max_depth
        self.max_storage_bytes = max_storage_bytes
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.storages: dict[str, int] = {}
        self.storage_total = 0
        self.opcodes = 0
        self.deepest = 0
        self.most_marks = 0
        self.position = 0

    # ---- helpers
    def malformed(self, what: str) -> NoReturn:
        refuse(f"data.pkl is malformed at byte {self.position}: {what}", RESAVE)

    def pop(self) -> object:
        if not self.stack or (self.marks and self.marks[-1] == len(self.stack)):
            self.malformed("a value is popped from an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list[object]:
        if not self.marks:
            self.malformed("an opcode needs a MARK but none is open")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> object:
        if not self.stack or (self.marks and self.marks[-1] == len(self.stack)):
            self.malformed("an opcode needs a value but the stack is empty")
        return self.stack[-1]

    def new_node(self, children: list[object], *, is_tuple: bool = False) -> object:
        """The value a tuple/list/dict/call opcode builds from ``children``."""
        if (
            is_tuple
            and len(children) <= _SMALL_TUPLE
            and all(type(c) in _ATOM_TYPES for c in children)
        ):
            if self.deepest < 1:
                self.check_depth(1)
            return tuple(children)
        depth = 1
        for child in children:
            kind = type(child)
            if kind is bytearray:
                child[2] = 1  # type: ignore[index]
                inner = child[0] | child[1] << 8  # type: ignore[index]
                if inner >= depth:
                    depth = inner + 1
            elif kind is tuple and depth < 2:
                depth = 2
        self.check_depth(depth)
        return bytearray((depth & 0xFF, depth >> 8, 0))

    def check_depth(self, depth: int) -> None:
        if depth > self.deepest:
            self.deepest = depth
            if depth > self.max_depth:
                refuse(
                    f"data.pkl nests containers more than {self.max_depth} deep (found depth "
                    f"{depth} at byte {self.position}); a state_dict is a few levels deep",
                    RESAVE + " " + RAISE_LIMIT,
                )

    def mutate(self, target: object, children: list[object]) -> None:
        """Account for APPEND(S), SETITEM(S), ADDITEMS or BUILD on ``target``."""
        if type(target) is not bytearray:
            return  # appending to an int or a tuple fails in torch.load itself
        if target[2] or any(child is target for child in children):
            refuse(
                f"data.pkl changes a container after putting it inside another (byte "
                f"{self.position}): a cyclic or hand-crafted pickle",
                RESAVE,
            )
        depth = target[0] | target[1] << 8
        for child in children:
            kind = type(child)
            if kind is bytearray:
                child[2] = 1  # type: ignore[index]
                inner = child[0] | child[1] << 8  # type: ignore[index]
                if inner >= depth:
                    depth = inner + 1
            elif kind is tuple and depth < 2:
                depth = 2
        self.check_depth(depth)
        target[0], target[1] = depth & 0xFF, depth >> 8

    def storage(self, pid: object) -> None:
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            self.refuse_pid(pid)
        _kind, cls, key, location, numel = pid
        size = _storage_element_size(cls)
        if size is None:
            refuse(
                f"data.pkl declares a storage of unknown class {short(cls)} (byte {self.position})",
                RESAVE,
            )
        if (
            type(key) is not str
            or type(location) is not str
            or type(numel) is not int
            or not 0 <= numel <= _INT64_MAX
        ):
            refuse(
                f"data.pkl declares a storage with a malformed key, location or size "
                f"({short(key)}, {short(location)}, {short(numel)}; byte {self.position})",
                RESAVE,
            )
        nbytes = numel * size
        known = self.storages.get(key)
        if known is None:
            self.storages[key] = nbytes
            self.storage_total += nbytes
            if self.storage_total > self.max_storage_bytes:
                refuse(
                    f"data.pkl declares more than {self.max_storage_bytes} bytes of tensor "
                    f"storage (storage {short(key)} alone declares {nbytes})",
                    RAISE_LIMIT,
                )
        elif known != nbytes:
            refuse(
                f"data.pkl declares storage {short(key)} once as {known} and once as "
                f"{nbytes} bytes",
                RESAVE,
            )

    def refuse_pid(self, pid: object) -> NoReturn:
        shown = "a container" if type(pid) is bytearray else pid
        refuse(
            f"data.pkl has a persistent id that is not a ('storage', class, key, location, "
            f"numel) tuple: {short(shown)} (byte {self.position})",
            RESAVE,
        )

    # ---- main loop
    def walk(self, data: bytes) -> None:
        """Walk the pickle to its STOP, refusing at the first finding."""
        stack = self.stack
        push = stack.append
        marks = self.marks
        memo = self.memo
        kinds = _KINDS
        max_opcodes = self.max_opcodes
        count = 0
        try:
            for op, arg, pos in pickletools.genops(data):
                count += 1
                self.position = pos or 0
                if count > max_opcodes:
                    self.opcodes = count
                    refuse(f"data.pkl has more than {max_opcodes} pickle opcodes", RAISE_LIMIT)
                kind = kinds[op.name]
                if kind == _K_PUT:
                    if not stack or (marks and marks[-1] == len(stack)):
                        self.malformed("a memo write finds the stack empty")
                    memo[arg] = stack[-1]  # type: ignore[index]  # genops: an int
                elif kind == _K_ATOM:
                    push(arg)
                elif kind == _K_GET:
                    value = memo.get(arg, _MISSING)  # type: ignore[arg-type]  # an int
                    if value is _MISSING:
                        self.malformed(f"memo entry {short(arg)} is read before it is written")
                    push(value)
                elif kind == _K_MARK:
                    marks.append(len(stack))
                    if len(marks) > self.most_marks:
                        self.most_marks = len(marks)
                        if self.most_marks > self.max_depth:
                            refuse(
                                f"data.pkl opens more than {self.max_depth} nested MARKs "
                                f"(byte {self.position})",
                                RESAVE + " " + RAISE_LIMIT,
                            )
                elif kind == _K_LEAF:
                    push(_LEAF)
                elif kind == _K_TUPLE_N:
                    n = _TUPLE_N[op.name]
                    items = [self.pop() for _ in range(n)][::-1]
                    push(self.new_node(items, is_tuple=True))
                elif kind == _K_FROM_MARK:
                    items = self.pop_mark()
                    push(self.new_node(items, is_tuple=op.name == "TUPLE"))
                elif kind == _K_CALL:
                    items = [self.pop() for _ in range(_CALL_N[op.name])]
                    push(self.new_node(items))
                elif kind == _K_MUTATE_MARK:
                    items = self.pop_mark()
                    self.mutate(self.top(), items)
                elif kind == _K_MUTATE_ONE:
                    items = [self.pop() for _ in range(_MUTATE_ONE[op.name])]
                    self.mutate(self.top(), items)
                elif kind == _K_EMPTY:
                    if not self.deepest:
                        self.check_depth(1)
                    push(() if op.name == "EMPTY_TUPLE" else _NODE[:])
                elif kind == _K_INT:
                    push(_LEAF if isinstance(arg, bool) else arg)  # INT "01" is True
                elif kind == _K_GLOBAL:
                    module, _, attr = str(arg).partition(" ")
                    push(_Global(module, attr))
                elif kind == _K_STACK_GLOBAL:
                    top_name = self.pop()
                    top_module = self.pop()
                    if isinstance(top_module, str) and isinstance(top_name, str):
                        push(_Global(top_module, top_name))
                    else:
                        push(_LEAF)
                elif kind == _K_BINPERSID:
                    self.storage(self.pop())
                    push(_LEAF)
                elif kind == _K_PERSID:
                    self.refuse_pid(arg)
                elif kind == _K_MEMOIZE:
                    memo[len(memo)] = self.top()
                elif kind == _K_POP:
                    if stack and not (marks and marks[-1] == len(stack)):
                        stack.pop()
                    else:
                        self.pop_mark()
                elif kind == _K_POP_MARK:
                    self.pop_mark()
                elif kind == _K_DUP:
                    push(self.top())
                elif kind == _K_KEEP_TOP:
                    self.top()
                elif kind == _K_NOOP:
                    pass
                elif kind == _K_STOP:
                    self.opcodes = count
                    if len(stack) != 1 or marks:
                        self.malformed("STOP is reached with other than one value on the stack")
                    return
        except Refuse:
            self.opcodes = count
            raise
        except (ValueError, UnicodeDecodeError, OverflowError, IndexError, TypeError) as err:
            # genops' own decoding errors: truncated data, bad opcode bytes, ...
            refuse(f"data.pkl is not a valid pickle: {short(str(err))}", RESAVE)
        except KeyError as err:  # pragma: no cover - HANDLED_OPCODES is checked by a test
            refuse(f"data.pkl uses the unsupported opcode {short(str(err))}", RESAVE)
        self.malformed("the pickle ends without STOP")  # pragma: no cover - genops raises first
