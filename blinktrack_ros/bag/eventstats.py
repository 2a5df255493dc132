"""Decode every event message of a bag and count: what `blinktrack info BAG --events` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import time
from typing import Any

from blinktrack_ros.bag.reader import iter_messages, open_bag
from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, EVENT_PACKET, LEGACY_EVENT_ARRAY

PACKET_TYPES = (EVENT_PACKET, LEGACY_EVENT_ARRAY)
EVENT_TYPES = PACKET_TYPES + (DVS_EVENT_ARRAY,)


@dataclass
class TopicEvents:
    """Decoding results of one event topic.

    Attributes:
        topic, msgtype: the topic and its message type.
        messages: messages read; decoded: messages decoded; truncated: messages whose payload
            ended inside a word (skipped); unsupported: messages of an encoding we do not decode.
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
            "truncated_messages": self.truncated, "unsupported_messages": self.unsupported,
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


def _packet_topics(path: str | os.PathLike, topics: dict[str, str],
                   progress: Any) -> dict[str, TopicEvents]:
    from blinktrack_ros.events.decode import (
        DecodeStats,
        TruncatedPacketError,
        UnsupportedEncodingError,
        decode_packet,
    )

    results = {t: TopicEvents(t, ty) for t, ty in topics.items()}
    states: dict[str, Any] = dict.fromkeys(topics)
    stats = {t: DecodeStats() for t in topics}
    for m in iter_messages(path, topics=list(topics)):
        res = results[m.topic]
        res.messages += 1
        res.width, res.height = int(m.msg.width), int(m.msg.height)
        progress.update(1)
        t0 = time.perf_counter()
        try:
            batch, states[m.topic] = decode_packet(m.msg, states[m.topic], stats[m.topic])
        except UnsupportedEncodingError as exc:
            res.unsupported += 1
            res.unsupported_encodings[exc.encoding] = res.unsupported_encodings.get(
                exc.encoding, 0) + 1
            continue
        except TruncatedPacketError:
            res.truncated += 1  # the decoder counted it; its state stays valid
            continue
        finally:
            res.decode_s += time.perf_counter() - t0
        res.add_batch(batch)
    for topic, res in results.items():
        res.counters = {k: v for k, v in stats[topic].as_dict().items() if v}
    return results


def _dvs_topics(path: str | os.PathLike, topics: dict[str, str],
                progress: Any) -> dict[str, TopicEvents]:
    from blinktrack_ros.events.decode import DecodeStats, decode_dvs_cdr

    results = {t: TopicEvents(t, ty) for t, ty in topics.items()}
    stats = {t: DecodeStats() for t in topics}
    for m in iter_messages(path, topics=list(topics), raw=True):
        res = results[m.topic]
        res.messages += 1
        progress.update(1)
        t0 = time.perf_counter()
        try:
            batch = decode_dvs_cdr(m.rawdata, stats[m.topic])
        except ValueError:  # DvsTruncatedError: the buffer ends early
            res.truncated += 1
            continue
        finally:
            res.decode_s += time.perf_counter() - t0
        res.add_batch(batch)
    for topic, res in results.items():
        res.counters = {k: v for k, v in stats[topic].as_dict().items() if v}
    return results


def decode_bag_events(path: str | os.PathLike, show_progress: bool | None = None
                      ) -> dict[str, TopicEvents]:
    """Decode every message of every event topic of one bag.

    EventPacket and legacy EventArray messages go through `events.decode.decode_packet` (one
    decoder state per topic); dvs_msgs/EventArray through `decode_dvs_cdr` on the raw CDR.
    Messages of unsupported encodings and truncated payloads are counted, not fatal.

    Args:
        path: the bag.
        show_progress: tqdm bar on stderr (None: only on a terminal).

    Returns:
        topic -> TopicEvents, in topic order.
    """
    from tqdm import tqdm

    topics = event_topics(path)
    with open_bag(path) as bag:
        total = sum(c.msgcount for c in bag.connections if c.topic in topics)
    packet = {t: ty for t, ty in topics.items() if ty in PACKET_TYPES}
    dvs = {t: ty for t, ty in topics.items() if ty == DVS_EVENT_ARRAY}
    disable = None if show_progress is None else not show_progress
    with tqdm(total=total, unit="msg", desc="decoding events", disable=disable,
              leave=False) as progress:
        results = _packet_topics(path, packet, progress) if packet else {}
        if dvs:
            results.update(_dvs_topics(path, dvs, progress))
    return dict(sorted(results.items()))
