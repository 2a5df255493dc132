"""Lengths an .mcap file declares, checked against the file before rosbags reads it.

rosbags trusts the lengths it reads: a record whose length field claims more than the file
holds makes it allocate that much (`f.read(n)` allocates n bytes first; measured: a 4 GB peak
for an 8 kB damaged bag, or MemoryError), and a chunk's declared uncompressed size sizes the
decompression buffer. `check_mcap` walks the top-level records (9-byte headers, seeks between
them) and raises BagError naming the offset when a length, offset or uncompressed size cannot be
true for this file. It reads ~100 bytes per record, not the records.
"""

from __future__ import annotations

import os
from pathlib import Path
import struct

MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_CHUNK, OP_CHUNK_INDEX = 0x02, 0x06, 0x08
# Largest believable uncompressed/compressed ratio of a chunk (zstd/lz4 on sensor data: < 20),
# plus a floor for tiny chunks; anything above is a corrupt size field.
MAX_RATIO, MIN_UNCOMPRESSED_BOUND = 1000, 1 << 20


def check_mcap(path: str | os.PathLike) -> None:
    """Raise BagError when a declared length of the mcap file at `path` exceeds the file."""
    from blinktrack_ros.bag.reader import BagError

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(8) != MAGIC:
            return  # not ours to judge: rosbags names what is wrong with the magic
        pos, starts = 8, set()
        while pos + 9 <= size - 8:
            starts.add(pos)
            f.seek(pos)
            opcode, length = struct.unpack("<BQ", f.read(9))
            if length > size - pos - 9:
                raise BagError(f"{path}: record (opcode 0x{opcode:02x}) at byte {pos} declares "
                               f"{length} bytes, {size - pos - 9} left in the file (damaged)")
            head = f.read(min(length, 4096)) if opcode in (OP_CHUNK, OP_CHUNK_INDEX,
                                                           OP_FOOTER) else b""
            problem = _check_record(opcode, head, length, size)
            if problem:
                raise BagError(f"{path}: record (opcode 0x{opcode:02x}) at byte {pos}: "
                               f"{problem} (damaged)")
            if opcode == OP_FOOTER:
                break
            pos += 9 + length
        _check_summary_start(f, path, size, starts)


def _check_summary_start(f, path: Path, size: int, starts: set[int]) -> None:
    """rosbags reads the footer at the end of the file and parses records from its
    summary_start on: that offset must be where a record begins (else it reads a length from
    the middle of a record; measured: MemoryError)."""
    from blinktrack_ros.bag.reader import BagError

    if size < 8 + 37:
        return
    f.seek(size - 37)
    footer = f.read(37)
    if footer[0] != OP_FOOTER:
        return  # rosbags reports the invalid footer itself
    (summary_start,) = struct.unpack_from("<Q", footer, 9)
    if summary_start and summary_start not in starts:
        raise BagError(f"{path}: the footer's summary offset {summary_start} is not where a "
                       "record begins (damaged)")


def _check_record(opcode: int, head: bytes, length: int, size: int) -> str | None:
    try:
        if opcode == OP_CHUNK:
            return _check_chunk(head, length)
        if opcode == OP_CHUNK_INDEX:
            return _check_chunk_index(head, length, size)
        if opcode == OP_FOOTER:
            summary_start, summary_offset_start = struct.unpack_from("<QQ", head, 0)
            if summary_start > size or summary_offset_start > size:
                return f"summary offsets {summary_start}/{summary_offset_start} past the end"
    except struct.error:
        return "fields run past the record"
    return None


def _bounded(uncompressed: int, compressed: int) -> bool:
    return uncompressed <= max(MAX_RATIO * compressed, MIN_UNCOMPRESSED_BOUND)


def _string(head: bytes, at: int, length: int) -> tuple[int, int]:
    """(string length, offset after it) of an mcap string at `at`."""
    (n,) = struct.unpack_from("<I", head, at)
    if at + 4 + n > length:
        raise struct.error("string past the record")
    return n, at + 4 + n


def _check_chunk(head: bytes, length: int) -> str | None:
    # message_start_time, message_end_time, uncompressed_size u64; uncompressed_crc u32
    uncompressed = struct.unpack_from("<QQQI", head, 0)[2]
    _, at = _string(head, 28, length)  # compression
    (records,) = struct.unpack_from("<Q", head, at)
    if records > length - at - 8:
        return f"records length {records} exceeds the chunk"
    if not _bounded(uncompressed, records):
        return f"uncompressed size {uncompressed} for {records} compressed bytes"
    return None


def _check_chunk_index(head: bytes, length: int, size: int) -> str | None:
    # message_start_time, message_end_time, chunk_start_offset, chunk_length u64
    start, chunk_length = struct.unpack_from("<QQQQ", head, 0)[2:]
    if start + chunk_length > size:
        return f"chunk at {start} of {chunk_length} bytes past the end of the file"
    (map_bytes,) = struct.unpack_from("<I", head, 32)
    at = 36 + map_bytes
    if at > length:
        return f"message index offsets of {map_bytes} bytes exceed the record"
    if at + 8 > len(head):
        return None  # a huge (valid) offsets map: the sizes are beyond the bytes read
    _, at = _string(head, at + 8, length)  # after message_index_length: compression
    compressed, uncompressed = struct.unpack_from("<QQ", head, at)
    if compressed > chunk_length or not _bounded(uncompressed, compressed):
        return f"sizes {compressed}/{uncompressed} do not fit a chunk of {chunk_length} bytes"
    return None
