"""The `numba` evt3 backend: decoding and every per-packet check in one compiled pass.

Same semantics as `events.evt3.decode_evt3_words` (the numpy backend; its docstring states
them: registers carried in `Evt3State`, wraps, events only after a valid time) followed by
`events.decode._finish` (bounds, backwards counts, polarity counts) and the sensor-to-ROS time
offset of `events.decode._decode_evt3`: the tests compare the three outputs, the counters and
the states after every packet. The per-packet checks cost as much as the PyPI decoder itself
when done with numpy calls on a few hundred events (README timing table); here they are a
few instructions per event inside the decoding loop.

numba is optional (`blinktrack_ros.jit`): `available()` says whether the kernel compiled (about
2 s the first time, 0.1-0.5 s from numba's disk cache); where it did not, `events.decode`
uses its other backends.
"""

from __future__ import annotations

import numpy as np

from blinktrack_ros.events.evt3 import (
    _UNKNOWN,
    ADDR_X,
    ADDR_Y,
    EXT_TRIGGER,
    TIME_HIGH,
    TIME_LOW,
    VECT_8,
    VECT_12,
    VECT_BASE_X,
    WRAP_MIN_STEP,
)
from blinktrack_ros.jit import Kernel


def _check_capacity(kernel) -> None:
    """Compile for both payload kinds; a time word, a row word, one event, a vector of 3."""
    word = np.array([0x8001, 0x6002, 0x2004, 0x3005, 0x4007], "<u2")
    for payload in (word.view(np.uint8).copy(), np.frombuffer(word.tobytes(), np.uint8)):
        if kernel(payload, False) != 13:  # 1 (ADDR_X) + 12 (VECT_12)
            raise RuntimeError(f"capacity {kernel(payload, False)} for 13 event slots")


def _check(kernel) -> None:
    """Compile for the payloads messages bring (writable arrays, read-only bytes); check one."""
    word = np.array([0x8001, 0x6002, 0x0003, 0x2004], "<u2")  # time, row, one event
    for payload in (word.view(np.uint8).copy(), np.frombuffer(word.tobytes(), np.uint8)):
        cols = columns(1)
        got = kernel(payload, False, 8, 8, False, 0, 0, 0, 0, 0, 0, 0, False, 0, False, 0, *cols)
        if got[0] != 1 or int(cols[0][0]) != 4:
            raise RuntimeError(f"a one-event packet gave {got[0]} events")


def columns(cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Empty x, y (uint16), t (int64), p (uint8) columns for `cap` events (what
    `_decode_words` writes into)."""
    return (np.empty(cap, np.uint16), np.empty(cap, np.uint16), np.empty(cap, np.int64),
            np.empty(cap, np.uint8))


def _capacity(buf, big_endian):
    """The most events an evt3 payload can hold: one per ADDR_X word, 12 / 8 per vector word
    (the Python source numba compiles; `buf` as in `_decode_words`)."""
    words = buf.view(np.uint16)
    cap = 0
    shift = np.uint16(4 if big_endian else 12)  # type: high nibble of the word's 2nd byte
    for i in range(words.shape[0]):  # (uint16 throughout: vectorised, 2x faster)
        c = (words[i] >> shift) & np.uint16(0xF)
        cap += np.int64(c == np.uint16(ADDR_X)) + 12 * np.int64(c == np.uint16(VECT_12)) + \
            8 * np.int64(c == np.uint16(VECT_8))
    return cap


def _decode_words(buf, big_endian, width, height, valid, time_high, time_low, row, base_x, pol,
                  stamp_sec, stamp_nanosec, has_offset, offset_ns, has_last, last_t_ns,
                  xs, ys, ts, ps):
    """Decode one payload and check its events (the Python source numba compiles).

    Args:
        buf: (2N,) uint8 payload, C-contiguous: N EVT 3.0 words.
        big_endian: the words are big-endian (`is_bigendian`); little-endian otherwise.
        width: sensor width; bounds are checked when width and height are > 0.
        height: sensor height.
        valid: register of `Evt3State` (a time high then low seen).
        time_high: register (shifted high time bits plus wraps, us).
        time_low: register (low time bits, us).
        row: register (current y).
        base_x: register (vector base x).
        pol: register (vector polarity).
        stamp_sec: header stamp seconds (the offset is fixed at the first event).
        stamp_nanosec: header stamp nanoseconds.
        has_offset: the offset was fixed by an earlier packet.
        offset_ns: ROS time minus sensor time, ns (when has_offset).
        has_last: an event was returned before.
        last_t_ns: the last event time returned before (backwards across packets).
        xs: x column (uint16) of at least `_capacity(buf, big_endian)` events, written.
        ys: y column (uint16), the same size.
        ts: t column (int64 ns), the same size.
        ps: p column (uint8), the same size.

    Returns:
        the counters n (events kept: written to the first n rows of the columns, unsorted
        when `backwards` > 0), dropped, backwards, across, n_on, triggers, unknown;
        has_offset, offset; the registers after the packet (valid, time_high, time_low, row,
        base_x, pol); has_last, last_t_ns. (The columns are the caller's: a scalar tuple
        comes back from numba in a fraction of the time four new arrays take, measured.)
    """
    words = buf.view(np.uint16)
    n_words = words.shape[0]
    header_ns = np.int64(stamp_sec) * 1_000_000_000 + stamp_nanosec
    valid = bool(valid)
    time_high = np.int64(time_high)
    time_low = np.int64(time_low)
    row = np.int64(row)
    base_x = np.int64(base_x)
    pol = np.int64(pol)
    wraps = time_high >> 24
    prev_high = (time_high >> 12) & 0xFFF
    seen_high = False
    check = width > 0 and height > 0
    if not check:
        width = 1 << 16
        height = 1 << 16
    n = 0
    dropped = 0
    backwards = 0
    n_on = 0
    triggers = 0
    unknown = 0
    offset = offset_ns
    fixed = bool(has_offset)
    prev_t = np.int64(-(1 << 62))
    for i in range(n_words):
        w = np.int64(words[i])
        if big_endian:
            w = ((w & 0xFF) << 8) | (w >> 8)
        c = w >> 12
        if c == ADDR_X:  # EVT_ADDR_X: one event (the most common word: its own short path)
            if not valid:
                continue
            if not fixed:  # the first event fixes the sensor-to-ROS offset
                offset = header_ns - (time_high | time_low) * 1000
                fixed = True
            x = w & 0x7FF
            if x >= width or row >= height:
                dropped += 1
                continue
            t_ns = (time_high | time_low) * 1000 + offset
            backwards += t_ns < prev_t
            prev_t = t_ns
            xs[n] = x
            ys[n] = row
            ts[n] = t_ns
            ev_pol = (w >> 11) & 1
            ps[n] = ev_pol
            n_on += ev_pol
            n += 1
        elif c == ADDR_Y:
            if valid:
                row = w & 0x7FF
        elif c == TIME_LOW:
            time_low = w & 0xFFF
            if seen_high:
                valid = True
        elif c == TIME_HIGH:
            hv = w & 0xFFF
            if prev_high - hv > WRAP_MIN_STEP:
                wraps += 1
            prev_high = hv
            time_high = (wraps << 24) | (hv << 12)
            seen_high = True
        elif c == VECT_12 or c == VECT_8:  # events at base x + i; then base x += 12 / 8
            if not valid:
                continue
            first_x = base_x
            if c == VECT_12:
                bits = w & 0xFFF
                base_x += 12
            else:
                bits = w & 0xFF
                base_x += 8
            if bits == 0:
                continue
            t_us = time_high | time_low
            if not fixed:
                offset = header_ns - t_us * 1000
                fixed = True
            t_ns = t_us * 1000 + offset
            k = 0
            while bits:
                if bits & 1:
                    x = (first_x + k) & 0xFFFF
                    if x >= width or row >= height:
                        dropped += 1
                    else:
                        backwards += t_ns < prev_t
                        prev_t = t_ns
                        xs[n] = x
                        ys[n] = row
                        ts[n] = t_ns
                        ps[n] = pol
                        n_on += pol
                        n += 1
                bits >>= 1
                k += 1
        elif c == VECT_BASE_X:
            if valid:
                base_x = w & 0x7FF
                pol = (w >> 11) & 1
        elif c == EXT_TRIGGER:
            if valid:
                triggers += 1
        elif _UNKNOWN[c]:  # the word types events.evt3 does not know
            unknown += 1
        # CONTINUED_4, OTHERS, CONTINUED_12: ignored
    across = False
    if n > 0 and has_last:  # the first event once sorted (the smallest) before the last one
        across = (ts[:n].min() if backwards else ts[0]) < last_t_ns
    if n > 0:
        has_last = True
        last_t_ns = ts[:n].max() if backwards else ts[n - 1]  # the last once sorted
    return (n, dropped, backwards, across, n_on, triggers, unknown, fixed, offset, valid,
            time_high, time_low, row, base_x, pol, has_last, last_t_ns)


CAPACITY = Kernel(_capacity, _check_capacity, "the evt3 capacity kernel")
KERNEL = Kernel(_decode_words, _check, "the evt3 kernel")


def available() -> bool:
    """True when both kernels compiled and checked (`blinktrack_ros.jit`)."""
    return KERNEL.available() and CAPACITY.available()


def error() -> str | None:
    """Why the kernels are not available (None when they are)."""
    return KERNEL.error() or CAPACITY.error()


def kernels() -> tuple:
    """(capacity, decode) compiled; ImportError where they are not available."""
    return CAPACITY.compiled(), KERNEL.compiled()
