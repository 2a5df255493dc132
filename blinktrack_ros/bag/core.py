"""Iterate bag topics in timestamp order as core types: EventBatch for events, gray frames."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
import heapq
import os
from typing import Any, NamedTuple

import numpy as np

from blinktrack_ros.bag.reader import BagError, iter_messages, open_bag
from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, EVENT_PACKET, IMAGE, LEGACY_EVENT_ARRAY
from blinktrack_ros.images import image_msg_to_gray


@dataclass(frozen=True)
class GrayFrame:
    """One camera image as the core uses it.

    Attributes:
        t_ns: header stamp in nanoseconds (the camera's capture time).
        frame_id: header frame_id.
        gray: (H, W) float32 in [0, 1].
    """

    t_ns: int
    frame_id: str
    gray: np.ndarray


class CoreMessage(NamedTuple):
    """One bag message converted to a core type.

    Attributes:
        topic, msgtype: where it came from.
        t_ns: log (receive) time in nanoseconds: the order of the iteration.
        value: EventBatch (event messages), GrayFrame (sensor_msgs/Image), otherwise the
            deserialized rosbags message.
    """

    topic: str
    msgtype: str
    t_ns: int
    value: Any


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _types_by_topic(paths: list) -> dict[str, str]:
    types: dict[str, str] = {}
    for path in paths:
        with open_bag(path) as bag:
            types.update({c.topic: c.msgtype for c in bag.connections})
    return types


def _decoded(messages: Iterator, stats: dict) -> Iterator[CoreMessage]:
    """Objects to core types; one event decoder state per topic."""
    states: dict[str, Any] = {}
    for m in messages:
        try:
            core = _core_of(m, states, stats)
        except (AttributeError, TypeError) as exc:
            # the bag's own definition of the type lacks a field we read (a damaged or foreign
            # definition; found by the fuzzing in bench/fuzz.py): name it, do not crash
            raise BagError(f"{m.topic}: {m.msgtype} message without the expected fields: "
                           f"{exc}") from exc
        if core is not None:
            yield core


def _core_of(m: Any, states: dict, stats: dict) -> CoreMessage | None:
    """The core-type message of one bag message (None: a truncated packet, counted)."""
    from blinktrack_ros.events.decode import (
        DecodeStats,
        TruncatedPacketError,
        UnsupportedEncodingError,
        decode_packet,
    )

    if m.msgtype in (EVENT_PACKET, LEGACY_EVENT_ARRAY):
        topic_stats = stats.setdefault(m.topic, DecodeStats())
        try:
            batch, states[m.topic] = decode_packet(m.msg, states.get(m.topic), topic_stats)
        except UnsupportedEncodingError as exc:
            raise BagError(f"{m.topic}: {exc}") from exc
        except TruncatedPacketError:
            return None  # counted in stats; the decoder state stays valid
        return CoreMessage(m.topic, m.msgtype, m.t_ns, batch)
    if m.msgtype == IMAGE:
        frame = GrayFrame(_stamp_ns(m.msg.header), m.msg.header.frame_id,
                          image_msg_to_gray(m.msg))
        return CoreMessage(m.topic, m.msgtype, m.t_ns, frame)
    return CoreMessage(m.topic, m.msgtype, m.t_ns, m.msg)


def _dvs(messages: Iterator, stats: dict) -> Iterator[CoreMessage]:
    """Raw dvs_msgs/EventArray CDR to EventBatch (the fast path)."""
    from blinktrack_ros.events.decode import DecodeStats, decode_dvs_cdr

    for m in messages:
        topic_stats = stats.setdefault(m.topic, DecodeStats())
        try:
            batch = decode_dvs_cdr(m.rawdata, topic_stats)
        except ValueError:  # truncated or malformed buffer: counted by the decoder
            continue
        yield CoreMessage(m.topic, m.msgtype, m.t_ns, batch)


def iter_core(paths: str | os.PathLike | Iterable[str | os.PathLike],
              topics: Sequence[str] | None = None,
              stats: dict | None = None) -> Iterator[CoreMessage]:
    """Yield the chosen topics of one or more bags in log-time order, as core types.

    Event messages (event_camera_msgs/EventPacket, event_array_msgs/EventArray: evt3, mono;
    dvs_msgs/EventArray from raw CDR) become EventBatch, sensor_msgs/Image a GrayFrame; other
    types stay rosbags messages. Truncated event messages are counted and skipped.

    Args:
        paths: bags as for `iter_messages`.
        topics: topics to read (None: all).
        stats: dict filled with topic -> DecodeStats of the event topics (validation counts).

    Raises:
        BagError: unreadable bag, unknown topic, or an event encoding we do not decode (named).
        ImageDecodeError: an image encoding we do not convert (named).
    """
    paths = _paths(paths)
    stats = {} if stats is None else stats
    types = _types_by_topic(paths)
    chosen = list(types) if topics is None else list(topics)
    dvs = [t for t in chosen if types.get(t) == DVS_EVENT_ARRAY]
    other = [t for t in chosen if t not in dvs]
    streams = []
    if other:
        streams.append(_decoded(iter_messages(paths, topics=other), stats))
    if dvs:
        streams.append(_dvs(iter_messages(paths, topics=dvs, raw=True), stats))
    yield from heapq.merge(*streams, key=lambda m: m.t_ns)
