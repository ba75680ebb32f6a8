"""The input-event contract (topic ``demand.events``) and its decoder.

The decoder never raises on bad input: it returns an :class:`InvalidEvent` whose ``reason`` is
written for a human and whose ``code`` is a small, stable label for metrics.

>>> dec = EventDecoder(now_ms=lambda: 1_700_000_000_000)
>>> event = dec.decode(b'{"event_id":"e1","user_id":"u1","ts":1699999999000,"type":"view","category_id":"c9"}')
>>> event.user_id, event.type, event.category_id, event.item_id
('u1', 'view', 'c9', None)
>>> dec.decode(b'{"event_id":"e1","user_id":"u1","ts":1,"type":"teleport"}').code
'unknown_type'
>>> dec.decode(b'{"event_id":"e1","user_id":"u1","type":"view"}').reason
'missing required field `ts`'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Final, Literal, get_args

import msgspec

EventType = Literal["view", "search", "cart", "fav", "purchase", "review"]
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Text = Annotated[str, msgspec.Meta(max_length=4096)]


class Event(msgspec.Struct, frozen=True):
    """One shopper behaviour event. Unknown fields are ignored."""

    event_id: _Id
    user_id: _Id
    ts: Annotated[int, msgspec.Meta(ge=0, description="Event time, epoch milliseconds.")]
    type: EventType
    item_id: _Id | None = None
    category_id: _Id | None = None
    query: _Text | None = None
    text: _Text | None = None
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    price: Annotated[float, msgspec.Meta(ge=0, le=1e9)] | None = None


class InvalidEvent(msgspec.Struct, frozen=True):
    """Why a payload was refused. ``code`` is one of :data:`INVALID_CODES`."""

    code: str
    reason: str


INVALID_CODES: Final[tuple[str, ...]] = (
    "oversize",
    "bad_utf8",
    "malformed_json",
    "missing_field",
    "bad_field",
    "unknown_type",
    "ts_out_of_range",
    "missing_text",
)

_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> bytes:
    """Serialise an event as contract JSON, omitting nothing (``None`` fields stay explicit)."""
    return _encoder.encode(event)


class EventDecoder:
    """Decodes raw payloads into :class:`Event` or :class:`InvalidEvent`.

    ``now_ms`` is injectable so that the future-timestamp rule is testable.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 16_384,
        future_skew_ms: int = 24 * 3600 * 1000,
        min_ts_ms: int = 946_684_800_000,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self._decoder = msgspec.json.Decoder(Event)
        self._max_bytes = max_bytes
        self._future_skew_ms = future_skew_ms
        self._min_ts_ms = min_ts_ms
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def decode(self, raw: bytes | None) -> Event | InvalidEvent:
        """Decode one payload; every failure becomes an :class:`InvalidEvent`."""
        if raw is None:
            return InvalidEvent("malformed_json", "empty payload (tombstone)")
        if len(raw) > self._max_bytes:
            return InvalidEvent("oversize", f"payload of {len(raw)} bytes exceeds cap of {self._max_bytes}")
        try:
            event = self._decoder.decode(raw)
            # msgspec validates UTF-8 only in the fields it decodes; the contract refuses bad
            # UTF-8 anywhere in the payload, unknown fields included (checked after parsing, so a
            # truncated payload still reads as malformed JSON).
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return InvalidEvent("bad_utf8", f"payload is not valid UTF-8: {exc.reason} at byte {exc.start}")
        except msgspec.ValidationError as exc:
            return _classify_validation_error(str(exc))
        except msgspec.DecodeError as exc:
            return InvalidEvent("malformed_json", str(exc))
        except RecursionError:
            # msgspec recurses per nesting level, even through ignored fields: ~1,000 brackets
            # (2 KB) would otherwise crash the worker on every replay of the record.
            return InvalidEvent("malformed_json", "JSON nested too deeply")
        return self._check_semantics(event)

    def _check_semantics(self, event: Event) -> Event | InvalidEvent:
        if event.ts < self._min_ts_ms:
            return InvalidEvent("ts_out_of_range", f"ts {event.ts} is before {self._min_ts_ms} (epoch ms expected)")
        if event.ts > self._now_ms() + self._future_skew_ms:
            return InvalidEvent("ts_out_of_range", f"ts {event.ts} is too far in the future")
        if event.type == "search" and not (event.query and event.query.strip()):
            return InvalidEvent("missing_text", "search event needs a non-empty `query`")
        if event.type == "review" and not (event.text and event.text.strip()):
            return InvalidEvent("missing_text", "review event needs a non-empty `text`")
        return event


def _classify_validation_error(message: str) -> InvalidEvent:
    if message.startswith("Object missing required field"):
        return InvalidEvent("missing_field", message.replace("Object missing", "missing"))
    if message.startswith("Invalid enum value") and message.endswith("`$.type`"):
        return InvalidEvent("unknown_type", f"unknown event type: {message}")
    return InvalidEvent("bad_field", message)
