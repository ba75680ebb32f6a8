"""``demandstream simulate --bulk``: vectorised contract events straight to JSON lines or Parquet,
read back by the trainer's loaders with every malformed row named and every good row kept."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from tools.simulate.bulk import BulkSpec, write_bulk
from tools.simulate.cli import simulate
from training.data import BadRows, load_events

SPEC = BulkSpec(events=6_000, users=300, items=2_000, categories=40, seed=5, start_ms=1_700_000_000_000)


@pytest.mark.parametrize(("name", "fmt"), [("events.jsonl", "jsonl"), ("events.parquet", "parquet")])
def test_bulk_files_load_back_with_bad_rows_named(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    spec = BulkSpec(**{**SPEC.__dict__, "malformed": 0.02})
    assert write_bulk(spec, path) == spec.events
    sink = BadRows(strict=False, keep_examples=10_000)
    events = list(load_events(path, fmt, bad_rows=sink))  # type: ignore[arg-type]
    assert len(events) + sink.count == spec.events and 60 < sink.count < 200
    lines = sorted(int(str(e).split(":")[1]) for e in sink.examples)
    kept = {int(e.event_id.split("-")[1]) + 1 for e in events}  # event ids count rows from 0
    assert not kept & set(lines) and kept | set(lines) == set(range(1, spec.events + 1))


def test_bulk_events_are_shaped_like_shopping(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    write_bulk(SPEC, path)
    events = list(load_events(path, "parquet"))
    category_of: dict[str, set[str | None]] = defaultdict(set)
    by_user: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for e in events:
        category_of[e.item_id or ""].add(e.category_id)
        by_user[e.user_id].append((e.ts, e.item_id))
    assert all(len(c) == 1 for c in category_of.values())  # every item sits in one category
    assert len(by_user) <= SPEC.users
    repeats = sum(a[1] == b[1] for seq in by_user.values() for a, b in itertools.pairwise(seq))
    assert repeats / len(events) > 0.2  # shoppers return to what they just viewed
    assert all([t for t, _ in seq] == sorted(t for t, _ in seq) for seq in by_user.values())  # file order


def test_bulk_needs_a_count_and_a_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(simulate, ["--bulk", "--output", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and "--bulk writes --count events to a file" in result.output
    result = CliRunner().invoke(
        simulate, ["--bulk", "--count", "500", "--users", "20", "--items", "100", "--output", str(tmp_path / "x.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 500
