"""Redis key names and the window entry encoding (the file format of docs/redis-layout.md).

Every key of one user carries the ``{user_key}`` hash tag, so all of them live in one Cluster
slot and one Lua call may touch them together.

>>> keys = UserKeys.of("ds", "u123")
>>> keys.window, keys.ids, keys.meta, keys.state
('ds:{u123}:w', 'ds:{u123}:ids', 'ds:{u123}:m', 'ds:{u123}:s')
>>> entry = encode_entry(7, 1_700_000_000_000, "e-1", b"\\x01\\x02")
>>> decode_entry(entry)
(7, 1700000000000, 'e-1', b'\\x01\\x02')
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

# seq u64, ts_ms i64, event_id length u16, all big-endian; then the UTF-8 event_id, then the row.
# append_window.lua packs the same header (ENTRY = '>I8i8I2'); a unit test keeps both in step.
ENTRY_HEADER = struct.Struct(">QqH")
MAX_EVENT_ID_BYTES = 0xFFFF


@dataclass(frozen=True, slots=True)
class UserKeys:
    """The four keys of one user."""

    window: str
    ids: str
    meta: str
    state: str

    @classmethod
    def of(cls, prefix: str, user_key: str) -> UserKeys:
        base = f"{prefix}:{{{user_key}}}:"
        return cls(window=base + "w", ids=base + "ids", meta=base + "m", state=base + "s")

    def all(self) -> tuple[str, str, str, str]:
        return (self.window, self.ids, self.meta, self.state)


def encode_entry(seq: int, ts_ms: int, event_id: str, row: bytes) -> bytes:
    """One window entry as the Lua script writes it (used by tests and tools)."""
    eid = event_id.encode()
    return ENTRY_HEADER.pack(seq, ts_ms, len(eid)) + eid + row


def decode_entry(entry: bytes) -> tuple[int, int, str, bytes]:
    """``(seq, ts_ms, event_id, row)`` of one window entry."""
    seq, ts_ms, id_len = ENTRY_HEADER.unpack_from(entry)
    start = ENTRY_HEADER.size
    return seq, ts_ms, entry[start : start + id_len].decode(), entry[start + id_len :]


class DecodedEntries(NamedTuple):
    """A stored window's entries, oldest first, with the count of those that did not decode."""

    seqs: list[int]
    ts: list[int]
    event_ids: list[str]
    rows: list[bytes]
    malformed: int


def decode_entries(entries: Iterable[bytes]) -> DecodedEntries:
    """Decode every entry of a stored window, skipping (and counting) those that do not decode.

    >>> decode_entries([encode_entry(1, 5, "e1", b"r"), b"x"])
    DecodedEntries(seqs=[1], ts=[5], event_ids=['e1'], rows=[b'r'], malformed=1)
    """
    decoded = DecodedEntries([], [], [], [], 0)
    malformed = 0
    for entry in entries:
        try:
            seq, ts_ms, event_id, row = decode_entry(entry)
        except (struct.error, ValueError):  # too short, or an event id that is not UTF-8
            malformed += 1
            continue
        decoded.seqs.append(seq)
        decoded.ts.append(ts_ms)
        decoded.event_ids.append(event_id)
        decoded.rows.append(row)
    return decoded._replace(malformed=malformed)
