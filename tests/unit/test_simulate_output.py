"""Simulator outputs: malformed payloads, the send loop, the catalogue file, the CLI."""

from __future__ import annotations

import asyncio
import random
from itertools import islice
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.contracts import EventDecoder, InvalidEvent, encode_event
from tools.cli import main
from tools.simulate import (
    MALFORMED_KINDS,
    Catalogue,
    Record,
    ShopperSimulator,
    default_catalogue,
    records,
)
from tools.simulate.exceptions import CatalogueError
from tools.simulate.malformed import corrupt
from tools.simulate.output import JsonLinesSink, send_records


class ListSink:
    """An in-memory sink (a pure unit: the Kafka sink is covered by the integration test)."""

    def __init__(self) -> None:
        self.written: list[Record] = []
        self.flushed = 0
        self.closed = False

    async def write(self, record: Record) -> None:
        self.written.append(record)

    async def flush(self) -> None:
        self.flushed = len(self.written)

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_corruption_is_refused_by_the_decoder_for_its_reason(kind: str) -> None:
    events = islice(ShopperSimulator(seed=2, users=10), 200)
    decoder = EventDecoder(now_ms=lambda: 2_000_000_000_000)
    for event in events:
        verdict = decoder.decode(corrupt(encode_event(event), kind, random.Random(event.ts)))
        assert isinstance(verdict, InvalidEvent)
        assert verdict.code == kind


def test_records_are_keyed_by_user_and_break_about_the_asked_fraction() -> None:
    events = list(islice(ShopperSimulator(seed=4, users=50), 5000))
    out = list(records(events, malformed_fraction=0.1, seed=1))
    assert [r.key for r in out] == [e.user_id.encode() for e in events]
    broken = [r for r in out if r.malformed]
    assert 350 < len(broken) < 650
    assert {r.malformed for r in broken} == set(MALFORMED_KINDS)
    intact = [r for r in out if not r.malformed]
    assert all(
        r.value == encode_event(e) for r, e in zip(out, events, strict=True) if not r.malformed
    )
    assert len(intact) + len(broken) == len(events)


def test_records_refuse_a_fraction_outside_0_1() -> None:
    with pytest.raises(ValueError, match="fraction"):
        list(records([], malformed_fraction=1.5))


def test_send_records_stops_at_the_count_and_flushes() -> None:
    sink = ListSink()
    stream = records(islice(ShopperSimulator(seed=1, users=5), 1000), 0.05, seed=3)
    summary = asyncio.run(send_records(stream, sink, max_records=250))
    assert summary.sent == 250 == len(sink.written) == sink.flushed
    assert summary.stopped_by == "count"
    assert summary.malformed and sum(summary.malformed.values()) == sum(
        1 for r in sink.written if r.malformed
    )
    assert summary.first_ts == sink.written[0].ts and summary.last_ts == sink.written[-1].ts


def test_send_records_stops_when_asked() -> None:
    stop = asyncio.Event()
    stop.set()
    sink = ListSink()
    summary = asyncio.run(
        send_records(records(iter(ShopperSimulator(seed=1, users=5))), sink, stop=stop)
    )
    assert summary.stopped_by == "signal"
    assert summary.sent == 0


def test_send_records_runs_out_with_its_input() -> None:
    sink = ListSink()
    summary = asyncio.run(
        send_records(records(islice(ShopperSimulator(seed=1, users=5), 40)), sink, rate=1e6)
    )
    assert (summary.sent, summary.stopped_by) == (40, "exhausted")


def test_json_lines_sink_keeps_payloads_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    stream = list(records(islice(ShopperSimulator(seed=8, users=5), 300), 0.2, seed=2))
    sink = JsonLinesSink(path)
    asyncio.run(send_records(stream, sink))
    asyncio.run(sink.close())
    assert path.read_bytes().split(b"\n")[:-1] == [r.value for r in stream]


def test_invalid_catalogue_is_refused() -> None:
    raw = Path(__file__).parents[2].joinpath("tools/simulate/catalogue.json").read_bytes()
    assert len(Catalogue.from_json(raw)) == len(default_catalogue())
    with pytest.raises(CatalogueError, match="invalid catalogue"):
        Catalogue.from_json(raw.replace(b'"nouns": ["', b'"nouns": [1, "', 1))
    broken = raw.replace(b'"complements": ["1005"', b'"complements": ["9999"', 1)
    with pytest.raises(CatalogueError, match="unknown complements"):
        Catalogue.from_json(broken)
    with pytest.raises(CatalogueError, match="unknown category"):
        default_catalogue()["nope"]


def test_cli_writes_a_seeded_file(tmp_path: Path) -> None:
    runner = CliRunner()
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        path = tmp_path / name
        result = runner.invoke(
            main,
            [
                "simulate",
                "--seed",
                "5",
                "--users",
                "30",
                "--rate",
                "0",
                "--count",
                "500",
                "--start-ms",
                "1717200000000",
                "--output",
                str(path),
            ],
        )
        assert result.exit_code == 0, result.output
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    lines = outputs[0].splitlines()
    assert len(lines) == 500
    decoder = EventDecoder(now_ms=lambda: 2_000_000_000_000)
    assert not any(isinstance(decoder.decode(line), InvalidEvent) for line in lines)


def test_cli_backfill_never_emits_future_events(tmp_path: Path) -> None:
    path = tmp_path / "recent.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--users",
            "20",
            "--rate",
            "0",
            "--backfill-hours",
            "2",
            "--output",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = path.read_bytes().splitlines()
    assert lines  # two hours of 20 shoppers, then it stops by itself
    decoder = EventDecoder()  # the real clock: nothing may be in the future
    assert not any(isinstance(decoder.decode(line), InvalidEvent) for line in lines)
