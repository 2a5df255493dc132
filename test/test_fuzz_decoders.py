"""Fuzzed decoders, a small seeded set (the benchmark runs >= 10,000 per decoder): random,
truncated and oversized-length inputs end in a result or a documented error (ValueError
subclasses), never a crash, a hang or an allocation sized by a declared length; what comes back
is well formed (see blinktrack_ros/bench/fuzz.py for the properties)."""

from __future__ import annotations

from pathlib import Path
import struct
import tracemalloc

import numpy as np
import pytest

from blinktrack_ros.bag.reader import BagError, iter_messages
from blinktrack_ros.bench.fuzz import DECODERS, KINDS, check_batch, fuzz_all
from blinktrack_ros.events.decode import TruncatedPacketError, decode_packet
from blinktrack_ros.events.dvs import decode_dvs_cdr, serialize_dvs_event_array
from blinktrack_ros.events.encode import EventPacketFields, Header
from blinktrack_ros.images import ImageDecodeError, image_to_gray

CASES = {"evt3": 300, "mono": 300, "dvs_cdr": 300, "image": 300, "bag": 45}


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_fuzzed_inputs_never_crash(decoder, tmp_path) -> None:
    res = fuzz_all(CASES[decoder], seed=7, only=(decoder,))[decoder]
    assert res["ok"], res["examples"]
    assert res["by_kind"] == {k: CASES[decoder] // 3 for k in KINDS}
    # both outcomes occur: the generators reach the decoders' checks and their happy paths
    assert res["rejected"] > 0 and res["accepted"] > 0, res


def test_dvs_count_claiming_4g_events_allocates_nothing() -> None:
    """The event count field says 2**32 - 1: the decoder refuses before allocating arrays."""
    from blinktrack_ros.events.batch import EventBatch

    batch = EventBatch(np.array([1], np.uint16), np.array([2], np.uint16),
                       np.array([5], np.int64), np.array([1], np.uint8), 4, 4)
    data = bytearray(serialize_dvs_event_array(batch, 0, ""))
    count_at = 4 + 16 + 8  # encapsulation, stamp + frame_id length + empty string (padded)
    assert struct.unpack_from("<I", data, count_at)[0] == 1  # found the field
    struct.pack_into("<I", data, count_at, 2**32 - 1)
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedPacketError, match="byte offset"):
            decode_dvs_cdr(bytes(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_image_declaring_2g_rows_refused_without_allocating() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ImageDecodeError, match="truncated"):
            image_to_gray("bgr8", 2**31 - 1, 640, 1920, False, bytes(100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_truncated_evt3_names_the_offset_and_state_survives(rng) -> None:
    from blinktrack_ros.events.batch import EventBatch
    from blinktrack_ros.events.encode import encode_evt3

    n = 50
    batch = EventBatch(rng.integers(0, 64, n).astype(np.uint16),
                       rng.integers(0, 48, n).astype(np.uint16),
                       np.sort(rng.integers(0, 10**7, n)).astype(np.int64) + 10**9,
                       rng.integers(0, 2, n).astype(np.uint8), 64, 48)
    data = encode_evt3(batch, 10**9)
    msg = EventPacketFields(Header(), 48, 64, 0, 0, "evt3", False, data[:-1])
    with pytest.raises(TruncatedPacketError) as err:
        decode_packet(msg, evt3_backend="numpy")
    assert err.value.offset == len(data) - 2
    ok, _ = decode_packet(EventPacketFields(Header(), 48, 64, 0, 0, "evt3", False, data),
                          evt3_backend="numpy")
    assert check_batch(ok) is None and len(ok) == n


def _mcap(tmp_path: Path) -> Path:
    from blinktrack_ros.bag.types import TRACK_ARRAY, typestore
    from blinktrack_ros.bag.writer import BagWriter

    s = typestore()
    T = s.types
    header = T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](1, 0), "cam")
    f32 = np.zeros(2, np.float32)
    tracks = T[TRACK_ARRAY](header, np.array([1], np.uint32), f32, f32, np.zeros(3, np.float32),
                            np.zeros(1, np.uint8), np.zeros(1, np.uint8), np.zeros(1, np.float32),
                            np.zeros(0, np.float32))
    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/tracks", TRACK_ARRAY, 10**9, tracks)
    return next((tmp_path / "bag").glob("*.mcap"))


def test_mcap_record_length_past_the_end_is_a_bag_error(tmp_path) -> None:
    """A record length claiming 2**40 bytes: BagError naming the byte, before rosbags reads
    (which allocated the claimed size: 4 GB peaks for an 8 kB file in the fuzzing)."""
    path = _mcap(tmp_path)
    assert [m.topic for m in iter_messages(path)] == ["/tracks"]  # readable as written
    data = bytearray(path.read_bytes())
    opcode, length = struct.unpack_from("<BQ", data, 8)  # the first record (header)
    struct.pack_into("<Q", data, 9, 2**40)
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(BagError, match="at byte 8 declares 1099511627776 bytes"):
            list(iter_messages(bad))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert opcode == 0x01 and length < len(data) and peak < 16 << 20


def test_bench_reliability_fuzz_part_prints_json(capsys) -> None:
    """`blinktrack bench reliability --parts fuzz` is wired and prints one JSON object with
    every decoder's figures (the live parts need ROS and minutes: run by hand)."""
    import json

    from blinktrack_ros.cli import main

    assert main(["bench", "reliability", "--json", "--parts", "fuzz", "--fuzz-cases", "6"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["fuzz"]) == set(DECODERS)
    assert all(r["cases"] == 6 and r["ok"] for r in out["fuzz"].values())


def test_mcap_summary_offset_inside_a_record_is_a_bag_error(tmp_path) -> None:
    """The footer's summary offset moved by one byte: rosbags would parse a length from the
    middle of a record (MemoryError in the fuzzing); a BagError names the offset instead."""
    path = _mcap(tmp_path)
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - 29  # footer record: opcode, length, 2 x u64, u32; then the magic
    assert data[footer] == 0x02
    (summary_start,) = struct.unpack_from("<Q", data, footer + 9)
    assert summary_start > 0
    struct.pack_into("<Q", data, footer + 9, summary_start + 1)
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    with pytest.raises(BagError, match=f"summary offset {summary_start + 1} is not where"):
        list(iter_messages(bad))
