"""Iterate bag topics in timestamp order as core types: EventBatch for events, gray frames."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
import heapq
import itertools
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
        count: bag messages it stands for (more than 1: consecutive evt3 packets decoded as
            one, see `iter_core`'s join_packets; t_ns is then the last one's).
    """

    topic: str
    msgtype: str
    t_ns: int
    value: Any
    count: int = 1


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


def _decoded(messages: Iterator, stats: dict, join_packets: int = 1
             ) -> Iterator[CoreMessage]:
    """Objects to core types; one event decoder state per topic; runs of up to join_packets
    consecutive evt3 packets of one topic decoded as one (see iter_core)."""
    states: dict[str, Any] = {}
    run: list = []  # evt3 packets waiting to be decoded together
    for m in itertools.chain(messages, [None]):  # None: the end, decodes the last run
        try:
            if m is not None and join_packets > 1 and _joinable(m):
                if run and (m.topic != run[-1].topic or len(run) >= join_packets
                            or _stamp_ns(m.msg.header) < _stamp_ns(run[-1].msg.header)):
                    yield from _decode_run(run, states, stats)
                    run = []
                run.append(m)
                continue
            if run:
                yield from _decode_run(run, states, stats)
                run = []
            core = None if m is None else _core_of(m, states, stats)
        except (AttributeError, TypeError) as exc:
            # the bag's own definition of the type lacks a field we read (a damaged or foreign
            # definition; found by the fuzzing in bench/fuzz.py): name it, do not crash
            where = m if m is not None else run[-1]
            raise BagError(f"{where.topic}: {where.msgtype} message without the expected "
                           f"fields: {exc}") from exc
        if core is not None:
            yield core


def _joinable(m: Any) -> bool:
    """An evt3 packet with a whole number of words (what decode_packets joins)."""
    return (m.msgtype in (EVENT_PACKET, LEGACY_EVENT_ARRAY) and str(m.msg.encoding) == "evt3"
            and len(m.msg.events) % 2 == 0)


def _decode_run(run: list, states: dict, stats: dict) -> Iterator[CoreMessage]:
    """One CoreMessage for a run of evt3 packets of one topic: their payloads joined and
    decoded in one call (the same events, times, state and counts as packet by packet)."""
    from blinktrack_ros.events.decode import DecodeStats, decode_packets

    if len(run) == 1:
        core = _core_of(run[0], states, stats)
        if core is not None:
            yield core
        return
    last = run[-1]
    topic_stats = stats.setdefault(last.topic, DecodeStats())
    batch, states[last.topic] = decode_packets([m.msg for m in run], states.get(last.topic),
                                               topic_stats)
    yield CoreMessage(last.topic, last.msgtype, last.t_ns, batch, len(run))


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
              stats: dict | None = None, join_packets: int = 1) -> Iterator[CoreMessage]:
    """Yield the chosen topics of one or more bags in log-time order, as core types.

    Event messages (event_camera_msgs/EventPacket, event_array_msgs/EventArray: evt3, mono;
    dvs_msgs/EventArray from raw CDR) become EventBatch, sensor_msgs/Image a GrayFrame; other
    types stay rosbags messages. Truncated event messages are counted and skipped.

    Args:
        paths: bags as for `iter_messages`.
        topics: topics to read (None: all).
        stats: dict filled with topic -> DecodeStats of the event topics (validation counts).
        join_packets: up to this many evt3 EventPackets of one topic that follow each other
            in the bag (no message of another chosen topic between them, header stamps not
            going back) become one CoreMessage (`count` says how many): their payloads are
            one word stream, decoded in one call with the same events, times and counts as
            packet by packet, about 2x faster for the few-hundred-event packets drivers
            publish at low rates (`blinktrack bench events`). 1: one per message.

    Raises:
        BagError: unreadable bag, unknown topic, or an event encoding we do not decode (named).
        ImageDecodeError: an image encoding we do not convert (named).
    """
    if join_packets < 1:
        raise ValueError(f"join_packets must be >= 1, got {join_packets}")
    paths = _paths(paths)
    stats = {} if stats is None else stats
    types = _types_by_topic(paths)
    chosen = list(types) if topics is None else list(topics)
    dvs = [t for t in chosen if types.get(t) == DVS_EVENT_ARRAY]
    other = [t for t in chosen if t not in dvs]
    streams = []
    if other:
        streams.append(_decoded(iter_messages(paths, topics=other), stats, join_packets))
    if dvs:
        streams.append(_dvs(iter_messages(paths, topics=dvs, raw=True), stats))
    yield from heapq.merge(*streams, key=lambda m: m.t_ns)
