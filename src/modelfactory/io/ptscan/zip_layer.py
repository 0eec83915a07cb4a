"""The zip layer of the ``.pt`` scanner: end records, member names, sizes and ratios, checked before zipfile reads."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from .common import (
    _EOCD,
    _EOCD_SIG,
    _LOCAL_HEADER,
    _MAX_COMMENT,
    _Z64_EOCD,
    _Z64_EOCD_SIG,
    _Z64_LOCATOR,
    _Z64_LOCATOR_SIG,
    _ZIP_MAGIC,
    MIB,
    RAISE_LIMIT,
    RESAVE,
    refuse,
    short,
)


@dataclass(frozen=True)
class _EndRecord:
    entries: int
    cd_size: int
    cd_offset: int


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _end_record(f: BinaryIO, file_size: int) -> _EndRecord:
    """Parse the end-of-central-directory records the way :mod:`zipfile` finds them."""
    if file_size < _EOCD.size:
        refuse(f"the file is {file_size} bytes, too short for a zip archive", RESAVE)
    eocd_pos = file_size - _EOCD.size
    data = _read_at(f, eocd_pos, _EOCD.size)
    if not (data[:4] == _EOCD_SIG and data[-2:] == b"\x00\x00"):
        # a trailing comment: zipfile takes the last signature in the last 64 KiB
        tail_start = max(file_size - _MAX_COMMENT - _EOCD.size, 0)
        tail = _read_at(f, tail_start, file_size - tail_start)
        found = tail.rfind(_EOCD_SIG)
        if found < 0 or len(tail) - found < _EOCD.size:
            refuse("no zip end-of-central-directory record was found", RESAVE)
        eocd_pos = tail_start + found
        data = tail[found : found + _EOCD.size]
    _sig, disk, disk_cd, _n_disk, entries, cd_size, cd_offset, _comment = _EOCD.unpack(data)
    location_adjust = 0
    if eocd_pos >= _Z64_LOCATOR.size:
        loc = _read_at(f, eocd_pos - _Z64_LOCATOR.size, _Z64_LOCATOR.size)
        if loc[:4] == _Z64_LOCATOR_SIG:
            rec_pos = eocd_pos - _Z64_LOCATOR.size - _Z64_EOCD.size
            if rec_pos < 0:
                refuse("a zip64 locator has no zip64 end record before it", RESAVE)
            rec = _read_at(f, rec_pos, _Z64_EOCD.size)
            if rec[:4] != _Z64_EOCD_SIG:
                refuse("a zip64 locator has no zip64 end record before it", RESAVE)
            (_s, _sz, _vm, _vn, disk, disk_cd, _nd, entries, cd_size, cd_offset) = _Z64_EOCD.unpack(
                rec
            )
            location_adjust = _Z64_LOCATOR.size + _Z64_EOCD.size
    if disk != 0 or disk_cd != 0:
        refuse("the zip archive spans several disks", RESAVE)
    # zipfile tolerates data prepended to an archive ("concat"); torch's reader
    # and ours must agree on offsets, so require none.
    concat = eocd_pos - location_adjust - cd_size - cd_offset
    if concat != 0:
        refuse(
            f"the zip central directory does not end where its end record is "
            f"({concat} bytes of data before or inside the archive)",
            RESAVE,
        )
    return _EndRecord(entries=entries, cd_size=cd_size, cd_offset=cd_offset)


def _data_range(f: BinaryIO, info: zipfile.ZipInfo) -> tuple[int, int]:
    """``(start, end)`` of a member's stored bytes, from its local header."""
    raw = _read_at(f, info.header_offset, _LOCAL_HEADER.size)
    if len(raw) < _LOCAL_HEADER.size or raw[:4] != _ZIP_MAGIC:
        refuse(
            f"member {short(info.filename)} has no local header where the directory says", RESAVE
        )
    fields = _LOCAL_HEADER.unpack(raw)
    name_len, extra_len = fields[-2], fields[-1]
    name = _read_at(f, info.header_offset + _LOCAL_HEADER.size, name_len)
    if name != info.filename.encode("ascii"):
        refuse(
            f"member {short(info.filename)} is named {short(name)} in its local header",
            RESAVE,
        )
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    return start, start + info.compress_size


def _check_members(
    f: BinaryIO,
    zf: zipfile.ZipFile,
    end: _EndRecord,
    *,
    max_members: int,
    budget: int,
    max_ratio: int,
) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    infos = zf.infolist()
    if len(infos) != end.entries:
        refuse(
            f"the zip end record counts {end.entries} members but the directory lists {len(infos)}",
            RESAVE,
        )
    if not infos:
        refuse("the zip archive is empty", RESAVE)
    if len(infos) > max_members:  # pragma: no cover - the end record check comes first
        refuse(f"the archive has {len(infos)} members (limit {max_members})", RAISE_LIMIT)
    first = infos[0].filename
    if "/" not in first:
        refuse(f"the first member {short(first)} is not inside an archive folder", RESAVE)
    prefix = first.split("/", 1)[0] + "/"
    by_name: dict[str, zipfile.ZipInfo] = {}
    declared = 0
    for info in infos:
        name = info.filename
        if not (name.isascii() and name.isprintable()):
            refuse(f"member name {short(name)} is not printable ASCII", RESAVE)
        if name in by_name:
            refuse(f"member {short(name)} appears twice", RESAVE)
        by_name[name] = info
        if not name.startswith(prefix):
            refuse(f"member {short(name)} is outside the archive folder {short(prefix)}", RESAVE)
        if info.flag_bits & 0x1:
            refuse(f"member {short(name)} is encrypted", RESAVE)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size != info.file_size:
                refuse(
                    f"stored member {short(name)} declares {info.file_size} bytes but occupies "
                    f"{info.compress_size}",
                    RESAVE,
                )
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > max(info.compress_size, 1) * max_ratio and info.file_size > MIB:
                refuse(
                    f"member {short(name)} declares {info.file_size} bytes from "
                    f"{info.compress_size} compressed (ratio over {max_ratio}: a zip bomb)",
                    RAISE_LIMIT,
                )
        else:
            refuse(
                f"member {short(name)} uses zip compression method {info.compress_type} "
                "(torch.save stores members uncompressed)",
                RESAVE,
            )
        declared += info.file_size
        if declared > budget:
            refuse(
                f"the members declare more than {budget} bytes in all (member {short(name)} "
                f"alone declares {info.file_size}): a zip bomb or an oversized file",
                RAISE_LIMIT,
            )
    if prefix + "constants.pkl" in by_name or any(n.startswith(prefix + "code/") for n in by_name):
        refuse(
            "the archive is a TorchScript module (constants.pkl / code/), not a torch.save file",
            "Load TorchScript only from trusted sources, with torch.jit.load.",
        )
    # Every member's bytes lie inside the file, before the central directory,
    # and no two members share bytes (overlapping members multiply a bomb).
    previous_end, previous_name = 0, ""
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < previous_end:
            refuse(f"member {short(info.filename)} overlaps member {short(previous_name)}", RESAVE)
        _start, data_end = _data_range(f, info)
        if data_end > end.cd_offset:
            refuse(
                f"member {short(info.filename)} claims {info.compress_size} bytes that run past "
                "the end of the archive data (truncated or forged sizes)",
                RESAVE,
            )
        previous_end, previous_name = data_end, info.filename
    return prefix, by_name
