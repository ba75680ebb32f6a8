"""Native contract events, one JSON object per line (what producers publish to ``demand.events``).

Validation is the stream's own :class:`~stream.contracts.EventDecoder`, so a row refused here would
have gone to the dead-letter topic online.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stream.contracts import Event, EventDecoder, InvalidEvent
from training.data._rows import numbered_lines
from training.data.bad_rows import BadRows
from training.data.exceptions import DataFormatError


def load_jsonl(path: Path, *, bad_rows: BadRows | None = None, decoder: EventDecoder | None = None) -> Iterator[Event]:
    """Yield the events of a JSON-lines file; blank lines are ignored.

    ``bad_rows`` decides between raising and skipping (default: raise). ``decoder`` defaults to the
    stream's settings-free defaults (16 KiB cap, epoch-ms timestamps from 2000 on).
    """
    sink = bad_rows or BadRows(strict=True)
    decode = (decoder or EventDecoder()).decode
    for number, line in numbered_lines(path):
        result = decode(line)
        if isinstance(result, InvalidEvent):
            sink.record(DataFormatError(str(path), number, f"{result.code}: {result.reason}"))
            continue
        yield result
