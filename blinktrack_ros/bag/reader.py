"""Read ROS 2 (sqlite3, mcap) and ROS 1 bags with rosbags, in timestamp order.

Built on rosbags' storage readers (`rosbags.rosbag2.Reader`, `rosbags.rosbag1.Reader`) rather than
its AnyReader, for three kinds of real bags AnyReader rejects:
- bags without stored message definitions (older sqlite3 bags): types come from our typestore
  (`blinktrack_ros.bag.types.typestore`), also when only some connections lack a definition;
- mcap schemas in IDL written by rosidl (event-camera drivers), whose `#include` lines rosbags'
  IDL grammar does not accept: they are dropped (the included types are sections of the schema);
- a `metadata.yaml` with an empty `storage_identifier`: the storage files are opened directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import lru_cache
import heapq
import os
from pathlib import Path
import struct
from typing import Any, NamedTuple

import yaml

from blinktrack_ros.bag.types import typestore

STORAGE_SUFFIXES = (".mcap", ".db3")
KNOWN_STORAGE_IDS = ("mcap", "sqlite3")
SECTION_SEPARATOR = "=" * 80 + "\n"


class BagError(ValueError):
    """A bag that cannot be read as asked (not a bag, unknown topic, undecodable message)."""


class BagMessage(NamedTuple):
    """One message of a bag.

    Attributes:
        topic: topic name.
        msgtype: message type, "package/msg/Name".
        t_ns: log (receive) time in nanoseconds.
        msg: the deserialized rosbags message object; None when read with raw=True.
        rawdata: the CDR-serialized message when read with raw=True (ROS 1 messages are
            converted to CDR); None otherwise.
    """

    topic: str
    msgtype: str
    t_ns: int
    msg: Any
    rawdata: bytes | memoryview | None


def storage_paths(path: str | os.PathLike) -> list[Path]:
    """The files or directory rosbags opens for one bag.

    A ROS 1 .bag file, a .mcap/.db3 file, or a ROS 2 directory; a directory whose metadata names
    no storage plugin rosbags knows (drivers that write `storage_identifier: ""`), or that has no
    metadata, resolves to its .mcap / .db3 files.

    Raises:
        FileNotFoundError: the path does not exist.
        BagError: the path is not a bag.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_file():
        if path.suffix not in (".bag",) + STORAGE_SUFFIXES:
            raise BagError(f"{path} is not a bag (expected .bag, .mcap, .db3 or a directory)")
        return [path]
    meta_path = path / "metadata.yaml"
    if meta_path.is_file():
        meta = yaml.safe_load(meta_path.read_text()) or {}
        info = meta.get("rosbag2_bagfile_information", {})
        if info.get("storage_identifier") in KNOWN_STORAGE_IDS:
            return [path]
        listed = [path / Path(p).name for p in info.get("relative_file_paths", [])]
        files = [p for p in listed if p.suffix in STORAGE_SUFFIXES and p.is_file()]
        if files:
            return files
    files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    if not files:
        raise BagError(f"{path} holds no bag (no metadata.yaml, .mcap or .db3 files)")
    return files


def _strip_preprocessor(idl: str) -> str:
    return "\n".join(line for line in idl.splitlines() if not line.lstrip().startswith("#"))


def _types_from_definition(conn: Any) -> dict:
    """Types defined by one connection's stored definition ({} when it has none)."""
    return _parsed_definition(conn.msgdef.format, conn.msgdef.data, conn.msgtype)


@lru_cache(maxsize=256)
def _parsed_definition(fmt: Any, text: str, msgtype: str) -> dict:
    """Parsed once per definition text: rosbags' parser takes ~70 ms a type, and one bag is
    opened several times (summary, topic types, each stream); callers only read the dict."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    if fmt == MessageDefinitionFormat.MSG:
        return get_types_from_msg(text, msgtype)
    if fmt != MessageDefinitionFormat.IDL:
        return {}
    sections = ([s.split("\n", 1)[1] for s in text.split(SECTION_SEPARATOR)[1:]]
                if text.startswith(SECTION_SEPARATOR + "IDL: ") else [text])
    types: dict = {}
    for idl in sections:
        types.update(get_types_from_idl(_strip_preprocessor(idl)))
    return types


class _Def(NamedTuple):
    """What `_bag_typestore` reads of a connection (hashable: the store is cached by them)."""

    msgtype: str
    msgdef: Any
    digest: str


def _bag_typestore(connections: list, is_ros2: bool) -> Any:
    """Typestore of the bag's own definitions, completed by ours (ROS 2) where it has none.

    Cached by the definitions: building a store generates (de)serializer code for every type
    (~0.1 s), and one bag is opened several times (summary, topic types, each stream)."""
    return _typestore_of(tuple(dict.fromkeys(
        _Def(c.msgtype, c.msgdef, getattr(c, "digest", "") or "") for c in connections)),
        is_ros2)


@lru_cache(maxsize=32)
def _typestore_of(connections: tuple[_Def, ...], is_ros2: bool) -> Any:
    from rosbags.typesys import Stores, get_typestore

    defined: dict = {}
    for conn in connections:
        defined.update(_types_from_definition(conn))
    if is_ros2 and not defined and all(c.msgtype in typestore().fielddefs for c in connections):
        return typestore()  # the common case of old bags: no definitions at all
    types: dict = {}
    if is_ros2 and any(c.msgtype not in defined for c in connections):
        types.update(typestore().fielddefs)
    types.update(defined)
    missing = sorted({c.msgtype for c in connections if c.msgtype not in types})
    if missing:
        raise BagError(f"no definition for message types {missing}: the bag stores none and "
                       "blinktrack_ros.bag.types does not know them")
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    for conn in connections:
        if is_ros2 and conn.digest and (have := store.hash_rihs01(conn.msgtype)) != conn.digest:
            raise BagError(f"{conn.msgtype}: definition hash {have} differs from the bag's "
                           f"{conn.digest}")
    return store


@dataclass
class OpenBag:
    """One open bag: its rosbags storage readers and the typestore for its messages.

    Attributes:
        path: the bag as given.
        readers: open `rosbags.rosbag2.Reader`s (one per storage file when opened file by
            file) or one `rosbags.rosbag1.Reader`.
        is_ros2: CDR (ROS 2) or ROS 1 serialization.
        store: types from the bag's own definitions, completed by our typestore.
    """

    path: Path
    readers: list
    is_ros2: bool
    store: Any

    @property
    def connections(self) -> list:
        """All connections (rosbags `Connection`: topic, msgtype, msgcount, msgdef, ...)."""
        return [c for r in self.readers for c in r.connections]

    def raw_messages(self, topics: Sequence[str] | None = None,
                     types: Sequence[str] | None = None) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, log time ns, serialized bytes) of the chosen connections, time-ordered."""
        streams = []
        for reader in self.readers:
            conns = [c for c in reader.connections
                     if (topics is None or c.topic in topics)
                     and (types is None or c.msgtype in types)]
            if conns:
                streams.append(self._guarded(reader.messages(connections=conns)))
        return heapq.merge(*streams, key=lambda item: item[1])

    def _guarded(self, stream: Iterator) -> Iterator:
        """`stream` with rosbags' errors on a damaged file (a truncated record, a chunk whose
        declared length runs past the end) raised as BagError, like those of opening."""
        from rosbags.rosbag1 import ReaderError as ReaderError1
        from rosbags.rosbag2 import ReaderError as ReaderError2

        try:
            yield from stream
        except (ReaderError1, ReaderError2) as exc:
            raise BagError(f"cannot read bag {self.path}: {exc}") from exc
        except (KeyError, IndexError, OverflowError, struct.error, ValueError) as exc:
            raise BagError(f"cannot read bag {self.path} (damaged?): {type(exc).__name__}: "
                           f"{exc}") from exc

    def deserialize(self, conn: Any, t_ns: int, data: bytes | memoryview) -> Any:
        """One message of `raw_messages` as a rosbags object; BagError when it does not parse."""
        try:
            if self.is_ros2:
                return self.store.deserialize_cdr(data, conn.msgtype)
            return self.store.deserialize_ros1(data, conn.msgtype)
        except Exception as exc:  # rosbags raises SerdeError, struct.error, IndexError, ...
            raise BagError(f"{self.path}: {conn.topic} ({conn.msgtype}) at t={t_ns} ns: "
                           f"message does not deserialize: {exc}") from exc

    def to_cdr(self, conn: Any, t_ns: int, data: bytes | memoryview) -> bytes | memoryview:
        """One message of `raw_messages` as CDR (ROS 1 converted with the ROS 2 definition)."""
        if self.is_ros2:
            return data
        try:  # rosbags converts with the ROS 2 definition (it drops header.seq)
            return _ros2_store(conn.msgtype).ros1_to_cdr(data, conn.msgtype)
        except Exception as exc:
            raise BagError(f"{self.path}: {conn.topic} ({conn.msgtype}) at t={t_ns} ns: "
                           f"ROS 1 message does not convert to CDR: {exc}") from exc


def _ros2_store(msgtype: str) -> Any:
    store = typestore()
    if msgtype not in store.fielddefs:
        raise BagError(f"cannot convert ROS 1 {msgtype} to CDR: no ROS 2 definition known")
    return store


@contextmanager
def open_bag(path: str | os.PathLike) -> Iterator[OpenBag]:
    """Context manager: one bag (see `storage_paths`) open for reading, closed on exit.

    Raises:
        FileNotFoundError: the path does not exist.
        BagError: not a bag, unreadable, or message types without a definition.
    """
    from rosbags.rosbag1 import Reader as Reader1
    from rosbags.rosbag1 import ReaderError as ReaderError1
    from rosbags.rosbag2 import Reader as Reader2
    from rosbags.rosbag2 import ReaderError as ReaderError2
    from rosbags.typesys import TypesysError

    from blinktrack_ros.bag.mcapcheck import check_mcap

    files = storage_paths(path)
    is_ros2 = files[0].suffix != ".bag"
    for file in files:  # declared lengths against the file, before rosbags allocates them
        for mcap in ([file] if file.is_file() else sorted(file.glob("*.mcap"))):
            if mcap.suffix == ".mcap":
                check_mcap(mcap)
    with ExitStack() as stack:
        try:
            readers = []
            for file in files:
                reader = Reader2(file) if is_ros2 else Reader1(file)
                reader.open()
                stack.callback(reader.close)
                readers.append(reader)
            store = _bag_typestore([c for r in readers for c in r.connections], is_ros2)
        except (ReaderError1, ReaderError2, TypesysError) as exc:
            raise BagError(f"cannot read bag {path}: {exc}") from exc
        except BagError:
            raise
        except (KeyError, IndexError, OverflowError, struct.error, ValueError) as exc:
            # rosbags' parsers on a damaged file (measured by the fuzzing in bench/fuzz.py)
            raise BagError(f"cannot read bag {path} (damaged?): {type(exc).__name__}: "
                           f"{exc}") from exc
        yield OpenBag(Path(path), readers, is_ros2, store)


def _messages(bag: OpenBag, topics: Sequence[str] | None, types: Sequence[str] | None,
              raw: bool) -> Iterator[BagMessage]:
    for conn, t_ns, data in bag.raw_messages(topics, types):
        if raw:
            yield BagMessage(conn.topic, conn.msgtype, t_ns, None, bag.to_cdr(conn, t_ns, data))
        else:
            yield BagMessage(conn.topic, conn.msgtype, t_ns, bag.deserialize(conn, t_ns, data),
                             None)


def iter_messages(paths: str | os.PathLike | Iterable[str | os.PathLike],
                  topics: Sequence[str] | None = None, types: Sequence[str] | None = None,
                  raw: bool = False) -> Iterator[BagMessage]:
    """Yield the messages of one or more bags in log-time order (ties keep the bag order).

    Args:
        paths: one bag or several (ROS 1 .bag files, ROS 2 directories, .mcap/.db3 files).
        topics: keep only these topics (None: all).
        types: keep only these message types, "package/msg/Name" (None: all).
        raw: yield CDR bytes in `rawdata` instead of deserialized objects in `msg`.

    Raises:
        FileNotFoundError: a path does not exist.
        BagError: unreadable bag, a message that does not deserialize, or `topics`/`types`
            that match no connection in any bag.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    with ExitStack() as stack:
        bags = [stack.enter_context(open_bag(p)) for p in paths]
        if topics is not None or types is not None:
            _check_selection(bags, topics, types)
        yield from heapq.merge(*(_messages(b, topics, types, raw) for b in bags),
                               key=lambda m: m.t_ns)


def _check_selection(bags: list[OpenBag], topics: Sequence[str] | None,
                     types: Sequence[str] | None) -> None:
    conns = [c for b in bags for c in b.connections]
    if any((topics is None or c.topic in topics) and (types is None or c.msgtype in types)
           for c in conns):
        return
    available = sorted({f"{c.topic} ({c.msgtype})" for c in conns})
    raise BagError(f"nothing matches topics={list(topics or [])} types={list(types or [])} in "
                   f"{[str(b.path) for b in bags]}; available: {', '.join(available) or 'none'}")


def bag_summary(path: str | os.PathLike) -> dict:
    """Topics, types, message counts and time span of one bag (from its index, no decoding).

    Returns:
        {"path", "storage" ("ros1" or the file suffixes), "message_count", "start_ns",
         "end_ns" (last message), "duration_s", "topics": {name: {"type", "count"}}};
        times are None for an empty bag.
    """
    with open_bag(path) as bag:
        topics: dict[str, dict] = {}
        for conn in sorted(bag.connections, key=lambda c: c.topic):
            entry = topics.setdefault(conn.topic, {"type": conn.msgtype, "count": 0})
            if conn.msgtype not in entry["type"].split(", "):
                entry["type"] = f"{entry['type']}, {conn.msgtype}"
            entry["count"] += conn.msgcount
        count = sum(t["count"] for t in topics.values())
        start = min(r.start_time for r in bag.readers) if count else None
        # rosbags' end_time is one past the last message
        end = max(r.end_time for r in bag.readers) - 1 if count else None
        storage = "ros1" if not bag.is_ros2 else _storage_name(bag.readers[0])
    return {
        "path": str(path),
        "storage": storage,
        "message_count": count,
        "start_ns": start,
        "end_ns": end,
        "duration_s": (end - start) / 1e9 if count else None,
        "topics": topics,
    }


def _storage_name(reader: Any) -> str:
    name = type(reader.storage).__name__
    if name == "DirectoryReader":
        name = type(reader.storage.storages[0]).__name__ if reader.storage.storages else name
    return {"McapReader": "mcap", "Sqlite3Reader": "sqlite3"}.get(name, name)
