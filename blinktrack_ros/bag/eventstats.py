"""Decode every event message of a bag and count: what `blinktrack info BAG --events` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import time
from typing import Any

from blinktrack_ros.bag.reader import BagError, OpenBag, open_bag
from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, EVENT_PACKET, LEGACY_EVENT_ARRAY

EVENT_TYPES = (EVENT_PACKET, LEGACY_EVENT_ARRAY, DVS_EVENT_ARRAY)


@dataclass
class TopicEvents:
    """Decoding results of one event topic.

    Attributes:
        topic, msgtype: the topic and its message type.
        messages: messages read; decoded: messages decoded; truncated: messages whose payload
            ended early (skipped); undecodable: messages that do not deserialize (skipped);
            unsupported: messages of an encoding we do not decode.
        unsupported_encodings: encoding name -> number of messages.
        events, on, off: decoded events (after validation drops).
        width, height: sensor size given by the last message.
        t_first_ns, t_last_ns: first and last event time (None without events).
        decode_s: seconds spent in the decoder (message deserialization excluded).
        counters: the decoder's validation counters (DecodeStats) for packet topics.
    """

    topic: str
    msgtype: str
    messages: int = 0
    decoded: int = 0
    truncated: int = 0
    undecodable: int = 0
    unsupported: int = 0
    unsupported_encodings: dict[str, int] = field(default_factory=dict)
    events: int = 0
    on: int = 0
    off: int = 0
    width: int = 0
    height: int = 0
    t_first_ns: int | None = None
    t_last_ns: int | None = None
    decode_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def mev_per_s(self) -> float | None:
        """Decode speed in million events per second (None when nothing was timed)."""
        return self.events / self.decode_s / 1e6 if self.decode_s > 0 and self.events else None

    def add_batch(self, batch: Any) -> None:
        """Count one decoded EventBatch."""
        self.decoded += 1
        self.width, self.height = int(batch.width), int(batch.height)
        n = len(batch)
        if not n:
            return
        n_on = int(batch.p.sum(dtype="int64"))
        self.events += n
        self.on += n_on
        self.off += n - n_on
        if self.t_first_ns is None:
            self.t_first_ns = int(batch.t[0])
        self.t_last_ns = int(batch.t[-1])

    def as_dict(self) -> dict:
        """Plain dict for JSON (units in the key names)."""
        return {
            "type": self.msgtype, "messages": self.messages, "decoded_messages": self.decoded,
            "truncated_messages": self.truncated, "undecodable_messages": self.undecodable,
            "unsupported_messages": self.unsupported,
            "unsupported_encodings": dict(self.unsupported_encodings),
            "events": self.events, "on": self.on, "off": self.off,
            "width_px": self.width, "height_px": self.height,
            "t_first_ns": self.t_first_ns, "t_last_ns": self.t_last_ns,
            "decode_s": self.decode_s, "decode_mev_per_s": self.mev_per_s,
            "counters": dict(self.counters),
        }


def event_topics(path: str | os.PathLike) -> dict[str, str]:
    """Topic -> message type of the bag's event topics (EventPacket, legacy and dvs EventArray)."""
    with open_bag(path) as bag:
        return {c.topic: c.msgtype for c in bag.connections if c.msgtype in EVENT_TYPES}


class _Decoders:
    """Per-topic decoder state and counters; `decode` returns a batch or None (counted)."""

    def __init__(self, topics: list[str]) -> None:
        from blinktrack_ros.events import decode
        from blinktrack_ros.events.dvs import DvsTruncatedError

        self.api = decode
        self.truncated_errors = (decode.TruncatedPacketError, DvsTruncatedError)
        self.states: dict[str, Any] = dict.fromkeys(topics)
        self.stats = {t: decode.DecodeStats() for t in topics}

    def decode(self, bag: OpenBag, conn: Any, t_ns: int, data: Any, res: TopicEvents) -> Any:
        api, topic = self.api, conn.topic
        try:
            if conn.msgtype == DVS_EVENT_ARRAY:
                payload = bag.to_cdr(conn, t_ns, data)
            else:
                payload = bag.deserialize(conn, t_ns, data)
                res.width, res.height = int(payload.width), int(payload.height)
        except BagError:
            res.undecodable += 1
            return None
        t0 = time.perf_counter()
        try:
            if conn.msgtype == DVS_EVENT_ARRAY:
                return api.decode_dvs_cdr(payload, self.stats[topic])
            batch, self.states[topic] = api.decode_packet(payload, self.states[topic],
                                                          self.stats[topic])
            return batch
        except api.UnsupportedEncodingError as exc:
            res.unsupported += 1
            res.unsupported_encodings[exc.encoding] = \
                res.unsupported_encodings.get(exc.encoding, 0) + 1
        except self.truncated_errors:  # the decoder state stays valid
            res.truncated += 1
        finally:
            res.decode_s += time.perf_counter() - t0
        return None


def decode_bag_events(path: str | os.PathLike, show_progress: bool | None = None
                      ) -> dict[str, TopicEvents]:
    """Decode every message of every event topic of one bag, in log-time order.

    EventPacket and legacy EventArray messages go through `events.decode.decode_packet` (one
    decoder state per topic); dvs_msgs/EventArray through `decode_dvs_cdr` on the raw CDR.
    Messages that do not deserialize, of unsupported encodings, or truncated, are counted and
    skipped.

    Args:
        path: the bag.
        show_progress: tqdm bar on stderr (None: only on a terminal).

    Returns:
        topic -> TopicEvents, in topic order.
    """
    from tqdm import tqdm

    with open_bag(path) as bag:
        topics = {c.topic: c.msgtype for c in bag.connections if c.msgtype in EVENT_TYPES}
        total = sum(c.msgcount for c in bag.connections if c.topic in topics)
        results = {t: TopicEvents(t, ty) for t, ty in sorted(topics.items())}
        decoders = _Decoders(list(topics))
        disable = None if show_progress is None else not show_progress
        with tqdm(total=total, unit="msg", desc="decoding events", disable=disable,
                  leave=False) as progress:
            for conn, t_ns, data in bag.raw_messages(topics=list(topics)):
                res = results[conn.topic]
                res.messages += 1
                progress.update(1)
                batch = decoders.decode(bag, conn, t_ns, data, res)
                if batch is not None:
                    res.add_batch(batch)
    for topic, res in results.items():
        res.counters = {k: v for k, v in decoders.stats[topic].as_dict().items() if v}
    return results
