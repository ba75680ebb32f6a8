"""Per-user rolling windows of encoded events and the model's running state, in Redis.

Each public call costs ONE network round trip: appends and state writes are Lua scripts run
with EVALSHA (the SHA is computed locally; on NOSCRIPT, after a restart or failover, the script
is loaded and the call repeated once), reads are pipelined. Both scripts are idempotent per
event_id / seq, so a call retried after a lost connection cannot double-apply anything.

On Redis Cluster one Lua call may only touch keys of one slot. Every key of a user carries the
``{user_key}`` hash tag, so a batch is split into one script call per slot (batch order kept
within a slot, and one user is always in one slot), and those calls go out in one pipeline:
the cluster client sends each node its share at once, so a batch still waits for one round trip
per node, in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import logging
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from stream.config import Settings
from stream.store.exceptions import StoreError, StoreProtocolError, StoreUnavailable
from stream.store.keys import MAX_EVENT_ID_BYTES, UserKeys, decode_entries

logger = logging.getLogger(__name__)

# Fail fast and let the caller retry the batch: a worker must not hang on a dead Redis.
_SOCKET_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 2.0
_RESULT_WIDTH = 6  # values per event returned by append_window.lua
# The batch goes to each script as ONE packed argument (see the .lua headers): encoding three
# arguments per event cost the client more than the whole script run in Redis.
_APPEND_RECORD = struct.Struct(">IqHI")  # user index, ts_ms, event_id length, row length
_STATE_RECORD = struct.Struct(">IQI")  # user index, seq, blob length
_HELD_SEQ = struct.Struct(">Q")  # per user: the state seq the client already holds (0 = none)


class WindowAppend(NamedTuple):
    """One event to append to its user's window."""

    user_key: str  # already pseudonymised upstream if enabled
    event_id: str
    ts_ms: int
    row: bytes  # opaque encoded event; the store never interprets it
    partition: int = 0  # source partition: the held-users store drops a partition's users with it


class AppendResult(NamedTuple):
    """What one append did, and what the model step needs, read in the same round trip."""

    applied: bool  # False when this event_id is already in the window (a replay)
    seq: int  # the event's 1-based sequence number in the user's history
    window_len: int  # events in the window after this append
    prev_ts_ms: int | None  # ts of the event just before it in the window (None if first)
    state_seq: int | None  # seq the stored state corresponds to (None if no state)
    state: bytes | None  # stored model state blob as read in this round trip
    # Set at the user's first event of the call when the script found a key of the wrong type
    # and deleted it: "window" (the whole history restarted) or "state" (only the state).
    repaired: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A user's window, oldest first; all lists have the same length."""

    seqs: list[int]
    ts_ms: list[int]
    rows: list[bytes]
    event_ids: list[str]
    malformed: int = 0  # entries left out: their header does not decode (stored data is untrusted)

    def __len__(self) -> int:
        return len(self.seqs)


class StateWrite(NamedTuple):
    """A model state computed after the event with sequence number ``seq``."""

    user_key: str
    seq: int
    blob: bytes
    decoded: Any = None  # the caller's decoded form; a store that holds states keeps it (held_states)


@dataclass(frozen=True, slots=True)
class _Script:
    source: bytes
    sha: str


@cache
def _script(name: str) -> _Script:
    source = importlib.resources.files("stream.store").joinpath(name).read_bytes()
    return _Script(source=source, sha=hashlib.sha1(source).hexdigest())  # SHA1: Redis' script id


def _retriable_redis_errors() -> tuple[type[BaseException], ...]:
    """Redis errors that say "not now" rather than "wrong": the batch is retried as a whole.

    Lost connections and timeouts, and what a Redis Cluster answers while a failover or a slot
    migration is under way: CLUSTERDOWN / MASTERDOWN, TRYAGAIN, a slot no node covers, no node
    reachable ("TTL exhausted", ``RedisClusterUnreachableError``), READONLY (a command that
    reached a master just demoted to replica) and LOADING. Two of them
    (``SlotNotCoveredError``, ``RedisClusterUnreachableError``) are not even ``RedisError``s.
    """
    from redis.exceptions import (
        ClusterError,
        ReadOnlyError,
        RedisClusterUnreachableError,
        SlotNotCoveredError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (
        RedisConnectionError,  # includes BusyLoadingError (LOADING)
        RedisTimeoutError,
        ClusterError,  # includes ClusterDownError and MasterDownError
        TryAgainError,
        ReadOnlyError,
        SlotNotCoveredError,
        RedisClusterUnreachableError,
    )


@contextlib.contextmanager
def _translate_errors(operation: str) -> Iterator[None]:
    from redis.exceptions import RedisClusterException, RedisError

    try:
        yield
    except _retriable_redis_errors() as exc:
        raise StoreUnavailable(f"{operation}: Redis unavailable: {type(exc).__name__}: {exc}") from exc
    except (RedisError, RedisClusterException) as exc:
        raise StoreProtocolError(f"{operation}: {type(exc).__name__}: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_redis_client(settings: Settings) -> Any:
    """A redis.asyncio client (or cluster client) for the settings; it connects on first use."""
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import SSLConnection, parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # parse_url, then our overrides: redis-py's from_url would let the URL win over kwargs.
    options: dict[str, Any] = dict(parse_url(settings.redis_url))
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    tls = options.get("connection_class") is SSLConnection
    if tls and settings.redis_ssl_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    options.update(
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        # redis-py's own retries off: the worker retries the whole batch with the one policy
        # (stream/retry.py), so a dead node costs one timeout per try, not three stacked ones.
        retry=Retry(NoBackoff(), 0),
    )
    if settings.redis_cluster:
        options.pop("connection_class", None)
        options.pop("db", None)
        return RedisCluster(ssl=tls, **options)
    return Redis(connection_pool=ConnectionPool(**options))


class WindowStore:
    """The Redis window/state store of the stream worker. See docs/redis-layout.md."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._prefix = settings.redis_key_prefix
        self._cluster = settings.redis_cluster
        self._client: Any = None  # created on first use: no connection at construction

    def _connection(self) -> Any:
        if self._client is None:
            self._client = make_redis_client(self._settings)
        return self._client

    def _keys(self, user_key: str) -> UserKeys:
        return UserKeys.of(self._prefix, user_key)

    def _slot_groups(self, user_keys: Sequence[str]) -> list[list[int]]:
        """Indices of ``user_keys`` grouped so that each group is one Cluster slot (in order)."""
        if not self._cluster:
            return [list(range(len(user_keys)))]
        from redis.crc import key_slot

        groups: dict[int, list[int]] = {}
        for index, user_key in enumerate(user_keys):
            slot = key_slot(self._keys(user_key).window.encode())
            groups.setdefault(slot, []).append(index)
        return list(groups.values())

    async def append_batch(
        self, items: Sequence[WindowAppend], held_state_seqs: Mapping[str, int] | None = None
    ) -> list[AppendResult]:
        """Append events in list order (one round trip); see docs/redis-layout.md for the rules.

        ``held_state_seqs``: per user key, the seq of a state the caller already holds; when the
        stored state has that seq its blob is not sent back (``AppendResult.state`` is None while
        ``state_seq`` is set).
        """
        if not items:
            return []
        settings = self._settings
        head: list[Any] = [
            settings.window_size,
            settings.window_max_age_s * 1000,
            settings.user_ttl_s * 1000,
        ]
        calls: list[tuple[list[str], list[Any]]] = []
        groups = self._slot_groups([item.user_key for item in items])
        pack_record = _APPEND_RECORD.pack
        for group in groups:
            user_index: dict[str, int] = {}  # 1-based, in order of first appearance
            records: list[bytes] = []
            for index in group:
                item = items[index]
                event_id = item.event_id.encode()
                if len(event_id) > MAX_EVENT_ID_BYTES:
                    raise StoreError(f"event_id longer than {MAX_EVENT_ID_BYTES} bytes")
                number = user_index.setdefault(item.user_key, len(user_index) + 1)
                header = pack_record(number, item.ts_ms, len(event_id), len(item.row))
                records += (header, event_id, item.row)
            keys = [key for user in user_index for key in self._keys(user).all()]
            argv = [*head, b"".join(records)]
            if held_state_seqs:
                argv.append(b"".join(_HELD_SEQ.pack(held_state_seqs.get(user, 0)) for user in user_index))
            calls.append((keys, argv))
        with _translate_errors("append_batch"):
            replies = await self._run_script(_script("append_window.lua"), calls)
        results: list[AppendResult | None] = [None] * len(items)
        for group, reply in zip(groups, replies, strict=True):
            repaired: dict[int, str] = {}  # user index -> what the script deleted (wrong key types)
            if len(reply) == _RESULT_WIDTH * len(group) + 1:
                flat = reply.pop()
                repaired = {int(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
            if len(reply) != _RESULT_WIDTH * len(group):
                raise StoreProtocolError(f"append_window.lua returned {len(reply)} values")
            user_numbers: dict[str, int] = {}
            first_state: dict[str, bytes | None] = {}  # the script sends a user's state once per call
            for position, index in enumerate(group):
                applied, seq, window_len, prev_ts, state_seq, state = reply[
                    _RESULT_WIDTH * position : _RESULT_WIDTH * (position + 1)
                ]
                user_key = items[index].user_key
                first = user_key not in first_state
                state = first_state.setdefault(user_key, state)
                number = user_numbers.setdefault(user_key, len(user_numbers) + 1)
                results[index] = AppendResult(
                    applied=bool(applied),
                    seq=int(seq),
                    window_len=int(window_len),
                    prev_ts_ms=None if prev_ts is None else int(prev_ts),
                    state_seq=None if state_seq is None else int(state_seq),
                    state=state,
                    repaired=repaired.get(number) if first else None,
                )
        return [result for result in results if result is not None]

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        """Store model states (one round trip), each only over a stored state of a lower seq.

        A write for a user whose window has expired or was forgotten is dropped. Returns, per
        write, whether it was stored.
        """
        if not writes:
            return []
        calls: list[tuple[list[str], list[Any]]] = []
        ttl_ms = self._settings.user_ttl_s * 1000
        groups = self._slot_groups([write.user_key for write in writes])
        for group in groups:
            user_index: dict[str, int] = {}  # 1-based, in order of first appearance
            records: list[bytes] = []
            for index in group:
                write = writes[index]
                number = user_index.setdefault(write.user_key, len(user_index) + 1)
                records += (_STATE_RECORD.pack(number, write.seq, len(write.blob)), write.blob)
            keys: list[str] = []
            for user_key in user_index:
                user = self._keys(user_key)
                keys += (user.state, user.meta)
            calls.append((keys, [ttl_ms, b"".join(records)]))
        with _translate_errors("write_states"):
            replies = await self._run_script(_script("write_states.lua"), calls)
        stored = [False] * len(writes)
        for group, reply in zip(groups, replies, strict=True):
            if len(reply) != len(group):
                raise StoreProtocolError(f"write_states.lua returned {len(reply)} values for {len(group)} writes")
            for index, written in zip(group, reply, strict=True):
                stored[index] = bool(written)
        refused = stored.count(False)
        if refused:
            logger.debug("write_states: %d of %d not newer than stored", refused, len(writes))
        return stored

    async def read_windows(self, user_keys: Sequence[str]) -> dict[str, Window]:
        """The windows of ``user_keys`` (one pipelined round trip); an unknown user's is empty."""
        unique = list(dict.fromkeys(user_keys))
        if not unique:
            return {}
        with _translate_errors("read_windows"):
            pipe = self._connection().pipeline(transaction=False)
            for user_key in unique:
                pipe.lrange(self._keys(user_key).window, 0, -1)
            replies = await pipe.execute(raise_on_error=False)
        windows: dict[str, Window] = {}
        for user_key, entries in zip(unique, replies, strict=True):
            if isinstance(entries, Exception):
                if "WRONGTYPE" not in str(entries):
                    with _translate_errors("read_windows"):
                        raise entries
                # Not a list (something else wrote the key): no usable rows; the next append
                # deletes it (append_window.lua) and the user starts a fresh history.
                windows[user_key] = Window(seqs=[], ts_ms=[], rows=[], event_ids=[], malformed=1)
                continue
            decoded = decode_entries(entries)
            windows[user_key] = Window(decoded.seqs, decoded.ts, decoded.rows, decoded.event_ids, decoded.malformed)
        return windows

    async def forget_user(self, user_key: str) -> int:
        """Delete every key of one user (erasure request); returns how many keys existed."""
        with _translate_errors("forget_user"):
            deleted: int = await self._connection().delete(*self._keys(user_key).all())
        logger.info("forgot a user's window and state (%d keys)", deleted)
        return deleted

    async def ping(self) -> bool:
        """Whether Redis answers (for readiness checks); never raises for a dead Redis."""
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return bool(await self._connection().ping())
        except (RedisError, RedisClusterException, OSError):
            return False

    async def close(self) -> None:
        """Close the connections; the store reconnects if used again."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _run_script(self, script: _Script, calls: Sequence[tuple[list[str], list[Any]]]) -> list[list[Any]]:
        """Run ``script`` once per ``(keys, argv)``, all in one round trip; NOSCRIPT handled."""
        from redis.exceptions import NoScriptError

        client = self._connection()
        if len(calls) == 1:
            keys, argv = calls[0]
            try:
                return [await client.evalsha(script.sha, len(keys), *keys, *argv)]
            except NoScriptError:
                await client.script_load(script.source)
                return [await client.evalsha(script.sha, len(keys), *keys, *argv)]

        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for index in pending:
                keys, argv = calls[index]
                # execute_command, not .evalsha(): redis-py's cluster pipeline blocks the
                # method (scripts may span slots in general); each of our calls is one slot,
                # and the cluster client routes EVALSHA by its first key.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *argv)
            outcomes = await pipe.execute(raise_on_error=False)
            missing: list[int] = []
            for index, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(outcome, Exception):
                    raise outcome
                else:
                    replies[index] = outcome
            if not missing:
                break
            # Calls that hit NOSCRIPT did not run: load the script (on every node), redo them.
            await client.script_load(script.source)
            pending = missing
        return replies
