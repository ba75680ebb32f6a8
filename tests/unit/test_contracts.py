"""The event decoder over every kind of bad input the contract names, and schema drift."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import pytest

from stream.contracts import CategoryScore, DeadLetter, Event, EventDecoder, InvalidEvent, Prediction, encode_event
from stream.contracts.events import INVALID_CODES
from stream.contracts.schemas import render, schema_documents

NOW = 1_700_000_000_000
DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def decoder(**kwargs: int) -> EventDecoder:
    return EventDecoder(now_ms=lambda: NOW, **kwargs)


def valid(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {"event_id": "e1", "user_id": "u1", "ts": NOW - 1000, "type": "view", "category_id": "c"}
    event.update(overrides)
    return event


def raw(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def test_valid_event_round_trips_with_chinese_text_and_unknown_fields() -> None:
    payload = valid(type="search", query="蓝牙耳机 降噪", extra_field={"ignored": True}, price=12.5)
    event = decoder().decode(raw(payload))
    assert isinstance(event, Event)
    assert event.query == "蓝牙耳机 降噪" and event.price == 12.5
    assert decoder().decode(encode_event(event)) == event


@pytest.mark.parametrize(
    ("payload", "code", "in_reason"),
    [
        (b"x" * 20_000, "oversize", "exceeds cap"),
        (b'{"event_id":"e1","user_id":"\xff\xfe","ts":1,"type":"view"}', "bad_utf8", "UTF-8"),
        (b'{"event_id":"e1","user_id":"u","ts":1700000000000,"type":"view","extra":"\xc3\x28"}', "bad_utf8", "UTF-8"),
        (b'{"event_id":"e1",', "malformed_json", "truncated"),
        (b"", "malformed_json", ""),
        (b"[1,2,3]", "bad_field", "object"),
        (raw({"user_id": "u", "ts": NOW, "type": "view"}), "missing_field", "event_id"),
        (raw(valid(ts="yesterday")), "bad_field", "$.ts"),
        (raw(valid(user_id=42)), "bad_field", "$.user_id"),
        (raw(valid(user_id="")), "bad_field", "$.user_id"),
        (raw(valid(type="teleport")), "unknown_type", "teleport"),
        (raw(valid(rating=9)), "bad_field", "$.rating"),
        (raw(valid(price=-1)), "bad_field", "$.price"),
        (b'{"event_id":"e1","user_id":"u","ts":1700000000000,"type":"view","price":1e999}', "bad_field", "$.price"),
        (b'{"event_id":"e1","user_id":"u","ts":1700000000000,"type":"view","price":NaN}', "malformed_json", ""),
        (raw(valid(ts=NOW + 3 * 86_400_000)), "ts_out_of_range", "future"),
        (raw(valid(ts=12)), "ts_out_of_range", "before"),
        (raw(valid(type="search")), "missing_text", "query"),
        (raw(valid(type="review", text="   ")), "missing_text", "text"),
        (raw(valid(text="长" * 5000)), "bad_field", "$.text"),
    ],
)
def test_every_bad_input_becomes_a_reasoned_invalid_event(payload: bytes, code: str, in_reason: str) -> None:
    result = decoder().decode(payload)
    assert isinstance(result, InvalidEvent)
    assert result.code == code and result.code in INVALID_CODES
    assert in_reason in result.reason
    assert result.reason  # a human-readable reason, never empty


def test_none_payload_is_invalid_not_an_exception() -> None:
    assert decoder().decode(None) == InvalidEvent("malformed_json", "empty payload (tombstone)")


def test_size_cap_is_configurable() -> None:
    payload = raw(valid())
    assert isinstance(decoder(max_bytes=len(payload)).decode(payload), Event)
    assert decoder(max_bytes=len(payload) - 1).decode(payload).code == "oversize"  # type: ignore[union-attr]


def test_committed_json_schemas_match_the_code() -> None:
    for name, doc in schema_documents().items():
        assert (DOCS / name).read_text(encoding="utf-8") == render(doc), f"{name} drifted: regenerate it"


def test_schemas_accept_what_the_code_produces_and_reject_what_it_refuses() -> None:
    import jsonschema

    docs = schema_documents()
    prediction = Prediction(
        user_id="u", event_id="e", event_ts=1, predicted_at=2, model_version="v1",
        demand=[CategoryScore("c", 0.5)], purchase_intent=0.3, history_len=1,
    )  # fmt: skip
    jsonschema.validate(msgspec.to_builtins(prediction), docs["prediction.schema.json"])
    jsonschema.validate(valid(), docs["event.schema.json"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(valid(type="teleport"), docs["event.schema.json"])
    letter = DeadLetter("bad_field", "r", "t", 0, 5, base64.b64encode(b"x").decode(), 1)
    jsonschema.validate(msgspec.to_builtins(letter), docs["dead_letter.schema.json"])
