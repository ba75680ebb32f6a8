"""Loaders on tiny hand-made files (with malformed rows), and the cleaning step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.contracts import Event
from training.data import (
    TAOBAO_TS_BOUNDS_MS,
    BadRows,
    DataError,
    DataFormatError,
    TooManyBadRowsError,
    clean_events,
    default_ts_bounds,
    load_diginetica,
    load_events,
    load_jsonl,
    load_taobao,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "training"
TAOBAO = FIXTURES / "taobao_small.csv"
DIGINETICA = FIXTURES / "diginetica_small.csv"
JSONL = FIXTURES / "events_small.jsonl"


def test_taobao_maps_behaviours_and_seconds_and_ids() -> None:
    events = list(load_taobao(TAOBAO, bad_rows=BadRows(strict=False)))
    assert [
        (e.event_id, e.user_id, e.type, e.ts, e.item_id, e.category_id) for e in events[:3]
    ] == [
        ("taobao_small.csv:1", "1", "view", 1_511_600_000_000, "100", "10"),
        ("taobao_small.csv:2", "1", "cart", 1_511_600_100_000, "101", "10"),
        ("taobao_small.csv:3", "2", "purchase", 1_511_600_200_000, "200", "20"),
    ]
    assert events[3].event_id == "taobao_small.csv:8"  # the repeated row keeps its own line id


def test_taobao_strict_names_file_and_line_of_first_bad_row() -> None:
    with pytest.raises(DataFormatError) as caught:
        list(load_taobao(TAOBAO))
    assert caught.value.source.endswith("taobao_small.csv")
    assert caught.value.line == 4
    assert "expected 5" in caught.value.reason


def test_taobao_skip_mode_counts_every_bad_row_with_its_line() -> None:
    sink = BadRows(strict=False)
    events = list(load_taobao(TAOBAO, bad_rows=sink))
    assert len(events) == 4
    assert sink.count == 3
    assert [e.line for e in sink.examples] == [4, 5, 7]
    assert "unknown behaviour 'click'" in sink.examples[1].reason
    assert "unix seconds" in sink.examples[2].reason


def test_bad_row_budget_stops_a_garbage_file() -> None:
    with pytest.raises(TooManyBadRowsError):
        list(load_taobao(TAOBAO, bad_rows=BadRows(strict=False, max_bad=1)))


def test_bad_utf8_is_one_bad_row_not_a_dead_loader(tmp_path: Path) -> None:
    path = tmp_path / "ub.csv"
    path.write_bytes(b"1,2,3,pv,1511600000\n1,2,\xff\xfe,pv,1511600001\n1,2,3,fav,1511600002\n")
    sink = BadRows(strict=False)
    events = list(load_taobao(path, bad_rows=sink))
    assert [e.type for e in events] == ["view", "fav"]
    assert sink.examples[0].line == 2
    assert "UTF-8" in sink.examples[0].reason


def test_diginetica_sessions_become_users_and_ts_is_date_plus_offset() -> None:
    sink = BadRows(strict=False)
    events = list(load_diginetica(DIGINETICA, bad_rows=sink))
    assert [(e.user_id, e.item_id, e.category_id, e.type) for e in events] == [
        ("session:1", "81766", None, "view"),
        ("session:1", "31331", None, "view"),
        ("2", "24764", None, "view"),
        ("2", "24765", None, "view"),
    ]
    may_9_utc_ms = 1_462_752_000_000
    assert events[0].ts == may_9_utc_ms + 526_309
    assert [e.line for e in sink.examples] == [6, 7, 8]


def test_diginetica_strict_raises_on_first_bad_row() -> None:
    with pytest.raises(DataFormatError, match=r"diginetica_small\.csv:6: timeframe"):
        list(load_diginetica(DIGINETICA))


def test_diginetica_without_its_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    path.write_text("1;NA;81766;526309;2016-05-09\n")
    with pytest.raises(DataFormatError, match="expected header"):
        list(load_diginetica(path, bad_rows=BadRows(strict=False)))


def test_jsonl_uses_the_stream_decoder_rules() -> None:
    sink = BadRows(strict=False)
    events = list(load_jsonl(JSONL, bad_rows=sink))
    assert [e.event_id for e in events] == ["e1", "e2", "e4"]
    assert events[1].query == "连衣裙 夏季"
    assert events[2].price == pytest.approx(19.9)
    assert [(e.line, e.reason.split(":")[0]) for e in sink.examples] == [
        (3, "unknown_type"),
        (6, "malformed_json"),
        (7, "missing_field"),
    ]


def test_jsonl_strict_raises_naming_the_line() -> None:
    with pytest.raises(DataFormatError, match=r"events_small\.jsonl:3: unknown_type"):
        list(load_jsonl(JSONL))


def test_load_events_dispatches_and_streams() -> None:
    stream = load_events(TAOBAO, "taobao", bad_rows=BadRows(strict=False))
    first = next(iter(stream))
    assert isinstance(first, Event)
    assert first.event_id == "taobao_small.csv:1"
    with pytest.raises(DataError, match="no such file"):
        load_events(FIXTURES / "missing.csv", "taobao")
    assert default_ts_bounds("taobao") == TAOBAO_TS_BOUNDS_MS


def test_taobao_window_is_beijing_days() -> None:
    start, end = TAOBAO_TS_BOUNDS_MS
    assert start == 1_511_539_200_000  # 2017-11-24T16:00Z = 2017-11-25 00:00 Beijing
    assert end - start == 9 * 86_400_000


def test_cleaning_drops_duplicates_and_out_of_range_and_summarises() -> None:
    sink = BadRows(strict=False)
    events = load_taobao(TAOBAO, bad_rows=sink)
    sequences, summary = clean_events(events, ts_bounds=(None, 1_511_600_150_000), bad_rows=sink)
    assert [(s.user_id, [e.event_id for e in s.events]) for s in sequences] == [
        ("1", ["taobao_small.csv:1", "taobao_small.csv:2"])
    ]
    assert summary.rows_read == 8 - 1  # the blank line is not a row
    assert summary.rows_dropped == {"malformed": 3, "duplicate": 1, "out_of_range": 1}
    assert (summary.users, summary.events, summary.categories, summary.items) == (1, 2, 1, 2)
    assert summary.first_ts_utc == "2017-11-25T08:53:20Z"
    assert json.loads(json.dumps(summary.to_dict()))["event_types"] == {"cart": 1, "view": 1}


def test_cleaning_sorts_each_user_by_time_stably() -> None:
    rows = [
        Event("late", "u", 300, "view", category_id="a"),
        Event("tie1", "u", 100, "view", category_id="b"),
        Event("tie2", "u", 100, "cart", category_id="b"),
        Event("early", "u", 50, "view", category_id="c"),
    ]
    sequences, _ = clean_events(rows)
    assert [e.event_id for e in sequences[0].events] == ["early", "tie1", "tie2", "late"]
