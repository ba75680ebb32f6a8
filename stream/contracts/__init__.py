"""Wire contracts of the topics: input events, predictions and dead-letter records."""

from stream.contracts.events import (
    EVENT_TYPES,
    Event,
    EventDecoder,
    EventType,
    InvalidEvent,
    encode_event,
)
from stream.contracts.predictions import CategoryScore, DeadLetter, Prediction

__all__ = [
    "EVENT_TYPES",
    "CategoryScore",
    "DeadLetter",
    "Event",
    "EventDecoder",
    "EventType",
    "InvalidEvent",
    "Prediction",
    "encode_event",
]
