"""Redis as the backing store of the held users: fence epochs, claiming loads, write-behind.

Each call is ONE round trip: one script call per Cluster slot group, all in one pipeline
(``WindowStore._run_script``), so a batch costs one read for the users it lacks and one write for
the users it changed, whatever their number. Layout and rules: docs/redis-layout.md ("State v2").
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from stream.store.backing import HeldWrite, LoadedUser, WriteOutcome
from stream.store.exceptions import StoreProtocolError
from stream.store.keys import ENTRY_HEADER, decode_entries
from stream.store.user_window import UserWindow
from stream.store.window_store import WindowStore, _script, _text, _translate_errors

logger = logging.getLogger(__name__)

_WRITE_HEAD = struct.Struct(">IQBIQqIQI")  # see write_behind.lua
_ENTRY_LEN = struct.Struct(">I")
_REWRITE, _STATE, _RENEW, _TRIM = 1, 2, 4, 8


def fence_epoch_key(prefix: str) -> str:
    """The one counter of fence epochs (not per partition: a user may change partition)."""
    return f"{prefix}:fence:epoch"


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class RedisBacking(WindowStore):
    """:class:`WindowStore` plus what :class:`~stream.store.owned.OwnedStore` needs of Redis."""

    async def next_epoch(self) -> int:
        with _translate_errors("next_epoch"):
            epoch: int = await self._connection().incr(fence_epoch_key(self._prefix))
        logger.info("fence epoch %d", epoch)
        return epoch

    async def load_users(self, user_keys: Sequence[str], epoch: int) -> list[LoadedUser]:
        if not user_keys:
            return []
        ttl_ms = self._settings.user_ttl_s * 1000
        groups = self._slot_groups(user_keys)
        calls = [
            ([key for index in group for key in self._keys(user_keys[index]).all()], [epoch, ttl_ms])
            for group in groups
        ]
        with _translate_errors("load_users"):
            replies = await self._run_script(_script("load_users.lua"), calls)
        loaded: list[LoadedUser | None] = [None] * len(user_keys)
        for group, reply in zip(groups, replies, strict=True):
            if len(reply) != len(group):
                raise StoreProtocolError(f"load_users.lua returned {len(reply)} users for {len(group)}")
            for index, user in zip(group, reply, strict=True):
                loaded[index] = _loaded(user_keys[index], user)
        return [user for user in loaded if user is not None]

    async def write_behind(self, writes: Sequence[HeldWrite]) -> list[WriteOutcome]:
        if not writes:
            return []
        ttl_ms = self._settings.user_ttl_s * 1000
        groups = self._slot_groups([write.user_key for write in writes])
        calls: list[tuple[list[str], list[Any]]] = []
        for group in groups:
            keys: list[str] = []
            records: list[bytes] = []
            for number, index in enumerate(group, start=1):
                write = writes[index]
                user = self._keys(write.user_key)
                keys += (user.window, user.meta, user.state)
                records += _write_record(number, write)
            calls.append((keys, [ttl_ms, b"".join(records)]))
        with _translate_errors("write_behind"):
            replies = await self._run_script(_script("write_behind.lua"), calls)
        outcomes = [WriteOutcome.GONE] * len(writes)
        for group, reply in zip(groups, replies, strict=True):
            if len(reply) != len(group):
                raise StoreProtocolError(f"write_behind.lua returned {len(reply)} values for {len(group)} users")
            for index, outcome in zip(group, reply, strict=True):
                outcomes[index] = WriteOutcome(int(outcome))
        return outcomes


def _write_record(number: int, write: HeldWrite) -> list[bytes]:
    window = write.window
    flags = (_REWRITE if write.rewrite or not window.seqs else 0) | (_STATE if write.write_state else 0)
    flags |= _RENEW if write.renew_ttl else 0
    if flags & _REWRITE:
        first = 0
    else:  # the entries newer than what Redis holds (those already trimmed in process never go)
        first = len(window.seqs)
        while first > 0 and window.seqs[first - 1] > write.flushed_seq:
            first -= 1
        if write.flushed_len < 0 or write.flushed_len + len(window.seqs) - first != len(window.seqs):
            flags |= _TRIM  # the held window dropped entries that Redis still has
    parts: list[bytes] = []
    pack_header, pack_len = ENTRY_HEADER.pack, _ENTRY_LEN.pack
    for at in range(first, len(window.seqs)):
        event_id = window.event_ids[at].encode()
        row = window.rows[at]
        header = pack_header(window.seqs[at], window.ts[at], len(event_id))
        parts += (pack_len(len(header) + len(event_id) + len(row)), header, event_id, row)
    state = window.state if flags & _STATE and window.state is not None else b""
    head = _WRITE_HEAD.pack(
        number,
        write.epoch,
        flags,
        len(window.seqs),
        window.seq,
        window.max_ts or 0,
        len(window.seqs) - first,
        window.state_seq or 0,
        len(state),
    )
    return [head, *parts, state]


def _loaded(user_key: str, reply: list[Any]) -> LoadedUser:
    if int(reply[0]) < 0:
        return LoadedUser(user_key, True, UserWindow(), 0)
    _, seq, max_ts, state_seq, state, pttl, repaired, _ids_existed, entries = reply
    window = UserWindow(seq=_int(seq) or 0, max_ts=_int(max_ts), state_seq=_int(state_seq), state=state)
    if window.state_seq is None:
        window.state = None
    decoded = decode_entries(entries)
    malformed = decoded.malformed
    window.seqs, window.ts, window.event_ids, window.rows = decoded.seqs, decoded.ts, decoded.event_ids, decoded.rows
    window.ids = dict(zip(decoded.event_ids, decoded.seqs, strict=True))
    return LoadedUser(
        user_key,
        False,
        window,
        int(pttl),
        malformed=malformed,
        repaired=None if repaired is None else _text(repaired),
        rewrite=bool(malformed),  # (a v1 ids hash was deleted by the load itself)
    )
