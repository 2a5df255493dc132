"""Vectorised EVT 3.0 decoding of one packet with explicit state in and out.

EVT 3.0 (Prophesee) is a stream of 16-bit words; the 4 most significant bits give the type and
the 12 others the payload. The word types used here (facts from the Prophesee format spec):

    0x0 EVT_ADDR_Y     y = bits 0-10 (bit 11: system type), sets the current row
    0x2 EVT_ADDR_X     one event: x = bits 0-10, polarity = bit 11
    0x3 VECT_BASE_X    base x = bits 0-10, polarity = bit 11 for the next vector words
    0x4 VECT_12        12 validity bits: events at base x + i; then base x += 12
    0x5 VECT_8         8 validity bits: events at base x + i; then base x += 8
    0x6 EVT_TIME_LOW   low 12 bits of the 24-bit microsecond time
    0x8 EVT_TIME_HIGH  high 12 bits of the 24-bit microsecond time
    0xA EXT_TRIGGER    external trigger (counted, not returned)
    0x7, 0xE, 0xF      CONTINUED_4, OTHERS, CONTINUED_12 (ignored)

Time is `(high << 12 | low)` microseconds and wraps every 2**24 us (16.8 s). A wrap is declared
when a time-high value is smaller than the previous one by more than 10 units (smaller steps
back are sensor bit noise, as in event_camera_codecs). Events are emitted only after the first
valid time: a TIME_HIGH followed by a TIME_LOW; words before that, other than time words, are
ignored. All of this runs on whole numpy arrays: each forward-filled quantity (row, time-high,
time-low, vector base) is found per event word with one `searchsorted` on the sorted word
indices of its setter type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, TIME_HIGH, EXT_TRIGGER = (
    0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0xA)
KNOWN_CODES = frozenset({0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF})
WRAP_MIN_STEP = 10  # time-high steps back by at most this much are noise, not a wrap
_BITS12 = np.arange(12, dtype=np.uint16)


@dataclass(frozen=True)
class Evt3State:
    """Decoder registers carried from one packet to the next.

    Attributes:
        valid: a TIME_HIGH then a TIME_LOW have been seen (events are emitted from then on).
        time_high: high time bits already shifted (`high << 12`) plus wraps (`n << 24`), us.
        time_low: last low 12 time bits, us.
        y: current row; base_x, polarity: current vector base.
    """

    valid: bool = False
    time_high: int = 0
    time_low: int = 0
    y: int = 0
    base_x: int = 0
    polarity: int = 0


@dataclass(frozen=True)
class Evt3Raw:
    """Events of one packet before bounds checks: x, y, p and sensor time t_us (int64)."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t_us: np.ndarray
    triggers: int
    unknown_words: int


def _last_setter(setter_idx: np.ndarray, at_idx: np.ndarray) -> np.ndarray:
    """(M,) index into setter_idx of the last setter before each at_idx word, -1 if none."""
    return np.searchsorted(setter_idx, at_idx) - 1


def _time_high(code: np.ndarray, words: np.ndarray, state: Evt3State):
    """Word indices of TIME_HIGH words and their full (wrapped, shifted) values."""
    hidx = np.flatnonzero(code == TIME_HIGH)
    hv = (words[hidx] & 0xFFF).astype(np.int64)
    prev = np.empty_like(hv)
    if hv.size:
        prev[0] = (state.time_high >> 12) & 0xFFF
        prev[1:] = hv[:-1]
    wraps = np.cumsum((prev - hv) > WRAP_MIN_STEP)
    full = ((state.time_high >> 24) + wraps) << 24 | (hv << 12)
    return hidx, full


def _valid_start(code: np.ndarray, hidx: np.ndarray, state: Evt3State) -> int | None:
    """First word index from which events count (None: no valid time in this packet)."""
    if state.valid:
        return 0
    if hidx.size == 0:
        return None
    after = np.flatnonzero(code[hidx[0] + 1:] == TIME_LOW)
    return None if after.size == 0 else int(hidx[0] + 1 + after[0] + 1)


def _fill(setter_idx: np.ndarray, setter_val: np.ndarray, at_idx: np.ndarray, default: int):
    j = _last_setter(setter_idx, at_idx)
    out = setter_val[np.maximum(j, 0)] if setter_val.size else np.zeros(at_idx.shape, np.int64)
    return np.where(j >= 0, out, default), j


def decode_evt3_words(words: np.ndarray, state: Evt3State) -> tuple[Evt3Raw, Evt3State]:
    """Decode (N,) uint16 EVT 3.0 words; return the raw events and the state after them."""
    code = words >> 12
    hidx, hfull = _time_high(code, words, state)
    start = _valid_start(code, hidx, state)
    lidx = np.flatnonzero(code == TIME_LOW)
    lv = (words[lidx] & 0xFFF).astype(np.int64)
    unknown = int(np.count_nonzero(~np.isin(code, list(KNOWN_CODES)))) if code.size else 0
    end_state_time = dict(
        time_high=int(hfull[-1]) if hfull.size else state.time_high,
        time_low=int(lv[-1]) if lv.size else state.time_low)
    if start is None:
        empty = np.zeros(0, np.int64)
        raw = Evt3Raw(empty.astype(np.uint16), empty.astype(np.uint16), empty.astype(np.uint8),
                      empty, 0, unknown)
        return raw, Evt3State(False, y=state.y, base_x=state.base_x, polarity=state.polarity,
                              **end_state_time)
    sub = code[start:]
    yidx = np.flatnonzero(sub == ADDR_Y) + start
    bidx = np.flatnonzero(sub == VECT_BASE_X) + start
    is_vect = (sub >> 1) == 2  # VECT_12 or VECT_8
    eidx = np.flatnonzero((sub == ADDR_X) | is_vect) + start
    triggers = int(np.count_nonzero(sub == EXT_TRIGGER))

    ew = words[eidx]
    ecode = code[eidx]
    high, _ = _fill(hidx, hfull, eidx, state.time_high)
    low, _ = _fill(lidx, lv, eidx, state.time_low)
    ey, _ = _fill(yidx, (words[yidx] & 0x7FF).astype(np.int64), eidx, state.y)
    ev_t = high | low

    # vector base x: last VECT_BASE_X value plus the increments of vector words since then
    inc = np.where(ecode == VECT_12, 12, np.where(ecode == VECT_8, 8, 0))
    cum = np.zeros(inc.size + 1, np.int64)
    np.cumsum(inc, out=cum[1:])
    bw = words[bidx].astype(np.int64)
    base_at_b = (bw & 0x7FF) - cum[np.searchsorted(eidx, bidx)]
    bx, jb = _fill(bidx, base_at_b, eidx, state.base_x)
    base = bx + cum[:-1]
    bpol = np.where(jb >= 0, (bw[np.maximum(jb, 0)] >> 11) & 1 if bw.size else 0, state.polarity)

    valid = np.where(ecode == ADDR_X, 1, ew & np.where(ecode == VECT_12, 0xFFF, 0xFF))
    valid = valid.astype(np.uint16)
    xbase = np.where(ecode == ADDR_X, ew & 0x7FF, base)
    pol = np.where(ecode == ADDR_X, (ew >> 11) & 1, bpol)
    bits = ((valid[:, None] >> _BITS12) & 1).astype(bool)  # M 12
    row, col = np.nonzero(bits)
    x = (xbase[row] + col).astype(np.uint16)
    raw = Evt3Raw(x, ey[row].astype(np.uint16), pol[row].astype(np.uint8), ev_t[row],
                  triggers, unknown)
    last_b = int(bidx[-1]) if bidx.size else -1
    if last_b >= 0:
        k = np.searchsorted(eidx, last_b)
        end_base, end_pol = int((bw[-1] & 0x7FF) + cum[-1] - cum[k]), int((bw[-1] >> 11) & 1)
    else:
        end_base, end_pol = state.base_x + int(cum[-1]), state.polarity
    new_state = Evt3State(True, y=int(words[yidx[-1]] & 0x7FF) if yidx.size else state.y,
                          base_x=end_base, polarity=end_pol, **end_state_time)
    return raw, new_state

