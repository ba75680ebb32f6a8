"""Malformed rows scattered through a large file: each is named with file and line (up to the
limit), no good row is lost, and one bad row past the limit stops the run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from training.data import BadRows, load_events
from training.data.exceptions import TooManyBadRowsError
from training.data.load import load_columns

N_ROWS = 60_000
N_BAD = 400
BAD_KINDS = (
    "1,2,3,pv",  # a field short
    "1,2,3,jump,1511544070",  # unknown behaviour
    "1,2,3,pv,yesterday",  # not unix seconds
)


def _write(path: Path, seed: int = 3) -> tuple[set[int], set[int]]:
    """A Taobao CSV of ``N_ROWS`` lines with ``N_BAD`` malformed ones at random lines (1-based)."""
    rng = np.random.default_rng(seed)
    bad = set((rng.choice(N_ROWS, size=N_BAD, replace=False) + 1).tolist())
    lines = []
    for number in range(1, N_ROWS + 1):
        if number in bad:
            lines.append(BAD_KINDS[number % len(BAD_KINDS)])
        else:
            lines.append(f"{number % 977},{number % 5003},{number % 89},pv,{1511544070 + number}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return set(range(1, N_ROWS + 1)) - bad, bad


def test_every_bad_row_is_named_and_no_good_row_is_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ub.csv"
    good, bad = _write(path)
    sink = BadRows(strict=False, max_bad=1000)
    with caplog.at_level(logging.WARNING, logger="training.data.bad_rows"):
        loaded = {int(e.event_id.split(":")[1]) for e in load_events(path, "taobao", bad_rows=sink)}
    assert loaded == good
    assert sink.count == N_BAD
    named = {int(r.getMessage().split(f"{path}:")[1].split(":")[0]) for r in caplog.records}
    assert named == bad


def test_one_bad_row_past_the_limit_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "ub.csv"
    _write(path)
    sink = BadRows(strict=False, max_bad=N_BAD - 1)
    with pytest.raises(TooManyBadRowsError, match="more than 399 malformed rows"):
        for _ in load_events(path, "taobao", bad_rows=sink):
            pass


def test_the_columnar_table_keeps_every_good_row(tmp_path: Path) -> None:
    """What the trainer loads (``load_columns``): every good row, once, and each bad one counted."""
    path = tmp_path / "ub.csv"
    good, _bad = _write(path)
    sink = BadRows(strict=False, max_bad=1000)
    columns = load_columns(path, "taobao", bad_rows=sink)
    assert sorted((columns.ts // 1000 - 1511544070).tolist()) == sorted(good)
    assert sink.count == N_BAD
