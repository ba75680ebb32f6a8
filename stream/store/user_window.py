"""One user's window in process: the event_id dedup, count/age trimming and fresh-history rules.

The single Python copy of the rules that ``append_window.lua`` applies in Redis
(docs/redis-layout.md). :class:`~stream.store.memory_store.MemoryWindowStore` keeps one
:class:`UserWindow` per user for tests; the worker's held users
(:class:`~stream.store.owned.OwnedStore`) keep one per user of the partitions it owns.

>>> window = UserWindow()
>>> [window.append(WindowAppend("u", e, ts, b"r"), window_size=2, max_age_ms=100)[:2] for e, ts in
...  [("e1", 1), ("e2", 2), ("e1", 1), ("e3", 3)]]
[(True, 1), (True, 2), (False, 1), (True, 3)]
>>> window.seqs, window.event_ids
([2, 3], ['e2', 'e3'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.store.window_store import WindowAppend


@dataclass(slots=True)
class UserWindow:
    """A user's window (oldest first), history counters and newest state, as stored."""

    seqs: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # event_id -> seq, for the events in the window
    seq: int = 0  # seq of the newest event of the history (0: none yet)
    max_ts: int | None = None
    state_seq: int | None = None
    state: bytes | None = None
    expires_at: float = 0.0  # clock seconds; every change renews it

    def append(self, item: WindowAppend, *, window_size: int, max_age_ms: int) -> tuple[bool, int, int | None]:
        """Append one event unless its event_id is in the window; ``(applied, seq, prev_ts)``.

        A replay changes nothing and reports the event as it stands (its seq, and the ts of
        the event before it in the window).
        """
        known = self.ids.get(item.event_id)
        if known is not None:
            at = self.seqs.index(known)
            return False, known, self.ts[at - 1] if at > 0 else None
        prev_ts = self.ts[-1] if self.ts else None
        self.seq += 1
        self.max_ts = item.ts_ms if self.max_ts is None else max(self.max_ts, item.ts_ms)
        self.seqs.append(self.seq)
        self.ts.append(item.ts_ms)
        self.event_ids.append(item.event_id)
        self.rows.append(item.row)
        self.ids[item.event_id] = self.seq
        # Trim by count, then by age from the oldest end (the newest event always stays).
        while len(self.seqs) > window_size:
            self._pop_oldest()
        cutoff = self.max_ts - max_age_ms
        while len(self.seqs) > 1 and self.ts[0] < cutoff:
            self._pop_oldest()
        return True, self.seq, prev_ts

    def store_state(self, seq: int, blob: bytes) -> bool:
        """Compare-and-set: keep the state only over a stored one of a lower seq."""
        if self.state_seq is not None and self.state_seq >= seq:
            return False
        self.state_seq, self.state = seq, blob
        return True

    def _pop_oldest(self) -> None:
        self.seqs.pop(0)
        self.ts.pop(0)
        self.rows.pop(0)
        self.ids.pop(self.event_ids.pop(0), None)
