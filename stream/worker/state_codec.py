"""The model-specific running state of one user, as stored in Redis (``ds:{user}:s`` blob).

It holds everything the fast path needs so that a batch of events can be stepped without
reading any window: the LSTM's ``(h, c)`` after event ``seq``, and a pointer summary of the last
``W`` events (vocabulary category index, type index, ts), most recent first, zero-padded.
Arrays travel as raw little-endian bytes inside msgpack: decoding is ``np.frombuffer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import numpy as np

from stream.worker.exceptions import CodecError

FORMAT = 1  # bumped when the blob layout changes; an unknown format means "rebuild"


class _Blob(msgspec.Struct, array_like=True, frozen=True):
    format: int
    version: str
    seq: int
    h: bytes  # float32[H]
    c: bytes  # float32[H]
    cat: bytes  # int32[W]
    kind: bytes  # int8[W]
    ts: bytes  # int64[W]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Blob)


class ModelState(NamedTuple):
    """One user's state after the event ``seq`` under model ``version``."""

    version: str
    seq: int
    h: np.ndarray  # (H,) float32
    c: np.ndarray  # (H,) float32
    cat: np.ndarray  # (W,) int32 vocabulary indices, most recent first, 0 = padding
    kind: np.ndarray  # (W,) int8 type indices, 0 = padding
    ts: np.ndarray  # (W,) int64 epoch ms


def encode_state(state: ModelState) -> bytes:
    return _encoder.encode(
        _Blob(
            format=FORMAT,
            version=state.version,
            seq=state.seq,
            h=np.ascontiguousarray(state.h, dtype="<f4").tobytes(),
            c=np.ascontiguousarray(state.c, dtype="<f4").tobytes(),
            cat=np.ascontiguousarray(state.cat, dtype="<i4").tobytes(),
            kind=np.ascontiguousarray(state.kind, dtype="i1").tobytes(),
            ts=np.ascontiguousarray(state.ts, dtype="<i8").tobytes(),
        )
    )


def decode_state(blob: bytes) -> ModelState:
    """Decode a stored blob; anything malformed raises :class:`CodecError` (caller rebuilds)."""
    try:
        raw = _decoder.decode(blob)
    except msgspec.DecodeError as exc:
        raise CodecError(f"state blob does not decode: {exc}", "undecodable") from exc
    if raw.format != FORMAT:
        raise CodecError(f"state blob format {raw.format}, expected {FORMAT}", "format")
    try:
        state = ModelState(
            version=raw.version,
            seq=raw.seq,
            h=np.frombuffer(raw.h, dtype="<f4"),
            c=np.frombuffer(raw.c, dtype="<f4"),
            cat=np.frombuffer(raw.cat, dtype="<i4"),
            kind=np.frombuffer(raw.kind, dtype="i1"),
            ts=np.frombuffer(raw.ts, dtype="<i8"),
        )
    except ValueError as exc:
        raise CodecError(f"state blob arrays are malformed: {exc}", "shape") from exc
    if state.h.shape != state.c.shape or not (state.cat.shape == state.kind.shape == state.ts.shape):
        raise CodecError("state blob arrays have inconsistent lengths", "shape")
    return state


def encode_states(
    version: str,
    seqs: Sequence[int],
    h: np.ndarray,
    c: np.ndarray,
    cat: np.ndarray,
    kind: np.ndarray,
    ts: np.ndarray,
) -> list[bytes]:
    """Blobs for a batch: ``h``/``c`` are ``(B, H)``, the summaries ``(B, W)``."""
    h32 = np.ascontiguousarray(h, dtype="<f4")
    c32 = np.ascontiguousarray(c, dtype="<f4")
    cat32 = np.ascontiguousarray(cat, dtype="<i4")
    kind8 = np.ascontiguousarray(kind, dtype="i1")
    ts64 = np.ascontiguousarray(ts, dtype="<i8")
    return [
        _encoder.encode(
            _Blob(
                FORMAT,
                version,
                int(seq),
                h32[i].tobytes(),
                c32[i].tobytes(),
                cat32[i].tobytes(),
                kind8[i].tobytes(),
                ts64[i].tobytes(),
            )
        )
        for i, seq in enumerate(seqs)
    ]
