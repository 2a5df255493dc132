"""Events: the EventBatch type, message decoders and encoders, SBT-Max representations.

Modules: `batch` (EventBatch), `decode` (EventPacket / legacy EventArray / dvs decoders,
DecodeStats, DecoderState), `evt3` (vectorised EVT 3.0), `dvs` (dvs_msgs CDR), `encode`
(evt3 / mono / dvs encoders), `sbt` (SBT-Max frame and patches), `bench` (speed figures).
"""

from blinktrack_ros.events.batch import EventBatch

__all__ = ["EventBatch"]
