"""Prediction JSON for a whole micro-batch without building a Struct per category score.

The bytes decode to exactly the :class:`~stream.contracts.Prediction` the struct path would
give (tests/unit/test_worker_predictions.py checks it): the ``{"category_id": ...,"score":``
prefix of every category is encoded once per model, the batch's scores are encoded by ONE
msgspec call and split, and each record is then one msgspec encode with the demand list
inserted as :class:`msgspec.Raw`.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from stream.contracts import Event


class _Prediction(msgspec.Struct, frozen=True):
    """Wire twin of :class:`stream.contracts.Prediction` (same fields, same order)."""

    user_id: str
    event_id: str
    event_ts: int
    predicted_at: int
    model_version: str
    demand: msgspec.Raw
    purchase_intent: float
    history_len: int


_json = msgspec.json.Encoder()


class PredictionEncoder:
    """Encodes the predictions of one model version; build once per model (it caches id fragments)."""

    def __init__(self, version: str, target_ids: Sequence[str]) -> None:
        self.version = version
        # One prefix per output index: b'{"category_id":"c12","score":' (ids JSON-escaped once).
        self._prefix = np.asarray(
            [b'{"category_id":' + _json.encode(cid) + b',"score":' for cid in target_ids], dtype=object
        )

    def encode(
        self,
        events: Sequence[Event],
        categories: np.ndarray,
        scores: np.ndarray,
        intent: np.ndarray,
        history_len: np.ndarray,
        predicted_at: int,
    ) -> list[bytes]:
        """One JSON value per event; ``categories``/``scores`` are ``(N, k)`` output indices/scores."""
        n = len(events)
        if n == 0 or categories.shape[1] == 0:
            return []
        k = categories.shape[1]
        score_list = np.clip(scores, 0.0, 1.0).astype(np.float64).tolist()
        # '[[a,b],[c,d]]' -> every score's JSON text; floats never contain ',' or '['.
        flat = _json.encode(score_list)[2:-2].replace(b"],[", b",").split(b",")
        parts = self._prefix[categories.reshape(-1)] + np.asarray(flat, dtype=object) + b"}"
        rows = parts.reshape(n, k).tolist()
        intents = np.clip(intent, 0.0, 1.0).astype(np.float64).tolist()
        history = history_len.tolist()
        version = self.version
        encode = _json.encode
        return [
            encode(
                _Prediction(
                    event.user_id,
                    event.event_id,
                    event.ts,
                    predicted_at,
                    version,
                    msgspec.Raw(b"[" + b",".join(row) + b"]"),
                    p_intent,
                    length,
                )
            )
            for event, row, p_intent, length in zip(events, rows, intents, history, strict=True)
        ]
