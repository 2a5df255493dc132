"""EventPacket decoders: real bags against the PyPI evt3 decoder, synthetic round trips, errors."""

from __future__ import annotations

import array
from dataclasses import replace
from pathlib import Path
import shutil

import numpy as np
import pytest

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.decode import (
    DecodeStats,
    TruncatedPacketError,
    UnsupportedEncodingError,
    decode_packet,
    decode_packets,
)
from blinktrack_ros.events.encode import encode_evt3, make_event_packets

MSGDEFS = Path(__file__).resolve().parent.parent / "blinktrack_ros" / "bag" / "msgdefs"
BACKENDS = ("numpy", "pypi", "numba")
# (bag, width, height, total, ON, OFF): counts from the PyPI evt3 decoder (independent, Rust)
EVT3_BAGS = [("test_events_1", 640, 480, 343474, 125183, 218291),
             ("test_data_evt3_trigger", 1280, 720, 82469, 41439, 41030)]


def typestore():
    """ROS 2 Jazzy types plus the event messages from the package's msgdefs."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(MSGDEFS.glob("*/*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{path.parent.name}/msg/{path.stem}"))
    store.register(types)
    return store


def read_messages(bag: Path) -> list:
    """All messages of a bag, deserialized by rosbags."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag], default_typestore=typestore()) as reader:
        return [reader.deserialize(raw, conn.msgtype) for conn, _, raw in reader.messages()]


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def decode_all(msgs, backend="numpy", stats=None):
    state, out = None, []
    for m in msgs:
        batch, state = decode_packet(m, state, stats, backend)
        out.append(batch)
    return EventBatch.concatenate(out), out


@pytest.fixture(scope="module", params=EVT3_BAGS, ids=[b[0] for b in EVT3_BAGS])
def evt3_bag(request, shared_data):
    name, w, h, total, on, off = request.param
    return read_messages(shared_data / "event_bags" / name), (w, h, total, on, off)


@pytest.mark.data
@pytest.mark.parametrize("backend", BACKENDS)
def test_evt3_bags_match_pypi_decoder(evt3_bag, backend):
    import evt3

    msgs, (w, h, total, on, off) = evt3_bag
    ref = evt3.Decoder(w, h)
    ref_ev = [ref.feed(m.events.tobytes()) for m in msgs]
    stats = DecodeStats()
    batch, per_packet = decode_all(msgs, backend, stats)
    assert (len(batch), stats.on, stats.off) == (total, on, off)
    assert [len(b) for b in per_packet] == [len(e) for e in ref_ev]
    for key in ("x", "y", "p"):
        np.testing.assert_array_equal(getattr(batch, key),
                                      np.concatenate([getattr(e, key) for e in ref_ev]))
    t_ref = np.concatenate([e.t for e in ref_ev]).astype(np.int64) * 1000
    # sensor time mapped to the header clock by the first packet's stamp
    np.testing.assert_array_equal(batch.t, t_ref - t_ref[0] + stamp(msgs[0]))
    assert np.all(np.diff(batch.t) >= 0)
    assert (batch.width, batch.height) == (w, h)
    assert stats.dropped_out_of_bounds == stats.backwards_timestamps == 0


@pytest.mark.data
def test_evt3_joined_packets_equal_packet_by_packet(evt3_bag):
    msgs = evt3_bag[0]
    one, _ = decode_all(msgs, "numpy")
    for backend in BACKENDS:
        stats = DecodeStats()
        joined, _ = decode_packets(msgs, None, stats, backend)
        for key in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(getattr(joined, key), getattr(one, key))
        assert stats.packets == len(msgs) and stats.decoded == len(one)


@pytest.mark.data
def test_legacy_mono_bag(shared_data):
    msgs = read_messages(shared_data / "event_bags" / "test_data_mono_cd")
    stats = DecodeStats()
    batch, _ = decode_all(msgs, stats=stats)
    ref = []  # independent: word by word with Python integers
    for m in msgs:
        for (word,) in np.frombuffer(m.events.tobytes(), "<u8").reshape(-1, 1).tolist():
            ref.append(((word >> 32) & 0xFFFF, (word >> 48) & 0x7FFF,
                        stamp(m) + (word & 0xFFFFFFFF), word >> 63))
    ref.sort(key=lambda r: r[2])
    assert len(batch) == len(ref) == stats.decoded == 100
    np.testing.assert_array_equal(np.c_[batch.x, batch.y, batch.t, batch.p], np.array(ref))


@pytest.mark.data
def test_libcaer_cmp_bag_names_its_encoding(shared_data, tmp_path):
    from rosbags.rosbag2 import Reader

    src = shared_data / "event_bags" / "test_events_2"
    bag = tmp_path / "bag"  # its metadata has an empty storage_identifier: say mcap
    bag.mkdir()
    shutil.copy(src / "test_events_2_0.mcap", bag)
    meta = (src / "metadata.yaml").read_text().replace('storage_identifier: ""',
                                                       "storage_identifier: mcap")
    (bag / "metadata.yaml").write_text(meta)
    store = typestore()
    with Reader(bag) as reader:
        conn, _, raw = next(reader.messages())
        msg = store.deserialize_cdr(raw, conn.msgtype)
    assert msg.encoding == "libcaer_cmp"
    with pytest.raises(UnsupportedEncodingError, match="libcaer_cmp"):
        decode_packet(msg)


def random_batch(rng, n, duration_ns, width=640, height=480, t0=1_700_000_000_000_000_000):
    t = t0 + np.sort(rng.integers(0, duration_ns, n)) // 1000 * 1000
    return EventBatch(rng.integers(0, width, n).astype(np.uint16),
                      rng.integers(0, height, n).astype(np.uint16), t.astype(np.int64),
                      rng.integers(0, 2, n).astype(np.uint8), width, height)


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_round_trip_through_packets(rng, encoding):
    # 40 s spans two 24-bit evt3 time wraps (16.8 s each)
    src = random_batch(rng, 20000, 40_000_000_000 if encoding == "evt3" else 2_000_000_000)
    packets = make_event_packets(src, encoding, packet_ns=20_000_000)
    for backend in BACKENDS:
        stats = DecodeStats()
        got, _ = decode_all(packets, backend, stats)
        for key in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(getattr(got, key), getattr(src, key))
        assert stats.packets == len(packets) and stats.decoded == len(src)


def vector_words(rng, n_groups: int) -> tuple[bytes, list]:
    """evt3 words with VECT_BASE_X/VECT_12/VECT_8 groups, and the events they encode."""
    words, events, us = [], [], 5000
    words += [0x8000 | (us >> 12), 0x6000 | (us & 0xFFF)]
    for _ in range(n_groups):
        us += int(rng.integers(0, 40))
        y, base, pol = int(rng.integers(0, 480)), int(rng.integers(0, 560)), int(rng.integers(2))
        words += [0x8000 | (us >> 12), 0x6000 | (us & 0xFFF), y, 0x3000 | pol << 11 | base]
        for code, nbits in ((0x4, 12), (0x5, 8), (0x4, 12)):
            valid = int(rng.integers(0, 1 << nbits))
            words.append(code << 12 | valid)
            events += [(base + i, y, pol, us) for i in range(nbits) if valid >> i & 1]
            base += nbits
        x = int(rng.integers(0, 640))
        words.append(0x2000 | (1 - pol) << 11 | x)
        events.append((x, y, 1 - pol, us))
    return np.array(words, "<u2").tobytes(), events


def test_evt3_vector_words_match_pypi_and_construction(rng):
    import evt3

    payload, events = vector_words(rng, 300)
    ref = evt3.decode_bytes(payload, 640, 480)
    cut = len(payload) // 4 * 2  # split inside the stream: state carries the vector base
    halves = [payload[:cut], payload[cut:]]
    packets = [make_packet(h, "evt3", stamp_ns=10**18) for h in halves]
    expect = np.array(events)
    for backend in ("numpy", "numba"):
        got, _ = decode_all(packets, backend)
        np.testing.assert_array_equal(np.c_[got.x, got.y, got.p], expect[:, :3])
        np.testing.assert_array_equal(np.c_[got.x, got.y, got.p], np.c_[ref.x, ref.y, ref.p])
        np.testing.assert_array_equal(got.t - got.t[0], (expect[:, 3] - expect[0, 3]) * 1000)


def make_packet(payload, encoding="mono", stamp_ns=10**18, width=640, height=480,
                bigendian=False):
    src = make_event_packets(random_batch(np.random.default_rng(0), 1, 10), "mono", 10)[0]
    header = replace(src.header, stamp=type(src.header.stamp).from_ns(stamp_ns))
    return replace(src, header=header, events=payload, encoding=encoding, width=width,
                   height=height, is_bigendian=bigendian)


def mono_words(x, y, dt, p, fmt="<u8") -> bytes:
    w = [d | xx << 32 | yy << 48 | pp << 63 for xx, yy, d, pp in zip(x, y, dt, p)]
    return np.array(w, np.uint64).astype(fmt).tobytes()


def test_mono_validation_counts(rng):
    payload = mono_words([1, 700, 3, 4, 5], [2, 2, 500, 9, 9], [50, 60, 70, 40, 80],
                         [1, 0, 1, 0, 1])
    stats = DecodeStats()
    batch, _ = decode_packet(make_packet(payload), None, stats)
    assert stats.dropped_out_of_bounds == 2  # x=700 and y=500 on a 640x480 sensor
    assert stats.backwards_timestamps == 1  # 70 -> 40 (after the drops: 50, 40, 80)
    np.testing.assert_array_equal(batch.t - 10**18, [40, 50, 80])
    np.testing.assert_array_equal(batch.x, [4, 1, 5])
    big = decode_packet(make_packet(mono_words([1, 2], [3, 4], [5, 6], [1, 0], ">u8"),
                                    bigendian=True))[0]
    np.testing.assert_array_equal(np.c_[big.x, big.y, big.t - 10**18, big.p],
                                  [[1, 3, 5, 1], [2, 4, 6, 0]])


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_empty_truncated_unsupported(encoding):
    stats = DecodeStats()
    batch, state = decode_packet(make_packet(b"", encoding), None, stats)
    assert len(batch) == 0 and stats.empty_packets == 1 and stats.packets == 1
    cut = 7 if encoding == "evt3" else 13
    with pytest.raises(TruncatedPacketError, match=f"offset {6 if cut == 7 else 8}"):
        decode_packet(make_packet(bytes(cut), encoding), state, stats)
    assert stats.truncated_packets == 1
    for other in ("libcaer_cmp", "trigger", "libcaer"):
        with pytest.raises(UnsupportedEncodingError, match=other):
            decode_packet(make_packet(b"", other))


def test_payload_container_types(rng):
    src = random_batch(rng, 500, 1_000_000)
    pk = make_event_packets(src, "evt3", 10**9)[0]
    ref = decode_packet(pk)[0]
    for payload in (bytearray(pk.events), array.array("B", pk.events), list(pk.events),
                    np.frombuffer(pk.events, np.uint8), memoryview(pk.events)):
        got = decode_packet(replace(pk, events=payload))[0]
        np.testing.assert_array_equal(got.t, ref.t)
        np.testing.assert_array_equal(got.x, ref.x)


def test_evt3_out_of_bounds_and_across_packet_counts(rng):
    src = random_batch(rng, 1000, 10_000_000, width=800)  # x up to 799 on a 640-wide sensor
    payload = encode_evt3(src, int(src.t[0]))
    stats = DecodeStats()
    for backend in BACKENDS:
        st = DecodeStats()
        batch, state = decode_packet(make_packet(payload, "evt3", int(src.t[0])), None, st,
                                     backend)
        assert st.dropped_out_of_bounds == int(np.count_nonzero(src.x >= 640))
        assert len(batch) + st.dropped_out_of_bounds == len(src) and batch.x.max() < 640
        decode_packet(make_packet(payload, "evt3"), state, st, backend)  # same again: back
        assert st.backwards_across_packets == 1
        stats.merge(st)
    assert stats.as_dict()["packets"] == 2 * len(BACKENDS)


def test_state_reuse(rng):
    from blinktrack_ros.events.decode import StaleStateError

    packets = make_event_packets(random_batch(rng, 2000, 30_000_000), "evt3", 10_000_000)
    _, s1 = decode_packet(packets[0], None, None, "numpy")
    a, _ = decode_packet(packets[1], s1, None, "numpy")
    b, _ = decode_packet(packets[1], s1, None, "numpy")  # numpy states are plain values
    np.testing.assert_array_equal(a.t, b.t)
    _, n1 = decode_packet(packets[0], None, None, "numba")
    assert n1 == s1  # numba and numpy carry the same registers
    for _ in range(2):  # and so are numba's
        d, _ = decode_packet(packets[1], n1, None, "numba")
        np.testing.assert_array_equal(d.t, a.t)
    _, p1 = decode_packet(packets[0], None, None, "pypi")
    c, p2 = decode_packet(packets[1], p1, None, "pypi")
    np.testing.assert_array_equal(c.t, a.t)
    with pytest.raises(StaleStateError, match="already used"):
        decode_packet(packets[1], p1, None, "pypi")  # its registers have moved on
    decode_packet(packets[2], p2, None, "pypi")


def random_evt3_words(rng, n: int) -> np.ndarray:
    """Adversarial EVT 3.0 words: every type, rows and columns past a 640x480 sensor, time-high
    steps back by a little (noise) and by a lot (wraps), time-low going back."""
    codes = rng.choice(16, n, p=np.r_[[0.15, 0.01, 0.3, 0.04, 0.04, 0.04, 0.15, 0.01, 0.1],
                                      [0.01, 0.03, 0.01, 0.01, 0.01, 0.01, 0.08]])
    payload = rng.integers(0, 4096, n)
    small = rng.random(n) < 0.7  # most coordinates inside the sensor
    payload[small & (codes == 0)] = rng.integers(0, 480, n)[small & (codes == 0)]
    payload[small & (codes == 2)] &= 0x83FF  # x < 1024, polarity kept
    high = np.flatnonzero(codes == 8)
    steps = rng.choice([0, 1, 2, -3, -10, -11, -2000], high.size,  # > 10 back: a wrap
                       p=[0.3, 0.4, 0.1, 0.05, 0.05, 0.05, 0.05])
    payload[high] = np.cumsum(steps) % 4096
    return (codes << 12 | payload).astype(np.uint16)


@pytest.mark.parametrize("seed", range(6))
def test_numba_backend_equals_numpy_on_adversarial_streams(seed):
    """The compiled one-pass kernel against the vectorised numpy decoder (a different
    algorithm: searchsorted per register): events, every counter and the state after each
    packet, on random word streams cut into random packets, little- and big-endian, with and
    without bounds."""
    rng = np.random.default_rng(seed)
    words = random_evt3_words(rng, 20000)
    cuts = np.sort(rng.choice(np.arange(1, words.size), 40, replace=False))
    width, height = ((640, 480), (0, 0))[seed % 2]
    big = seed % 3 == 2
    packets = [make_packet(w.astype(">u2" if big else "<u2").tobytes(), "evt3",
                           10**18 + 10**6 * i, width, height, big)
               for i, w in enumerate(np.split(words, cuts))]
    states = {"numpy": None, "numba": None}
    stats = {b: DecodeStats() for b in states}
    total = 0
    for m in packets:
        out = {}
        for backend in states:
            out[backend], states[backend] = decode_packet(m, states[backend], stats[backend],
                                                          backend)
        for key in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(getattr(out["numba"], key), getattr(out["numpy"], key))
        assert states["numba"] == states["numpy"]
        total += len(out["numpy"])
    assert stats["numba"] == stats["numpy"]
    s = stats["numpy"]
    assert total > 1000 and s.unknown_words > 0 and s.trigger_events > 0
    assert s.backwards_timestamps > 0 and s.backwards_across_packets > 0
    assert (s.dropped_out_of_bounds > 0) == (width > 0)


def test_auto_backend_without_numba(monkeypatch, rng):
    """Where numba is missing (or does not compile the kernel) "auto" falls back to the PyPI
    decoder and "numba" is a clear error; the events are the same."""
    from blinktrack_ros.events import decode as dec
    from blinktrack_ros.events import evt3_jit
    from blinktrack_ros.events.decode import prepare_evt3_backend

    packets = make_event_packets(random_batch(rng, 2000, 30_000_000), "evt3", 10_000_000)
    with_numba, _ = decode_all(packets, "auto")
    monkeypatch.setattr(evt3_jit.KERNEL, "_compiled", None)
    monkeypatch.setattr(evt3_jit.KERNEL, "_error", "No module named 'numba' (test)")
    monkeypatch.setattr(dec, "_RESOLVED", {})
    assert prepare_evt3_backend() == "pypi"
    without, _ = decode_all(packets, "auto")
    for key in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(getattr(without, key), getattr(with_numba, key))
    with pytest.raises(ValueError, match="needs numba.*No module named 'numba'"):
        decode_packet(packets[0], None, None, "numba")
