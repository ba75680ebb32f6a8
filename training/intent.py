"""Purchase intent, judged: is P(a purchase among the user's next events) better than simple
rules, and do its probabilities mean what they say?

Every method scores the same positions (the event right before each test query, where the model
publishes its prediction) against the same label (a purchase among the next
:data:`~training.sequences.INTENT_HORIZON` events; positions whose window runs past the user's
history are left out). Baselines:

* ``previous_type``: P(next event is a purchase | type of the current event), counted on training
  events (the trainer's long-standing heuristic, ``FittedBaselines.intent_scores``);
* ``cart_fav_recency``: ``1 / (1 + events since the user's last cart or fav)``, 0 without one;
* ``count_logistic``: a logistic regression on the user's behaviour counts so far (per type, in
  the whole history and the last 10 events, events since the last cart/fav/purchase), fitted on
  training-period positions.

Calibration: the model's intent logit is rescaled by a Platt fit (``sigmoid(a * logit + b)``) on
validation positions; since the intent head ends in a linear layer, the fit is folded into that
layer's weights (:func:`fold_platt`), so the exported graph itself publishes calibrated
probabilities and nothing in serving changes. Calibrated means an expected calibration error
(events-weighted mean |observed rate - mean probability| over :data:`RELIABILITY_BINS`
equal-width bins) of at most :data:`CALIBRATION_TOLERANCE` on test positions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from stream.contracts import EVENT_TYPES
from training.data.encoded import EncodedEvents
from training.histories import FlatHistories
from training.model import DemandLSTM
from training.sequences import INTENT_HORIZON, EncodedHistory
from training.split import VALID
from training.train import predict

log = logging.getLogger(__name__)

RELIABILITY_BINS = 10
CALIBRATION_TOLERANCE = 0.02
RECENT = 10  # events in the "recent behaviour" counts
_PURCHASE = EVENT_TYPES.index("purchase")
_INTEREST = (EVENT_TYPES.index("cart"), EVENT_TYPES.index("fav"))
_EPS = 1e-6

FloatArray = NDArray[np.float64]


def flat_intent_labels(data: EncodedEvents, horizon: int = INTENT_HORIZON) -> NDArray[np.int64]:
    """Per position: 1 if the same user buys within the next ``horizon`` events, 0 if not, -1 if
    their history ends first (the trainer's ``intent_labels``, over the flat arrays)."""
    n = len(data)
    buys = np.concatenate([[0], np.cumsum(data.etype == _PURCHASE)])
    idx = np.arange(n)
    end_of_user = data.starts[data.user + 1]
    end = np.minimum(idx + 1 + horizon, end_of_user)
    bought = (buys[end] - buys[idx + 1]) > 0
    known = idx + horizon < end_of_user
    return np.where(bought, 1, np.where(known, 0, -1)).astype(np.int64)


def _events_since(mask: NDArray[np.bool_], data: EncodedEvents) -> FloatArray:
    """Per position, events since the last position (at or before it, same user) where ``mask``;
    ``inf`` when there is none."""
    idx = np.arange(len(data))
    marked = np.where(mask, idx, -1)
    last = np.maximum.accumulate(marked) if len(idx) else marked
    seen = last >= data.starts[data.user]
    return np.where(seen, (idx - last).astype(np.float64), np.inf)


def intent_features(data: EncodedEvents, positions: NDArray[np.int64]) -> FloatArray:
    """Behaviour counts up to and including each position, for ``count_logistic``."""
    n_types = len(EVENT_TYPES)
    onehot = np.zeros((len(data) + 1, n_types))
    onehot[np.arange(len(data)) + 1, data.etype.astype(np.int64)] = 1.0
    csum = np.cumsum(onehot, axis=0)  # csum[i] = counts of events before i
    first = data.starts[data.user[positions]]
    upto = positions + 1
    total = csum[upto] - csum[first]
    recent = csum[upto] - csum[np.maximum(first, upto - RECENT)]
    since = [_events_since(np.isin(data.etype, kinds), data)[positions] for kinds in (_INTEREST, (_PURCHASE,))]
    recency = [np.where(np.isinf(s), 0.0, 1.0 / (1.0 + s)) for s in since]
    current = onehot[upto]
    return np.column_stack([np.log1p(total), recent / RECENT, *recency, current, np.log1p(upto - first)])


def cart_fav_recency(data: EncodedEvents, positions: NDArray[np.int64]) -> FloatArray:
    since = _events_since(np.isin(data.etype, _INTEREST), data)[positions]
    return np.where(np.isinf(since), 0.0, 1.0 / (1.0 + since))


def count_logistic(data: EncodedEvents, positions: NDArray[np.int64]) -> FloatArray:
    """Fit on training-period positions with a known label; score ``positions``."""
    from sklearn.linear_model import LogisticRegression

    labels = flat_intent_labels(data)
    fit = np.flatnonzero(data.fit_mask() & (labels >= 0))
    if len(np.unique(labels[fit])) < 2:
        return np.zeros(len(positions))
    model = LogisticRegression(max_iter=1000).fit(intent_features(data, fit), labels[fit])
    return np.asarray(model.predict_proba(intent_features(data, positions))[:, 1], dtype=np.float64)


def reliability(labels: NDArray[np.bool_], scores: FloatArray, bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """AUC, Brier score, expected calibration error and the reliability curve of one method.

    >>> r = reliability(np.array([0, 0, 1, 1], bool), np.array([0.05, 0.1, 0.9, 0.95]))
    >>> r["roc_auc"], r["brier"], r["ece"]
    (1.0, 0.0063, 0.075)
    """
    from sklearn.metrics import brier_score_loss, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    curve, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        mean_p, rate, n = float(scores[sel].mean()), float(labels[sel].mean()), int(sel.sum())
        curve.append({"bin": b, "n": n, "mean_probability": round(mean_p, 4), "observed_rate": round(rate, 4)})
        ece += n * abs(rate - mean_p)
    both = 0 < labels.sum() < len(labels)
    return {
        "n": len(labels),
        "base_rate": round(float(labels.mean()), 4) if len(labels) else None,
        "roc_auc": round(float(roc_auc_score(labels, scores)), 4) if both else None,
        "brier": round(float(brier_score_loss(labels, scores)), 4) if len(labels) else None,
        "ece": round(ece / max(len(labels), 1), 4),
        "reliability": curve,
    }


@dataclass(frozen=True)
class Platt:
    """``sigmoid(slope * logit(p) + intercept)``."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, labels: NDArray[np.bool_], scores: FloatArray) -> Platt:
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(labels, dtype=bool)
        if labels.all() or not labels.any():
            return cls(1.0, 0.0)
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(scores)[:, None], labels)
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def apply(self, scores: FloatArray) -> FloatArray:
        return 1.0 / (1.0 + np.exp(-(self.slope * _logit(scores) + self.intercept)))

    def invert(self, calibrated: FloatArray) -> FloatArray:
        """The scores before :meth:`apply` (for reporting the uncalibrated model)."""
        slope = self.slope if abs(self.slope) > _EPS else _EPS
        return 1.0 / (1.0 + np.exp(-(_logit(calibrated) - self.intercept) / slope))


def _logit(p: FloatArray) -> FloatArray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))  # type: ignore[no-any-return]


@torch.no_grad()
def fold_platt(head: torch.nn.Module, platt: Platt) -> None:
    """Fold the calibration into the intent head's last linear layer (its output is the logit)."""
    last = list(head.modules())[-1]
    if not isinstance(last, torch.nn.Linear) or last.out_features != 1:
        raise TypeError(f"the intent head must end in a Linear(…, 1), not {last!r}")
    last.weight.mul_(platt.slope)
    last.bias.mul_(platt.slope).add_(platt.intercept)


def intent_report(labels: NDArray[np.bool_], scores: dict[str, FloatArray], model: str = "lstm") -> dict[str, Any]:
    """Every method's reliability on the same positions, the best baseline by AUC, and whether
    the model beats it and is calibrated within :data:`CALIBRATION_TOLERANCE`."""
    methods = {name: reliability(labels, s) for name, s in scores.items()}
    baselines = {n: m for n, m in methods.items() if n != model and m["roc_auc"] is not None}
    best = max(baselines, key=lambda n: baselines[n]["roc_auc"]) if baselines else None
    own = methods.get(model, {})
    return {
        "horizon_events": INTENT_HORIZON,
        "calibration_tolerance_ece": CALIBRATION_TOLERANCE,
        "methods": methods,
        "best_baseline": best,
        "model_beats_best_baseline": (
            None if best is None or own.get("roc_auc") is None else own["roc_auc"] > baselines[best]["roc_auc"]
        ),
        "model_calibrated": None if not own else own["ece"] <= CALIBRATION_TOLERANCE,
    }


def calibrate_intent(model: DemandLSTM, histories: FlatHistories | Sequence[EncodedHistory]) -> Platt:
    """Fit the Platt rescaling on validation positions and fold it into ``model``'s intent head."""
    valid = predict(model, histories, VALID)
    known = valid.intent_labels >= 0
    platt = Platt.fit(valid.intent_labels[known] == 1, valid.intent_scores[known])
    fold_platt(model.intent, platt)
    log.info("intent calibration on %d validation positions: %s", int(known.sum()), platt)
    return platt


def judge_intent(
    data: EncodedEvents,
    queries: NDArray[np.int64],
    known: NDArray[np.bool_],
    labels: NDArray[np.bool_],
    model_scores: FloatArray,
    previous_type_scores: FloatArray,
    platt: Platt,
) -> dict[str, Any]:
    """The intent report on test ``queries`` (``known``: those with a label), with the model
    before and after calibration and the three baselines."""
    positions = (queries - 1)[known]  # the prediction is made at the event before each query
    scores = {
        "lstm": model_scores,
        "lstm_uncalibrated": platt.invert(model_scores),
        "previous_type": previous_type_scores,
        "cart_fav_recency": cart_fav_recency(data, positions),
        "count_logistic": count_logistic(data, positions),
    }
    report = intent_report(labels, scores)
    report["calibration"] = {"method": "platt on validation positions", "slope": platt.slope,
                             "intercept": platt.intercept}  # fmt: skip
    return report
