"""Shared plumbing of the file loaders: numbered lines read lazily, and contract validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from stream.contracts import Event
from training.data.exceptions import DataFormatError


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line without its end-of-line)`` for every non-blank line, lazily.

    Lines are read as bytes so that one line of bad UTF-8 is one bad row, not a dead loader.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def decode_text(path: Path, number: int, line: bytes) -> str:
    """The line as text, or a :class:`DataFormatError` naming it."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(str(path), number, f"not valid UTF-8 at byte {exc.start}") from None


def to_event(path: Path, number: int, fields: dict[str, Any]) -> Event:
    """Build an :class:`Event` with the contract's own constraints (id lengths, ts >= 0, ...).

    ``msgspec.convert`` applies the same field rules as the stream's decoder; a plain constructor
    call would not check them.
    """
    try:
        return msgspec.convert(fields, Event)
    except msgspec.ValidationError as exc:
        raise DataFormatError(str(path), number, str(exc)) from None
