"""Events: the EventBatch type, message decoders and encoders, SBT-Max representations."""

from blinktrack_ros.events.batch import EventBatch

__all__ = ["EventBatch"]
