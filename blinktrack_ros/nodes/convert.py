"""Message <-> core conversions: ObservationArray, TrackArray, stamps, event and image inputs.

Every function takes or returns rclpy message objects (the generated `blinktrack_ros.msg`
types) and the core's numpy types. Arrays go in and out through `array.array` buffers (no
per-element Python loops). Messages whose array lengths do not match raise `MalformedMessageError`
naming the field, for the node to count and log (never to crash).
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.decode import (
    DecoderState,
    DecodeStats,
    decode_dvs_cdr,
    decode_packet,
    prepare_evt3_backend,
)
from blinktrack_ros.tracking.fusion_types import TrackSnapshot
from blinktrack_ros.tracking.observation import Observations, Source

NS_PER_S = 1_000_000_000
EVENT_PACKET = "event_camera_msgs/EventPacket"
DVS_EVENT_ARRAY = "dvs_msgs/EventArray"
EVENT_MSG_TYPES = (EVENT_PACKET, DVS_EVENT_ARRAY)


class MalformedMessageError(ValueError):
    """A message whose fields are inconsistent (array lengths, values); the text says which."""


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (sec, nanosec) to int ns."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def set_stamp(stamp: Any, t_ns: int) -> None:
    """Write int ns into a builtin_interfaces/Time in place (sec may be negative)."""
    sec, nanosec = divmod(int(t_ns), NS_PER_S)
    stamp.sec, stamp.nanosec = sec, nanosec


def _arr(typecode: str, values: np.ndarray, dtype: type) -> array.array:
    """A typed array.array with the bytes of `values` (what rclpy array fields store)."""
    out = array.array(typecode)
    out.frombytes(np.ascontiguousarray(values, dtype=dtype).tobytes())
    return out


def _np(values: Any, dtype: type) -> np.ndarray:
    """(N,) numpy copy of an rclpy array field (array.array, bytes or list)."""
    if isinstance(values, (array.array, bytes, bytearray, memoryview)):
        return np.frombuffer(values, dtype=dtype).copy()
    return np.asarray(values, dtype=dtype).reshape(-1)


def _check_len(name: str, values: np.ndarray, expected: int) -> None:
    if values.shape[0] != expected:
        raise MalformedMessageError(f"{name} has {values.shape[0]} values, expected {expected}")


def cov2x2_to_flat(cov: np.ndarray) -> np.ndarray:
    """(N, 2, 2) covariances to (N*3,) float32 xx xy yy (the message layout)."""
    cov = np.asarray(cov).reshape(-1, 2, 2)
    return np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]], axis=1).astype(np.float32)


def flat_to_cov2x2(flat: np.ndarray) -> np.ndarray:
    """(N*3,) xx xy yy to (N, 2, 2) float64 symmetric covariances."""
    xx, xy, yy = np.asarray(flat, np.float64).reshape(-1, 3).T
    return np.stack([np.stack([xx, xy], 1), np.stack([xy, yy], 1)], 1)


def observations_to_msg(obs: Observations, frame_id: str = "") -> Any:
    """Observations -> blinktrack_ros/ObservationArray (float32 fields, stamp = obs.t_ns)."""
    from blinktrack_ros.msg import ObservationArray

    msg = ObservationArray()
    set_stamp(msg.header.stamp, obs.t_ns)
    msg.header.frame_id = frame_id
    msg.source = int(obs.source)
    msg.ids = _arr("I", obs.ids, np.uint32)
    msg.positions = _arr("f", np.asarray(obs.positions_px).reshape(-1), np.float32)
    msg.covariances = _arr("f", cov2x2_to_flat(obs.covariances).reshape(-1), np.float32)
    msg.visibility = _arr("f", obs.visibility, np.float32)
    return msg


def msg_to_observations(msg: Any) -> Observations:
    """ObservationArray -> Observations (float64 arrays).

    Raises:
        MalformedMessageError: unknown source, or array lengths that do not match len(ids).
    """
    try:
        source = Source(int(msg.source))
    except ValueError:
        raise MalformedMessageError(f"unknown source {msg.source}") from None
    ids = _np(msg.ids, np.uint32)
    n = ids.shape[0]
    pos, cov, vis = (_np(msg.positions, np.float32), _np(msg.covariances, np.float32),
                     _np(msg.visibility, np.float32))
    _check_len("positions", pos, 2 * n)
    _check_len("covariances", cov, 3 * n)
    _check_len("visibility", vis, n)
    return Observations(source, stamp_to_ns(msg.header.stamp), ids,
                        pos.astype(np.float64).reshape(n, 2), flat_to_cov2x2(cov),
                        vis.astype(np.float64))


def snapshot_to_msg(snap: TrackSnapshot, frame_id: str = "",
                    undistorted: np.ndarray | None = None) -> Any:
    """TrackSnapshot -> blinktrack_ros/TrackArray.

    Args:
        snap: the engine's snapshot (N tracks).
        frame_id: the camera frame.
        undistorted: (N, 2) normalised undistorted xy (x/z, y/z), or None (field left empty).
    """
    from blinktrack_ros.msg import TrackArray

    msg = TrackArray()
    set_stamp(msg.header.stamp, snap.t_ns)
    msg.header.frame_id = frame_id
    msg.ids = _arr("I", snap.ids, np.uint32)
    msg.positions = _arr("f", np.asarray(snap.positions_px).reshape(-1), np.float32)
    msg.velocities = _arr("f", np.asarray(snap.velocities_px_s).reshape(-1), np.float32)
    msg.covariances = _arr("f", cov2x2_to_flat(snap.covariances).reshape(-1), np.float32)
    msg.status = _arr("B", snap.status, np.uint8)
    msg.last_source = _arr("B", snap.last_source, np.uint8)
    msg.age = _arr("f", snap.age_s, np.float32)
    if undistorted is not None:
        und = np.asarray(undistorted).reshape(-1, 2)
        if und.shape[0] != len(snap):
            raise ValueError(f"undistorted has {und.shape[0]} rows for {len(snap)} tracks")
        msg.undistorted = _arr("f", und.reshape(-1), np.float32)
    return msg


def msg_to_snapshot(msg: Any) -> TrackSnapshot:
    """TrackArray -> TrackSnapshot (what the event and image nodes need: ids and positions).

    Raises:
        MalformedMessageError: array lengths that do not match len(ids).
    """
    ids = _np(msg.ids, np.uint32)
    n = ids.shape[0]
    cols = {"positions": (np.float32, 2), "velocities": (np.float32, 2),
            "covariances": (np.float32, 3), "status": (np.uint8, 1),
            "last_source": (np.uint8, 1), "age": (np.float32, 1)}
    vals = {}
    for name, (dtype, per) in cols.items():
        vals[name] = _np(getattr(msg, name), dtype)
        _check_len(name, vals[name], per * n)
    return TrackSnapshot(
        t_ns=stamp_to_ns(msg.header.stamp), ids=ids,
        positions_px=vals["positions"].astype(np.float64).reshape(n, 2),
        velocities_px_s=vals["velocities"].astype(np.float64).reshape(n, 2),
        covariances=flat_to_cov2x2(vals["covariances"]), status=vals["status"],
        last_source=vals["last_source"], age_s=vals["age"].astype(np.float64))


@dataclass
class EventInput:
    """Decodes one event stream (EventPacket messages, or raw dvs_msgs/EventArray CDR bytes).

    Attributes:
        msg_type: EVENT_PACKET or DVS_EVENT_ARRAY.
        state: the EventPacket decoder state carried between packets.
        stats: decode counters (drops, backwards times, ...), reported in diagnostics.
    """

    msg_type: str
    state: DecoderState | None = None
    stats: DecodeStats = field(default_factory=DecodeStats)

    def __post_init__(self) -> None:
        """Reject unknown message types."""
        if self.msg_type not in EVENT_MSG_TYPES:
            raise ValueError(f"event message type {self.msg_type!r} is not one of "
                             f"{', '.join(EVENT_MSG_TYPES)}")
        if self.msg_type != DVS_EVENT_ARRAY:
            prepare_evt3_backend()  # compile the evt3 kernel now, not at the first packet

    def decode(self, msg: Any) -> EventBatch:
        """Decode one message (an EventPacket object, or bytes of a serialized dvs EventArray).

        Raises:
            ValueError: unsupported encoding or truncated payload (the decoders' errors); the
                stream state stays valid for the next message.
        """
        if self.msg_type == DVS_EVENT_ARRAY:
            return decode_dvs_cdr(msg, self.stats)
        batch, self.state = decode_packet(msg, self.state, self.stats)
        return batch

    def reset(self) -> None:
        """Forget the stream state (after time went backwards, e.g. a looped bag)."""
        self.state = None
