"""Write ROS 2 bags (mcap by default) with the types of `blinktrack_ros.bag.types.typestore`."""

from __future__ import annotations

from contextlib import suppress
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from blinktrack_ros.bag.types import typestore

STORAGES = ("mcap", "sqlite3")


class BagWriter:
    """A ROS 2 bag being written; use as a context manager.

    Connections are created on a topic's first message, with the full message definition and
    its RIHS01 hash stored, so rosbags, `ros2 bag` and Foxglove read the bag back. On leaving the
    block the bag is closed (index and metadata.yaml written), also after an exception, so what
    was written stays readable.

    Example:
        with BagWriter("out_bag") as bag:
            bag.write("/tracks", TRACK_ARRAY, t_ns, msg)
    """

    def __init__(self, path: str | os.PathLike, storage: str = "mcap") -> None:
        """Prepare a new bag directory `path` (it must not exist yet).

        Raises:
            ValueError: unknown storage.
            FileExistsError: `path` exists.
        """
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage {storage!r}; choose one of {STORAGES}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already: choose a new bag path or "
                                  "remove it")
        self.storage = storage
        self._writer: Any = None
        self._connections: dict[str, Any] = {}  # topic -> rosbags Connection
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        """Create the bag directory and open its storage."""
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Close the bag (index and metadata); abort the storage only if closing fails."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except BaseException:
            with suppress(Exception):
                writer.abort()
            if exc_type is None:
                raise

    def write(self, topic: str, msgtype: str, t_ns: int, msg: Any) -> None:
        """Append one message.

        Args:
            topic: topic name; one message type per topic.
            msgtype: "package/msg/Name", a type of `typestore()`.
            t_ns: log time in nanoseconds (>= 0).
            msg: a rosbags message object of `typestore()`, or its CDR serialization
                (bytes/memoryview, little-endian with the 4-byte encapsulation header).

        Raises:
            RuntimeError: the writer is not open (use it in a `with` block).
            KeyError: unknown message type.
            ValueError: the topic already carries another type, or t_ns < 0.
        """
        if self._writer is None:
            raise RuntimeError("BagWriter is not open: use `with BagWriter(path) as bag:`")
        if t_ns < 0:
            raise ValueError(f"{topic}: negative log time {t_ns} ns")
        conn = self._connections.get(topic) or self._add_connection(topic, msgtype)
        if conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} carries {conn.msgtype}, not {msgtype}")
        if isinstance(msg, (bytes, bytearray, memoryview)):
            data = msg
        else:
            data = typestore().serialize_cdr(msg, msgtype)
        self._writer.write(conn, int(t_ns), data)
        self.counts[topic] += 1

    def _add_connection(self, topic: str, msgtype: str) -> Any:
        store = typestore()
        if msgtype not in store.fielddefs:
            raise KeyError(f"unknown message type {msgtype!r}: not in blinktrack_ros.bag.types")
        conn = self._writer.add_connection(topic, msgtype, typestore=store)
        self._connections[topic] = conn
        self.counts[topic] = 0
        return conn
