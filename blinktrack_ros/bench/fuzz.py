"""Fuzzed decoders: evt3, mono, dvs_msgs CDR, Image conversion, bag reading.

Each decoder gets seeded cases of three kinds, cycled: `random` (random bytes and fields),
`truncated` (a valid input cut short or with bytes flipped) and `oversized` (a valid input whose
declared length or size field claims far more than the input holds). The properties checked on
every case, whatever its kind:

- the decoder returns, or raises one of the documented errors (`ValueError` subclasses:
  TruncatedPacketError, UnsupportedEncodingError, ImageDecodeError, BagError); anything else
  is a crash;
- no hang: a case over `HANG_S` seconds is counted as a hang (an alarm interrupts it);
- no allocation driven by a declared length: the peak traced allocation stays under
  `ALLOC_FACTOR` x (input bytes + output bytes) + `ALLOC_SLACK` (what a decoder must allocate to
  hold what the input really contains, with temporaries);
- what comes back is well formed (events inside the sensor and time-sorted; an (H, W) float32
  image of the declared size with values in [0, 1]).

The suite runs a small seeded set of each (test/test_fuzz_decoders.py); `blinktrack bench
reliability` runs >= 10,000 per decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import os
from pathlib import Path
import signal
import struct
import tempfile
import time
import tracemalloc
from typing import Any

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.encode import EventPacketFields, Header, Time

KINDS = ("random", "truncated", "oversized")
HANG_S = 5.0
ALLOC_FACTOR = 64
ALLOC_SLACK = 4 << 20  # bytes: interpreter and numpy bookkeeping, rosbags' reader objects
DOCUMENTED = (ValueError, FileNotFoundError)  # every decoder error is a ValueError subclass


@dataclass
class FuzzResult:
    """Counts of one decoder's cases."""

    decoder: str
    cases: int = 0
    accepted: int = 0
    rejected: int = 0  # a documented error
    crashes: int = 0
    hangs: int = 0
    bad_output: int = 0
    alloc_violations: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    max_case_ms: float = 0.0
    max_peak_bytes: int = 0
    max_peak_per_input_byte: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first failures, for the report

    @property
    def ok(self) -> bool:
        """No crash, hang, malformed output or length-driven allocation."""
        return not (self.crashes or self.hangs or self.bad_output or self.alloc_violations)

    def as_dict(self) -> dict:
        """JSON-ready figures."""
        out = {k: v for k, v in self.__dict__.items()}
        out["max_case_ms"] = round(self.max_case_ms, 2)
        out["max_peak_per_input_byte"] = round(self.max_peak_per_input_byte, 2)
        out["ok"] = self.ok
        return out


class _HangError(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _HangError


@dataclass(frozen=True)
class Case:
    """One input: the call, its size in bytes and its kind."""

    kind: str
    size: int
    call: Callable[[], Any]
    check: Callable[[Any], str | None]  # None: the output is well formed


def run_cases(name: str, cases: Any, n: int) -> FuzzResult:
    """Run n cases from the iterator `cases`; the properties of the module docstring."""
    res = FuzzResult(name)
    use_alarm = hasattr(signal, "setitimer")
    try:
        old = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    except ValueError:  # not the main thread: no alarm, hangs show as the slowest case
        use_alarm, old = False, None
    tracemalloc.start()
    try:
        for _ in range(n):
            _one(res, next(cases), use_alarm)
    finally:
        tracemalloc.stop()
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return res


def _one(res: FuzzResult, case: Case, use_alarm: bool) -> None:
    res.cases += 1
    res.by_kind[case.kind] = res.by_kind.get(case.kind, 0) + 1
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    out, problem = None, None
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            out = case.call()
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        res.accepted += 1
        problem = case.check(out)
        if problem:
            res.bad_output += 1
    except _HangError:
        res.hangs += 1
        problem = f"hang over {HANG_S} s"
    except DOCUMENTED:
        res.rejected += 1
    except Exception as exc:  # noqa: BLE001 - what the fuzzing looks for
        res.crashes += 1
        problem = f"{type(exc).__name__}: {exc}"[:200]
    ms = (time.perf_counter() - t0) * 1e3
    peak = tracemalloc.get_traced_memory()[1] - base
    out_bytes = _nbytes(out)
    if peak > ALLOC_FACTOR * (case.size + out_bytes) + ALLOC_SLACK:
        res.alloc_violations += 1
        problem = problem or f"peak allocation {peak} B for {case.size} B in, {out_bytes} B out"
    res.max_case_ms = max(res.max_case_ms, ms)
    res.max_peak_bytes = max(res.max_peak_bytes, peak)
    res.max_peak_per_input_byte = max(res.max_peak_per_input_byte, peak / max(case.size, 1))
    if problem and len(res.examples) < 5:
        res.examples.append(f"case {res.cases - 1} ({case.kind}): {problem}")


def _nbytes(out: Any) -> int:
    if isinstance(out, tuple):
        return sum(_nbytes(o) for o in out)
    if isinstance(out, list):
        return sum(_nbytes(o) for o in out)
    if isinstance(out, EventBatch):
        return sum(a.nbytes for a in (out.x, out.y, out.t, out.p))
    if isinstance(out, np.ndarray):
        return out.nbytes
    return 0


# ---- properties of the outputs ----------------------------------------------------------------

def check_batch(out: Any) -> str | None:
    """An EventBatch (or (batch, state)) inside its sensor, time-sorted, columns aligned."""
    batch = out[0] if isinstance(out, tuple) else out
    n = len(batch.t)
    if not (len(batch.x) == len(batch.y) == len(batch.p) == n):
        return "columns of different lengths"
    if n and batch.width > 0 and batch.height > 0 and (
            int(batch.x.max()) >= batch.width or int(batch.y.max()) >= batch.height):
        return "event outside the sensor"
    if n > 1 and bool(np.any(batch.t[1:] < batch.t[:-1])):
        return "events not time-sorted"
    if n and int(batch.p.max()) > 1:
        return "polarity not 0/1"
    return None


def _check_image(height: int, width: int) -> Callable[[Any], str | None]:
    def check(img: Any) -> str | None:
        if img.shape != (height, width) or img.dtype != np.float32:
            return f"image {img.shape} {img.dtype}, declared {height}x{width}"
        if img.size and not (np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1):
            return "image values outside [0, 1]"
        return None
    return check


# ---- valid inputs to start from ---------------------------------------------------------------

def _batch(rng: np.random.Generator, n: int, width: int = 320, height: int = 240) -> EventBatch:
    t = np.sort(rng.integers(0, 20_000_000, n)).astype(np.int64) + 1_000_000_000
    return EventBatch(rng.integers(0, width, n).astype(np.uint16),
                      rng.integers(0, height, n).astype(np.uint16), t,
                      rng.integers(0, 2, n).astype(np.uint8), width, height)


def _packet(encoding: str, payload: bytes, rng: np.random.Generator,
            bigendian: bool = False) -> EventPacketFields:
    w, h = (int(v) for v in rng.choice([0, 1, 240, 320, 1280, 65535, 2**32 - 1], 2))
    stamp = Time(int(rng.integers(0, 2**31)), int(rng.integers(0, 10**9)))
    return EventPacketFields(Header(stamp), h, w, 0, 0, encoding, bigendian, payload)


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """Cut short (anywhere, also mid-word) and/or flip a few bytes."""
    buf = bytearray(data[:int(rng.integers(0, len(data) + 1))] if rng.random() < 0.7 else data)
    for _ in range(int(rng.integers(0, 4))):
        if buf:
            buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
    return bytes(buf)


# ---- the decoders' case streams ---------------------------------------------------------------

def evt3_cases(seed: int) -> Any:
    """EventPacket evt3 payloads through decode_packet (a fresh stream each): the default
    backend (numba where installed), each output checked against the numpy decoder's."""
    from blinktrack_ros.events.decode import decode_packet, prepare_evt3_backend
    from blinktrack_ros.events.encode import encode_evt3

    prepare_evt3_backend()  # numba compiles once, outside the cases' allocation budget
    rng = np.random.default_rng([seed, 3])
    for i in range(1 << 62):
        kind = KINDS[i % 3]
        if kind == "random":
            data = rng.integers(0, 256, int(rng.integers(0, 4096))).astype(np.uint8).tobytes()
        else:
            data = encode_evt3(_batch(rng, int(rng.integers(1, 400))), 1_000_000_000)
            if kind == "truncated":
                data = _mutate(rng, data)
            else:  # oversized: vector words claiming 12 events each, and time-high jumps
                words = np.frombuffer(data, "<u2").copy()
                k = rng.integers(0, words.size, max(1, words.size // 4))
                words[k] = rng.choice([0xB000, 0xBFFF, 0x8FFF, 0x7FFF, 0x9FFF], k.size)
                data = words.tobytes()
        msg = _packet("evt3", data, rng, bool(rng.random() < 0.2))
        yield Case(kind, len(data), lambda m=msg: decode_packet(m), _same_as_numpy(msg))


def _same_as_numpy(msg: Any) -> Callable[[Any], str | None]:
    """check_batch, then the same events and state as the numpy evt3 decoder."""
    from blinktrack_ros.events.decode import decode_packet

    def check(out: Any) -> str | None:
        problem = check_batch(out)
        if problem is not None:
            return problem
        ref, ref_state = decode_packet(msg, evt3_backend="numpy")
        if type(out[1].evt3) is not type(ref_state.evt3):
            return None  # the pypi backend (no numba): it differs at a stream's start (decode)
        if out[1] != ref_state:
            return "decoder state differs from the numpy decoder's"
        if any(not np.array_equal(getattr(out[0], k), getattr(ref, k)) for k in "xytp"):
            return "events differ from the numpy decoder's"
        return None
    return check


def mono_cases(seed: int) -> Any:
    """EventPacket mono payloads through decode_packet."""
    from blinktrack_ros.events.decode import decode_packet
    from blinktrack_ros.events.encode import encode_mono

    rng = np.random.default_rng([seed, 4])
    for i in range(1 << 62):
        kind = KINDS[i % 3]
        if kind == "random":
            data = rng.integers(0, 256, int(rng.integers(0, 4096))).astype(np.uint8).tobytes()
        else:
            data = encode_mono(_batch(rng, int(rng.integers(1, 400))), 1_000_000_000)
            if kind == "truncated":
                data = _mutate(rng, data)
            else:  # oversized: x/y far outside any sensor, dt at its maximum
                rec = np.frombuffer(data, "<u4").copy()
                rec[0::2] = 0xFFFFFFFF
                rec[1::2] = 0xFFFFFFFF
                data = rec.tobytes()
        msg = _packet("mono", data, rng, bool(rng.random() < 0.2))
        yield Case(kind, len(data), lambda m=msg: decode_packet(m), check_batch)


def _dvs_count_offset(data: bytes) -> int:
    """Payload offset of the event count of a serialized EventArray (little endian)."""
    n_id = struct.unpack_from("<I", data, 4 + 8)[0]
    return 4 + (12 + n_id + 3) // 4 * 4 + 8


def dvs_cases(seed: int) -> Any:
    """Serialized dvs_msgs/EventArray (CDR) through decode_dvs_cdr."""
    from blinktrack_ros.events.dvs import decode_dvs_cdr, serialize_dvs_event_array

    rng = np.random.default_rng([seed, 5])
    for i in range(1 << 62):
        kind = KINDS[i % 3]
        if kind == "random":
            data = rng.integers(0, 256, int(rng.integers(0, 2048))).astype(np.uint8).tobytes()
            if rng.random() < 0.5 and len(data) > 4:  # a valid encapsulation header
                data = b"\x00\x01\x00\x00" + data[4:]
        else:
            data = serialize_dvs_event_array(_batch(rng, int(rng.integers(0, 200))),
                                             1_000_000_000, "cam" * int(rng.integers(0, 4)))
            if kind == "truncated":
                data = _mutate(rng, data)
            else:  # oversized: the event count or the frame_id length claims up to 4 G
                buf = bytearray(data)
                big = int(rng.choice([2**32 - 1, 2**31, 10**9, 1 << 20]))
                at = _dvs_count_offset(data) if rng.random() < 0.6 else 4 + 8
                struct.pack_into("<I", buf, at, big)
                data = bytes(buf)
        yield Case(kind, len(data), lambda d=data: decode_dvs_cdr(d), check_batch)


IMAGE_ENCODINGS = ("mono8", "mono16", "bgr8", "rgb8", "bgra8", "rgba8", "8UC1", "16UC1",
                   "yuv422", "", "32FC1")


def image_cases(seed: int) -> Any:
    """sensor_msgs/Image fields through image_to_gray."""
    from blinktrack_ros.images import ENCODINGS, image_to_gray

    rng = np.random.default_rng([seed, 6])
    for i in range(1 << 62):
        kind = KINDS[i % 3]
        enc = str(rng.choice(IMAGE_ENCODINGS))
        bpp = np.prod(ENCODINGS[enc.lower()][:2]) if enc.lower() in ENCODINGS else 1
        h, w = int(rng.integers(0, 64)), int(rng.integers(0, 64))
        step = int(w * bpp + rng.integers(0, 8))
        size = step * h
        if kind == "random":
            h, w, step = (int(v) for v in rng.integers(-2, 80, 3))
            size = int(rng.integers(0, 8192))
        elif kind == "truncated":
            size = int(rng.integers(0, size + 1))
        else:  # declared sizes far beyond the data: up to 2**31 rows/columns/step
            big = int(rng.choice([2**31 - 1, 2**30, 1 << 20, 65536]))
            which = int(rng.integers(3))
            h, w, step = (big if which == 0 else h, big if which == 1 else w,
                          big if which == 2 else step)
        data = rng.integers(0, 256, size).astype(np.uint8).tobytes()
        big_endian = bool(rng.random() < 0.3)
        yield Case(kind, len(data),
                   lambda a=(enc, h, w, step, big_endian, data): image_to_gray(*a),
                   _check_image(h, w))


def _base_bag(folder: Path, rng: np.random.Generator) -> bytes:
    """An mcap file with an Image, a dvs EventArray and an evt3 EventPacket (bytes)."""
    from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, EVENT_PACKET, IMAGE, typestore
    from blinktrack_ros.bag.writer import BagWriter
    from blinktrack_ros.events.dvs import serialize_dvs_event_array
    from blinktrack_ros.events.encode import encode_evt3

    s = typestore()
    T = s.types
    stamp = T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](1, 0), "cam")
    image = T[IMAGE](stamp, 6, 8, "mono8", 0, 8, rng.integers(0, 256, 48).astype(np.uint8))
    packet = T[EVENT_PACKET](stamp, 240, 320, 0, 0, "evt3", False, np.frombuffer(
        encode_evt3(_batch(rng, 50), 1_000_000_000), np.uint8))
    path = folder / "base"
    with BagWriter(path) as bag:
        for k in range(3):
            bag.write("/image", IMAGE, 10**9 + k, image)
            bag.write("/events", EVENT_PACKET, 10**9 + k, packet)
            bag.write("/dvs", DVS_EVENT_ARRAY, 10**9 + k,
                      serialize_dvs_event_array(_batch(rng, 20), 10**9 + k))
    return next(path.glob("*.mcap")).read_bytes()


def _read_all(path: Path) -> list:
    """Everything a user does with a bag: the summary, then every message as core types."""
    from blinktrack_ros.bag.core import iter_core
    from blinktrack_ros.bag.reader import bag_summary

    bag_summary(path)
    return [m.value for m in iter_core(path)]


def _check_core(out: list) -> str | None:
    for item in out:
        if isinstance(item, EventBatch):
            problem = check_batch(item)
            if problem:
                return problem
    return None


def bag_cases(seed: int, folder: str | os.PathLike | None = None) -> Any:
    """Corrupted .mcap files through bag_summary and iter_core (one file, rewritten per case)."""
    rng = np.random.default_rng([seed, 7])
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        base = _base_bag(Path(tmp), rng)
        path = Path(tmp) / "case.mcap"
        for i in range(1 << 62):
            kind = KINDS[i % 3]
            if kind == "random":
                data = rng.integers(0, 256, int(rng.integers(0, 4096))).astype(
                    np.uint8).tobytes()
                if rng.random() < 0.5:  # past the magic: the record parser gets the bytes
                    data = base[:8] + data
            elif kind == "truncated":
                data = _mutate(rng, base)
            else:  # a record or field length (uint64/uint32 little endian) set huge
                buf = bytearray(base)
                at = int(rng.integers(8, len(buf) - 8))
                fmt = "<Q" if rng.random() < 0.5 else "<I"
                big = int(rng.choice([2**63 - 1, 2**40, 2**32 - 1, 1 << 24] if fmt == "<Q"
                                     else [2**32 - 1, 2**31, 1 << 24]))
                struct.pack_into(fmt, buf, at, big)
                data = bytes(buf)
            path.write_bytes(data)
            yield Case(kind, len(data), lambda: _read_all(path), _check_core)


DECODERS: dict[str, Callable[[int], Any]] = {
    "evt3": evt3_cases, "mono": mono_cases, "dvs_cdr": dvs_cases, "image": image_cases,
    "bag": bag_cases,
}


def fuzz_all(cases: int, seed: int = 0, only: tuple[str, ...] | None = None,
             progress: bool = False) -> dict[str, dict]:
    """`cases` seeded cases per decoder; {decoder: FuzzResult.as_dict()}."""
    out = {}
    for name, make in DECODERS.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        stream = make(seed)
        try:
            res = run_cases(name, _progress(stream, cases, name, progress), cases)
        finally:
            stream.close()
        out[name] = {**res.as_dict(), "wall_s": round(time.perf_counter() - t0, 1)}
    return out


def _progress(stream: Any, total: int, name: str, show: bool) -> Any:
    if not show:
        return stream
    from tqdm import tqdm

    return iter(tqdm(stream, total=total, desc=f"fuzz {name}", leave=False))
