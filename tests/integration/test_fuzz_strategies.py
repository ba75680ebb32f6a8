"""Hypothesis strategies of hostile event payloads (this module holds no tests).

Each invalid strategy breaks the event contract BY CONSTRUCTION (so a test may assert that the
decoder refuses every one of them, without asking the decoder what is invalid); the valid ones
are contract-conforming but unfriendly (any Unicode, odd sizes, unknown fields, nesting).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from stream.contracts import EVENT_TYPES, Event

MIN_TS_MS = 946_684_800_000  # Settings.min_event_ts_ms default
FUTURE_SKEW_MS = 24 * 3600 * 1000  # Settings.future_skew_s default
MAX_EVENT_BYTES = 16_384  # Settings.max_event_bytes default
NOW_MS = time.time_ns() // 1_000_000
REQUIRED = ("event_id", "user_id", "ts", "type")
STRING_FIELDS = ("event_id", "user_id", "type", "item_id", "category_id", "query", "text")
# Byte sequences that are never valid UTF-8: lone continuation, 0xFF, bad continuation,
# overlong '/', UTF-16 surrogate, 5-byte form, truncated 3-byte form.
BAD_UTF8 = (b"\x80", b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82")

_ids = st.text(min_size=1, max_size=40) | st.sampled_from([f"u{i}" for i in range(25)])
_nonblank = st.text(min_size=1, max_size=120).filter(lambda s: bool(s.strip()))
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
_json_any = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _dumps(doc: Any, ascii_only: bool) -> bytes:
    return json.dumps(doc, ensure_ascii=ascii_only).encode()


def _nested(depth: int, leaf: str = "0") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A contract-valid event as a dict, WITHOUT ``event_id`` (callers make it unique)."""
    kind = draw(st.sampled_from(EVENT_TYPES))
    doc: dict[str, Any] = {"user_id": draw(_ids), "ts": draw(st.integers(MIN_TS_MS, NOW_MS)), "type": kind}
    if draw(st.booleans()):
        doc["item_id"] = draw(_ids)
    if draw(st.booleans()):
        doc["category_id"] = draw(st.sampled_from([f"c{i}" for i in range(45)]) | _ids)
    if kind == "search" or draw(st.booleans()):
        doc["query"] = draw(_nonblank)
    if kind == "review" or draw(st.booleans()):
        doc["text"] = draw(_nonblank)
    if draw(st.booleans()):
        doc["rating"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        doc["price"] = draw(st.floats(0, 1e9, allow_nan=False, allow_infinity=False) | st.integers(0, 10**9))
    if draw(st.booleans()):  # unknown fields are ignored, however odd
        doc[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in Event.__struct_fields__))] = draw(_json_any)
    if draw(st.integers(0, 9)) == 0:
        doc["nested_extra"] = json.loads(_nested(draw(st.integers(1, 60))))
    return doc


def encode_valid(doc: dict[str, Any], event_id: str, ascii_only: bool = False) -> bytes:
    return _dumps({"event_id": event_id, **doc}, ascii_only)


def _full(draw: st.DrawFn) -> dict[str, Any]:
    return {"event_id": draw(_ids), **draw(valid_docs())}


@st.composite
def _truncated(draw: st.DrawFn) -> bytes:
    raw = _dumps(_full(draw), draw(st.booleans()))
    return raw[: draw(st.integers(0, len(raw) - 1))]


_wrong_for_str = (
    st.integers()
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(), st.integers(), max_size=2)
)
_wrong_for_int = (
    st.text() | st.booleans() | st.none() | st.lists(st.integers(), max_size=3)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
)  # fmt: skip


@st.composite
def _wrong_type(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    field = draw(st.sampled_from([*REQUIRED, "item_id", "category_id", "query", "text", "rating", "price"]))
    if field == "ts":
        doc[field] = draw(_wrong_for_int)
    elif field == "rating":
        doc[field] = draw(_wrong_for_int.filter(lambda v: v is not None))  # None is fine for optionals
    elif field == "price":
        doc[field] = draw(st.text() | st.booleans() | st.lists(st.integers(), max_size=3))
    elif field in REQUIRED:
        doc[field] = draw(_wrong_for_str)
    else:
        doc[field] = draw(_wrong_for_str.filter(lambda v: v is not None))  # None is fine for optionals
    return _dumps(doc, True)


@st.composite
def _missing_field(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    del doc[draw(st.sampled_from(REQUIRED))]
    return _dumps(doc, draw(st.booleans()))


@st.composite
def _nan_infinity(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    field = draw(st.sampled_from(["ts", "price", "rating", "event_id"]))
    doc.pop(field, None)
    literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
    body = _dumps(doc, True)[:-1].decode()
    return f'{body}, "{field}": {literal}}}'.encode()


@st.composite
def _huge_string(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    field, limit = draw(st.sampled_from([("event_id", 128), ("user_id", 128), ("item_id", 128), ("query", 4096)]))
    chunk = draw(st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=4))
    doc[field] = (chunk * (limit // len(chunk) + 2))[: draw(st.integers(limit + 1, min(limit * 3, 12_000)))]
    return _dumps(doc, True)


@st.composite
def _huge_array(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(100, 3000))
    if draw(st.booleans()):
        return ("[" + ",".join(["1"] * n) + "]").encode()
    doc = _full(draw)
    doc[draw(st.sampled_from(REQUIRED))] = [0] * n
    return _dumps(doc, True)


@st.composite
def _deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(50, 5000))
    where = draw(st.sampled_from(["top", "field", "object"]))
    if where == "top":
        return _nested(depth).encode()
    if where == "object":
        return ('{"a":' * depth + "1" + "}" * depth).encode()
    doc = _full(draw)
    field = draw(st.sampled_from(REQUIRED))
    doc.pop(field)
    return f'{_dumps(doc, True)[:-1].decode()}, "{field}": {_nested(depth)}}}'.encode()


@st.composite
def _bad_utf8(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    present = [f for f in STRING_FIELDS if isinstance(doc.get(f), str)]
    field = draw(st.sampled_from(present))
    marker = "\u0001MARK\u0001"
    doc[field] = doc[field] + marker
    raw = _dumps(doc, True)
    return raw.replace(b"\\u0001MARK\\u0001", draw(st.sampled_from(BAD_UTF8)), 1)


@st.composite
def _unknown_type(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    doc["type"] = draw(st.text(max_size=20).filter(lambda t: t not in EVENT_TYPES))
    return _dumps(doc, draw(st.booleans()))


@st.composite
def _ts_out_of_range(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    doc["ts"] = draw(
        st.integers(NOW_MS + FUTURE_SKEW_MS + 3_600_000, 2**63 - 1)  # far future (an hour of clock margin)
        | st.integers(-(2**63), MIN_TS_MS - 1)  # far past, negative, seconds instead of ms
        | st.integers(2**63, 10**30)  # beyond int64
    )
    return _dumps(doc, True)


@st.composite
def _missing_text(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    field = "query" if draw(st.booleans()) else "text"
    doc["type"] = "search" if field == "query" else "review"
    blank = draw(st.sampled_from([None, "", " ", "\t\n", "\u3000"]))
    if blank is None:
        doc.pop(field, None)
    else:
        doc[field] = blank
    return _dumps(doc, draw(st.booleans()))


@st.composite
def _oversize(draw: st.DrawFn) -> bytes:
    doc = _full(draw)
    doc["padding"] = "x" * draw(st.integers(MAX_EVENT_BYTES, MAX_EVENT_BYTES * 4))
    return _dumps(doc, True)


@st.composite
def _not_an_object(draw: st.DrawFn) -> bytes:
    return _dumps(draw(_json_any.filter(lambda v: not isinstance(v, dict))), draw(st.booleans()))


_random_bytes = st.binary(max_size=600).filter(lambda b: b[:1] != b"{")

INVALID_KINDS: dict[str, st.SearchStrategy[bytes]] = {
    "truncated": _truncated(),
    "wrong_type": _wrong_type(),
    "missing_field": _missing_field(),
    "nan_infinity": _nan_infinity(),
    "huge_string": _huge_string(),
    "huge_array": _huge_array(),
    "deep_nesting": _deep_nesting(),
    "bad_utf8": _bad_utf8(),
    "unknown_type": _unknown_type(),
    "ts_out_of_range": _ts_out_of_range(),
    "missing_text": _missing_text(),
    "oversize": _oversize(),
    "not_an_object": _not_an_object(),
    "random_bytes": _random_bytes,
}


def invalid_payloads() -> st.SearchStrategy[tuple[str, bytes]]:
    """``(kind, payload)`` pairs, each kind equally likely."""
    return st.one_of(*(_labelled(kind, strategy) for kind, strategy in INVALID_KINDS.items()))


def _labelled(kind: str, strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    return st.tuples(st.just(kind), strategy)


def collect(strategy: st.SearchStrategy[Any], count: int, *, random_seed: int = 0) -> list[Any]:
    """``count`` examples of ``strategy`` drawn by a normal Hypothesis run (no shrinking, no database)."""
    out: list[Any] = []

    @seed(random_seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def gather(example: Any) -> None:
        out.append(example)

    gather()
    return out


def hostile_mix(invalid: int, valid: int, *, random_seed: int = 0) -> list[tuple[str, bytes | None]]:
    """At least ``invalid`` hostile payloads and ``valid`` valid ones (ids ``fz-N``), shuffled.

    Returns ``(label, payload)``: label ``"valid:fz-N"`` or the invalid kind; a few invalid
    payloads are ``None`` (Kafka tombstones).
    """
    bad = collect(invalid_payloads(), invalid, random_seed=random_seed)
    good = collect(st.tuples(valid_docs(), st.booleans()), valid, random_seed=random_seed + 1)
    mixed: list[tuple[str, bytes | None]] = [(kind, raw) for kind, raw in bad]
    mixed += [("tombstone", None)] * max(1, invalid // 1000)
    mixed += [(f"valid:fz-{n}", encode_valid(doc, f"fz-{n}", ascii_only)) for n, (doc, ascii_only) in enumerate(good)]
    random.Random(random_seed).shuffle(mixed)
    return mixed
