"""`main()` of the node executables: init, build, spin, shut down (cleanly on every signal)."""

from __future__ import annotations

from collections.abc import Callable
import sys
from typing import Any

from rclpy.node import Node

EXIT_GRACE_S = 5.0


def _exit_watchdog() -> Any:
    """A started timer that ends the process if teardown takes longer than EXIT_GRACE_S; cancel
    it when teardown is done. DDS teardown occasionally hangs (a known class of upstream bugs,
    e.g. ros2/system_tests#486); a stopped node must not keep a launch file waiting."""
    import os
    import threading

    def _exit() -> None:
        sys.stderr.write(f"blinktrack_ros: shutdown did not finish within {EXIT_GRACE_S} s "
                         "(DDS teardown); exiting\n")
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(EXIT_GRACE_S, _exit)
    timer.daemon = True
    timer.start()
    return timer


def run(make_node: Callable[..., Node], args: list[str] | None = None,
        multithreaded: bool = False) -> int:
    """`main()` of a node executable: init, build (invalid parameters: exit 2), spin, shut down.

    SIGINT/SIGTERM (rclpy's handlers shut the context down) end the process with 0 whenever they
    arrive: while the node is being built, while it spins, or in the race where the executor
    builds its wait set on a context that was just shut down (rclpy raises RCLError there).
    """
    import rclpy
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    rclpy.init(args=args)
    node = None
    try:
        try:
            node = make_node()
        except (ValueError, InvalidParameterValueException) as exc:
            if not rclpy.ok():
                return 0
            rclpy.logging.get_logger("blinktrack_ros").fatal(f"invalid parameters: {exc}")
            return 2
        executor = MultiThreadedExecutor() if multithreaded else SingleThreadedExecutor()
        for each in getattr(node, "nodes", [node]):
            executor.add_node(each)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real error, not the shutdown racing the build or the spin
            raise
    finally:
        watchdog = _exit_watchdog()
        try:
            if node is not None:
                try:
                    node.destroy_node()
                except Exception:  # destroying after shutdown can fail; the process ends anyway
                    if rclpy.ok():
                        raise
            rclpy.try_shutdown()
        finally:
            watchdog.cancel()
    return 0
