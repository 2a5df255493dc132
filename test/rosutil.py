"""Helpers shared by the ROS tests (processes on private domains, spinning until a condition,
the translating texture the node tests publish). Imports nothing from rclpy itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
import fcntl
import os
import tempfile
import time

import numpy as np


def spin_until(executor, predicate, timeout_s: float) -> bool:
    """Spin `executor` until predicate() is true or timeout_s passes (no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


@contextmanager
def private_domain(salt: int = 0) -> Iterator[int]:
    """A ROS domain id in 20..99 that no other test process using this helper holds (an
    exclusive lock file per id in the temp folder, held until the block ends).

    The tests used to take 20 + pid % 80: two test runs at once (two checkouts, CI jobs) could
    draw the same id, and then one run's nodes answer the other's messages.
    """
    start = (os.getpid() + salt) % 80
    for k in range(80):
        domain = 20 + (start + k) % 80
        f = open(os.path.join(tempfile.gettempdir(), f"blinktrack_ros_domain_{domain}.lock"),
                 "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            yield domain
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        return
    raise RuntimeError("all ROS domains 20..99 are held by other test processes")


def stamp_ns(msg) -> int:
    """A message's header stamp in ns (ROS-free: reads sec / nanosec)."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def round_trip(executor, publish: Callable[[int], None], replies: list, first_ns: int,
               timeout_s: float, period_s: float = 0.5) -> int:
    """Publish probes stamped first_ns, first_ns + 1 ms, ... every period_s until a reply
    stamped like one of them arrives in `replies`; returns that stamp.

    Why not wait for matched endpoints: the driver's get_subscription_count() /
    get_publisher_count() tell what the driver's side has matched, not whether the node's
    reader has matched the driver's writer or the node's writer the driver's reader (DDS
    discovery matches each side on its own). Under load the gap is seconds, and a volatile
    message published into it is lost: the failure "no TrackArray for t=..." after a 10 s wait.
    A reply to a probe proves the whole path is matched; a probe must not change what the test
    checks (an empty observation array, a blank frame).
    """
    deadline = time.monotonic() + timeout_s
    sent: set[int] = set()
    t_ns = first_ns
    while time.monotonic() < deadline:
        publish(t_ns)
        sent.add(t_ns)
        t_ns += 1_000_000
        if spin_until(executor, lambda: any(stamp_ns(m) in sent for m in replies), period_s):
            first = min(stamp_ns(m) for m in replies if stamp_ns(m) in sent)
            # the probes sent after the answered one are answered too: take those replies now,
            # so that none arrives among the test's own
            later = {t for t in sent if t > first}
            answered = lambda later=later: later <= {stamp_ns(m) for m in replies}  # noqa: E731
            if not spin_until(executor, answered, timeout_s):
                raise AssertionError("probes after the first answered one got no reply")
            return first
    raise AssertionError(f"no reply to {len(sent)} probes in {timeout_s} s")


def texture(rng: np.random.Generator, width: int = 136, height: int = 112) -> np.ndarray:
    """A smooth random texture in [0, 255] (float32) with corners for Shi-Tomasi and KLT."""
    import cv2

    tex = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min()) * 255


def translated(tex: np.ndarray, shift_px: np.ndarray, size: tuple[int, int] = (96, 72),
               origin: float = -20.0) -> np.ndarray:
    """uint8 frame of `size` (w, h) showing `tex` moved by shift_px (x, y) from `origin`."""
    import cv2

    m = np.float32([[1, 0, origin + shift_px[0]], [0, 1, origin + shift_px[1]]])
    return cv2.warpAffine(tex, m, size).astype(np.uint8)
