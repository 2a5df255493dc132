"""blinktrack_node: the event, image and fusion nodes in one process (lowest latency).

The three nodes run on one MultiThreadedExecutor, each in its own (mutually exclusive) callback
group, so event windows, frames and fusion proceed in parallel. Observations go to the fusion
node by direct call (they are still published on each module's ~/observations), and fused
snapshots go back to the modules through a one-slot mailbox read at their next callback.
"""

from __future__ import annotations

from typing import Any

from blinktrack_ros.nodes.base import run
from blinktrack_ros.nodes.event import EventNode
from blinktrack_ros.nodes.fusion import FusionNode
from blinktrack_ros.nodes.image import ImageNode


class BlinktrackNodes:
    """The three nodes wired in-process; `nodes` to add to an executor."""

    def __init__(self, modules: Any = None, **node_kwargs: Any) -> None:
        """Build the nodes; `modules` (.event, .image, optional .fusion) from the core default."""
        self.event = EventNode(getattr(modules, "event", None), subscribe_tracks=False,
                               **node_kwargs)
        modules = modules or self.event.modules
        self.image = ImageNode(modules.image, subscribe_tracks=False, **node_kwargs)
        self.fusion = FusionNode(getattr(modules, "fusion", None), subscribe_observations=False,
                                 **node_kwargs)
        self.event.observation_sink = lambda obs: self.fusion.fuse(obs, self.event.cfg.frame_id)
        self.image.observation_sink = self.fusion.fuse
        self.fusion.snapshot_listeners += [self._to_event, self._to_image]
        self.nodes = [self.event, self.image, self.fusion]

    def _to_event(self, snap: Any) -> None:
        self.event.pending_tracks = snap

    def _to_image(self, snap: Any) -> None:
        self.image.pending_tracks = snap

    def destroy_node(self) -> None:
        """Destroy the three nodes."""
        for node in self.nodes:
            node.destroy_node()


def main(args: list[str] | None = None) -> int:
    """The blinktrack_node executable."""
    return run(BlinktrackNodes, args, multithreaded=True)
