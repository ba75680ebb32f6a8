"""Property tests of ``EventDecoder`` alone (no servers): it never raises, and it classifies right.

Kept next to the worker fuzz test because both use the same hostile-payload strategies
(test_fuzz_strategies.py). Together these tests run ~28,000 payloads through the decoder.
"""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_strategies import INVALID_KINDS, encode_valid, invalid_payloads, valid_docs

from stream.contracts import Event, EventDecoder, InvalidEvent
from stream.contracts.events import INVALID_CODES

DECODER = EventDecoder()  # the worker's defaults: 16 KiB cap, 1 day of future skew, 2000-01-01
MUTANTS_PER_EXAMPLE = 20
_FAST = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _well_formed(result: object) -> Event | InvalidEvent:
    assert isinstance(result, Event | InvalidEvent), type(result)
    if isinstance(result, InvalidEvent):
        assert result.code in INVALID_CODES, result
        assert result.reason.strip(), result
    return result


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    """A few random byte edits (insert, delete, overwrite) of ``raw``."""
    out = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(out))
        op = rng.choice(("insert", "delete", "overwrite"))
        if op == "insert":
            out.insert(at, rng.randrange(256))
        elif at < len(out):
            if op == "delete":
                del out[at]
            else:
                out[at] = rng.randrange(256)
    return bytes(out)


@_FAST
@given(st.binary(max_size=2000) | st.none())
def test_arbitrary_bytes_never_raise(raw: bytes | None) -> None:
    _well_formed(DECODER.decode(raw))


@settings(_FAST, max_examples=600)
@given(valid_docs(), st.randoms(use_true_random=False))
def test_mutated_valid_payloads_never_raise(doc: dict[str, object], rng: random.Random) -> None:
    raw = encode_valid(doc, "e1")
    for _ in range(MUTANTS_PER_EXAMPLE):  # 600 x 20 = 12,000 mutants
        _well_formed(DECODER.decode(_mutate(raw, rng)))


@settings(_FAST, max_examples=10_000)
@given(st.binary(max_size=400))
def test_random_bytes_are_refused(raw: bytes) -> None:
    # 400 random bytes cannot hold the four required fields of a JSON event.
    assert isinstance(_well_formed(DECODER.decode(raw)), InvalidEvent)


@settings(_FAST, max_examples=4_000)
@given(invalid_payloads())
def test_every_constructed_invalid_payload_is_refused(case: tuple[str, bytes]) -> None:
    kind, raw = case
    result = _well_formed(DECODER.decode(raw))
    assert isinstance(result, InvalidEvent), (kind, raw[:300])
    if kind == "oversize":
        assert result.code == "oversize"
    if kind == "ts_out_of_range" and result.code != "bad_field":  # beyond int64 is a type error
        assert result.code == "ts_out_of_range"


@settings(_FAST, max_examples=1_500)
@given(valid_docs(), st.booleans())
def test_every_valid_payload_decodes_to_its_event(doc: dict[str, object], ascii_only: bool) -> None:
    result = _well_formed(DECODER.decode(encode_valid(doc, "e-1", ascii_only)))
    assert isinstance(result, Event), result
    assert result.event_id == "e-1" and result.user_id == doc["user_id"] and result.ts == doc["ts"]
    assert result.type == doc["type"] and result.query == doc.get("query") and result.text == doc.get("text")


def test_every_invalid_kind_is_exercised() -> None:
    # Keeps the strategy table and the docs' list of hostile inputs in step.
    assert set(INVALID_KINDS) >= {
        "truncated", "wrong_type", "nan_infinity", "huge_string", "huge_array", "deep_nesting",
        "bad_utf8", "unknown_type", "ts_out_of_range", "oversize",
    }  # fmt: skip


def test_deep_nesting_is_refused_not_raised() -> None:
    # Regression: msgspec raised RecursionError (not DecodeError) at ~1,000 levels, even inside an
    # ignored field, and the worker died on the record, again on every replay.
    base = '{"event_id":"e","user_id":"u","ts":1700000000000,"type":"view","x":'
    for depth in (1_000, 5_000, 7_000):
        result = DECODER.decode((base + "[" * depth + "]" * depth + "}").encode())
        assert isinstance(result, InvalidEvent) and result.code == "malformed_json", depth
    assert isinstance(DECODER.decode((base + json.dumps([[[1]]]) + "}").encode()), Event)
