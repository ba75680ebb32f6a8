"""Everything read back from Redis is untrusted: decode what can be decoded, say why the rest is not.

A worker that crashes on one corrupt stored value crashes again on every replay of the batch (a
poison pill), so nothing here raises: a window loses its undecodable rows (the user's state is
rebuilt from the rows that decode, or from empty), a stored state that does not fit the serving
model is dropped (the user is rebuilt from the window), and every such decision comes back as a
:class:`Rejection` that the worker counts (``demandstream_worker_stored_data_rejected``) and logs.

Pure functions, no I/O: the stepper calls them, the unit tests feed them garbage.

>>> from stream.store import Window
>>> from stream.features import EventEncoder, FeatureSpec, Vocabulary
>>> from stream.worker.window_codec import encode_row
>>> from stream.contracts import Event
>>> encoder = EventEncoder(FeatureSpec(), Vocabulary(["c1"]), Vocabulary(["i1"]))
>>> good = encode_row(Event(event_id="e", user_id="u", ts=5, type="view", category_id="c1"))
>>> window = Window(seqs=[1, 2, 3], ts_ms=[5, 6, 7], rows=[good, b"\\xc1garbage", good[:-3]], event_ids=["", "", ""])
>>> decoded, problems = decode_window(window, encoder)
>>> decoded.seqs.tolist(), sorted((p.reason.value, p.values) for p in problems)
([1], [('undecodable', 2)])
"""

from __future__ import annotations

import hashlib
from collections import Counter
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import numpy as np

from stream.features.encode import N_TYPES, TYPE_INDEX
from stream.store.keys import UserKeys
from stream.worker.exceptions import CodecError
from stream.worker.state_codec import ModelState, decode_state
from stream.worker.window_codec import WindowRow, static_rows

if TYPE_CHECKING:
    from stream.features import EventEncoder
    from stream.registry import LoadedModel
    from stream.store import Window

_MAX_SEQ = 2**62  # seqs count a user's events; anything near int64's limit is garbage
_row_decoder = msgspec.msgpack.Decoder(WindowRow)


class Rejected(StrEnum):
    """Why a stored value was not used (the ``reason`` label of the metric)."""

    UNDECODABLE = "undecodable"  # not the msgpack layout we write (random bytes, truncated)
    FORMAT = "format"  # a state blob of an unknown format number
    SHAPE = "shape"  # a state whose arrays do not fit the serving model (hidden size, window)
    VALUES = "values"  # decodes, but holds values we never write (unknown type, seq order, NaN)
    ENTRY = "entry"  # a window entry whose header (seq, ts, event id) is malformed
    WRONG_TYPE = "wrong_type"  # a key of another Redis type; the store deleted it


class StoredKey(StrEnum):
    """Which of a user's keys held the value (the ``key`` label of the metric)."""

    WINDOW = "window"
    STATE = "state"


class Rejection(NamedTuple):
    """``values`` stored values of one user's ``key`` that were not used, and why."""

    user_key: str
    key: StoredKey
    reason: Rejected
    values: int
    detail: str


class DecodedWindow(NamedTuple):
    """The usable rows of a window, oldest first."""

    seqs: np.ndarray  # (n,) int64, strictly increasing
    ts: np.ndarray  # (n,) int64
    static: np.ndarray  # (n, static_width) int32


class StateLimits(NamedTuple):
    """What a state must look like to be stepped by one model."""

    version: str
    hidden: int
    window: int
    pointer_vocab: int  # entries of the vocabulary the pointer summary indexes (PAD and OOV included)

    @classmethod
    def of(cls, model: LoadedModel) -> StateLimits:
        return cls(model.version, model.hidden, model.manifest.feature_spec.window, len(model.targets))


def _valid_row(row: WindowRow) -> bool:
    return row.type in TYPE_INDEX and (row.rating is None or 1 <= row.rating <= 5)


def decode_window(
    window: Window | None, encoder: EventEncoder, user_key: str = ""
) -> tuple[DecodedWindow, list[Rejection]]:
    """The rows of ``window`` that decode and make sense, plus what was dropped (never raises)."""
    width = encoder.spec.static_width
    rows: list[WindowRow] = []
    seqs: list[int] = []
    ts: list[int] = []
    problems: Counter[Rejected] = Counter()
    details: dict[Rejected, str] = {}
    if window is not None:
        if window.malformed:
            problems[Rejected.ENTRY] += window.malformed
            details[Rejected.ENTRY] = "entry header malformed"
        last_seq = 0
        for seq, ts_ms, blob in zip(window.seqs, window.ts_ms, window.rows, strict=True):
            try:
                row = _row_decoder.decode(blob)
            except msgspec.DecodeError as exc:
                problems[Rejected.UNDECODABLE] += 1
                details.setdefault(Rejected.UNDECODABLE, str(exc))
                continue
            if not _valid_row(row) or not last_seq < seq < _MAX_SEQ or not -_MAX_SEQ < ts_ms < _MAX_SEQ:
                problems[Rejected.VALUES] += 1
                details.setdefault(Rejected.VALUES, f"row type {row.type[:20]!r}, rating {row.rating}, seq {seq}")
                continue
            last_seq = seq
            rows.append(row)
            seqs.append(seq)
            ts.append(ts_ms)
    decoded = DecodedWindow(
        np.asarray(seqs, dtype=np.int64).reshape(-1),
        np.asarray(ts, dtype=np.int64).reshape(-1),
        static_rows(rows, encoder) if rows else np.zeros((0, width), dtype=np.int32),
    )
    rejections = [
        Rejection(user_key, StoredKey.WINDOW, reason, count, details.get(reason, ""))
        for reason, count in problems.items()
    ]
    return decoded, rejections


def check_state(state: ModelState, limits: StateLimits) -> None:
    """Raise :class:`CodecError` when a state of the serving version cannot be stepped by it."""
    if state.h.shape != (limits.hidden,):
        raise CodecError(f"state hidden size {state.h.shape[0]}, model {limits.hidden}", Rejected.SHAPE)
    if state.cat.shape != (limits.window,):
        raise CodecError(f"state window {state.cat.shape[0]}, model {limits.window}", Rejected.SHAPE)
    if not (np.isfinite(state.h).all() and np.isfinite(state.c).all()):
        raise CodecError("state holds non-finite values", Rejected.VALUES)
    if state.cat.min() < 0 or state.cat.max() >= limits.pointer_vocab:
        raise CodecError("state category index out of the vocabulary", Rejected.VALUES)
    if state.kind.min() < 0 or state.kind.max() >= N_TYPES:
        raise CodecError("state event type out of range", Rejected.VALUES)
    if not 0 < state.seq < _MAX_SEQ:
        raise CodecError(f"state seq {state.seq}", Rejected.VALUES)


def decode_stored_state(blob: bytes, limits: StateLimits | None) -> ModelState:
    """:func:`decode_state`, plus (for a state of the serving version) :func:`check_state`.

    A state of another version is only compared by version later (and rebuilt), so its arrays
    need not fit. Raises :class:`CodecError` whose ``reason`` is a :class:`Rejected`.
    """
    try:
        state = decode_state(blob)
    except CodecError as exc:
        raise CodecError(str(exc), exc.reason or Rejected.UNDECODABLE) from exc
    except Exception as exc:
        raise CodecError(f"state blob does not decode: {exc!r}", Rejected.UNDECODABLE) from exc
    if limits is not None and state.version == limits.version:
        check_state(state, limits)
    return state


def logged_key(prefix: str, user_key: str, key: StoredKey, *, pseudonymised: bool) -> str:
    """The Redis key to name in a log line; never a raw user id.

    With pseudonymisation on, the stored key itself (it holds the HMAC, not the user id); off,
    the user part is replaced by the first 16 hex digits of its SHA-256 (an operator who knows
    the user id can match it).
    """
    if not pseudonymised:
        user_key = "sha256:" + hashlib.sha256(user_key.encode()).hexdigest()[:16]
    keys = UserKeys.of(prefix, user_key)
    return keys.state if key is StoredKey.STATE else keys.window
