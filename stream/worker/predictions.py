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

SCORE_SIGNIFICANT_DIGITS = 6
"""Scores go on the wire with this many significant digits: a float32 score printed as float64
takes ~19 characters ("0.12345678806304932") of which only ~7 mean anything; 6 digits keep the
ranking of any two scores that differ by more than one part in 10^6 and cut the typical
prediction payload from ~706 to ~590 bytes (docs/worker.md, bench/produce_bench.py)."""


def round_significant(values: np.ndarray, digits: int = SCORE_SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` (in [0, 1]) rounded to ``digits`` significant digits, as float64.

    ``round(x * 10^k) / 10^k`` with an exact power of ten and an integer below 2^53 is the double
    nearest the decimal, so its shortest repr (what msgspec prints) is that decimal itself.
    """
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log10(np.abs(x)))
    # 0 (log10 = -inf) is left alone; scaling stops at 10^22 (the last exact power of ten), so a
    # score below ~1e-17 becomes 0, which no ranking or threshold can tell from it.
    shift = np.where(np.isfinite(exponent), np.clip(digits - 1 - exponent, 0, 22), 0)
    scale = np.power(10.0, shift)
    return np.round(x * scale) / scale


class PredictionEncoder:
    """Encodes the predictions of one model version; build once per model (it caches id fragments)."""

    def __init__(
        self, version: str, target_ids: Sequence[str], significant_digits: int | None = SCORE_SIGNIFICANT_DIGITS
    ) -> None:
        self.version = version
        self._digits = significant_digits  # None: full float64 text (bench/produce_bench.py compares)
        # One prefix per output index: b'{"category_id":"c12","score":' (ids JSON-escaped once).
        self._prefix = np.asarray(
            [b'{"category_id":' + _json.encode(cid) + b',"score":' for cid in target_ids], dtype=object
        )

    def _round(self, values: np.ndarray) -> np.ndarray:
        if self._digits is None:
            return np.asarray(values, dtype=np.float64)
        return round_significant(values, self._digits)

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
        score_list = self._round(np.clip(scores, 0.0, 1.0)).tolist()
        # '[[a,b],[c,d]]' -> every score's JSON text; floats never contain ',' or '['.
        flat = _json.encode(score_list)[2:-2].replace(b"],[", b",").split(b",")
        parts = self._prefix[categories.reshape(-1)] + np.asarray(flat, dtype=object) + b"}"
        rows = parts.reshape(n, k).tolist()
        intents = self._round(np.clip(intent, 0.0, 1.0)).tolist()
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
