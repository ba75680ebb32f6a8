"""Deliberately broken payloads, to demonstrate (and test) the dead-letter path.

Each kind breaks one rule of the event contract, so every one of them must be refused by the
worker's :class:`~stream.contracts.EventDecoder` and land in the DLQ with a reason:

>>> import random
>>> from stream.contracts import EventDecoder, InvalidEvent, encode_event
>>> from tools.simulate.shoppers import ShopperSimulator
>>> event = next(iter(ShopperSimulator(seed=1, users=3)))
>>> bad = corrupt(encode_event(event), "unknown_type", random.Random(0))
>>> EventDecoder(now_ms=lambda: event.ts).decode(bad).code
'unknown_type'
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, NamedTuple

from stream.contracts import Event, encode_event

_OVERSIZE_BYTES: Final = 64 * 1024  # above any sane max_event_bytes (default 16 KiB)


def _truncated(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(1, len(raw) - 1)]


def _bad_utf8(raw: bytes, rng: random.Random) -> bytes:
    # A lone continuation byte inside the user id: structurally JSON, not UTF-8.
    return raw.replace(b'"user_id":"', b'"user_id":"\x80\xff', 1)


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes, random.Random], bytes]:
    def apply(raw: bytes, rng: random.Random) -> bytes:
        doc = json.loads(raw)
        change(doc)
        return json.dumps(doc, ensure_ascii=False).encode()

    return apply


def _oversize(raw: bytes, rng: random.Random) -> bytes:
    doc = json.loads(raw)
    doc["text"] = "很" * (_OVERSIZE_BYTES // 3)
    return json.dumps(doc, ensure_ascii=False).encode()


# kind -> how to break a valid payload; each name is the InvalidEvent code the decoder gives it.
CORRUPTIONS: Final[dict[str, Callable[[bytes, random.Random], bytes]]] = {
    "malformed_json": _truncated,
    "bad_utf8": _bad_utf8,
    "missing_field": _edit(lambda d: d.pop("user_id")),
    "bad_field": _edit(lambda d: d.update(ts="yesterday")),
    "unknown_type": _edit(lambda d: d.update(type="teleport")),
    "ts_out_of_range": _edit(lambda d: d.update(ts=d["ts"] // 1000)),  # seconds, not milliseconds
    "missing_text": _edit(lambda d: d.update(type="search", query="  ")),
    "oversize": _oversize,
}
MALFORMED_KINDS: Final[tuple[str, ...]] = tuple(CORRUPTIONS)


def corrupt(raw: bytes, kind: str, rng: random.Random) -> bytes:
    """Break the valid payload ``raw`` the way ``kind`` (one of :data:`MALFORMED_KINDS`) names."""
    return CORRUPTIONS[kind](raw, rng)


class Record(NamedTuple):
    """One message for the events topic; ``malformed`` names the corruption, if any."""

    key: bytes
    value: bytes
    ts: int
    malformed: str | None = None


def records(
    events: Iterable[Event], malformed_fraction: float = 0.0, seed: int = 0
) -> Iterator[Record]:
    """Kafka records for ``events``: key = user id (one user's events stay on one partition),
    value = contract JSON, with about ``malformed_fraction`` of the values broken (kinds drawn
    from :data:`MALFORMED_KINDS` by a generator seeded with ``seed``)."""
    if not 0.0 <= malformed_fraction <= 1.0:
        raise ValueError("malformed_fraction must be within [0, 1]")
    rng = random.Random(seed)
    for event in events:
        value = encode_event(event)
        if malformed_fraction and rng.random() < malformed_fraction:
            kind = rng.choice(MALFORMED_KINDS)
            yield Record(event.user_id.encode(), corrupt(value, kind, rng), event.ts, kind)
        else:
            yield Record(event.user_id.encode(), value, event.ts)
