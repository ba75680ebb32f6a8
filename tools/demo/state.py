"""What the demo has seen so far: events sent, predictions and dead letters received, latencies.

Fed by the demo's producer and consumer tasks (one event loop, so no locking) and read by the
view. End-to-end latency is measured from the moment the demo handed an event to its producer to
the moment the matching prediction was consumed: the simulator's event times are simulated, so
``predicted_at - event_ts`` would mean nothing here.

>>> state = DemoState(clock=lambda: 10.0)
>>> state.prediction_received(_example_prediction("e1"))
>>> state.predictions, state.unmatched_predictions
(1, 1)
"""

from __future__ import annotations

import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stream.contracts import CategoryScore, Event, Prediction

_RECENT_EVENTS = 12
_RECENT_LATENCIES = 5_000
_MAX_PENDING = 200_000  # sent events still waiting for a prediction; beyond this the oldest are forgotten
_RATE_WINDOW_S = 5.0


def _example_prediction(event_id: str) -> Prediction:
    return Prediction("u1", event_id, 0, 0, "v1", [CategoryScore("1001", 0.5)], 0.1, 1)


@dataclass(frozen=True, slots=True)
class SentEvent:
    """A row of the "recent events" panel: a valid event, or a malformed payload's kind."""

    at: float
    event: Event | None
    malformed: str | None = None


@dataclass(frozen=True, slots=True)
class LatencyStats:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    count: int


def latency_stats(samples_s: array[float] | deque[float]) -> LatencyStats | None:
    """Percentiles of latency samples (seconds) in milliseconds; ``None`` without samples.

    >>> latency_stats(array("d", [0.010, 0.020, 0.030, 0.040])).p50_ms
    25.0
    """
    if not samples_s:
        return None
    values = np.asarray(samples_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencyStats(float(p50), float(p95), float(p99), float(values.max()), len(values))


@dataclass
class DemoState:
    """Counters and recent history of one demo run."""

    clock: Callable[[], float] = time.monotonic
    started_at: float = 0.0
    sent_valid: int = 0
    sent_malformed: Counter[str] = field(default_factory=Counter)
    predictions: int = 0
    unmatched_predictions: int = 0  # predictions for events this run did not send (none expected)
    dlq: Counter[str] = field(default_factory=Counter)
    first_prediction_after_s: float | None = None
    model_version: str | None = None
    feed_exhausted: bool = False
    recent_events: deque[SentEvent] = field(default_factory=lambda: deque(maxlen=_RECENT_EVENTS))
    latest_by_user: dict[str, Prediction] = field(default_factory=dict)
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    recent_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_LATENCIES))
    _pending: dict[str, float] = field(default_factory=dict)
    _rate_samples: deque[tuple[float, int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    # --- fed by the producer -----------------------------------------------------------------
    def event_sent(self, event: Event) -> None:
        now = self.clock()
        self.sent_valid += 1
        self.recent_events.append(SentEvent(now, event))
        if len(self._pending) >= _MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))  # dicts keep insertion order: the oldest
        self._pending[event.event_id] = now

    def malformed_sent(self, kind: str) -> None:
        self.sent_malformed[kind] += 1
        self.recent_events.append(SentEvent(self.clock(), None, kind))

    # --- fed by the consumer -----------------------------------------------------------------
    def prediction_received(self, prediction: Prediction) -> None:
        now = self.clock()
        self.predictions += 1
        if self.first_prediction_after_s is None:
            self.first_prediction_after_s = now - self.started_at
        self.model_version = prediction.model_version
        # Re-insert so that the dict's order is "least recently updated first".
        self.latest_by_user.pop(prediction.user_id, None)
        self.latest_by_user[prediction.user_id] = prediction
        sent_at = self._pending.pop(prediction.event_id, None)
        if sent_at is None:
            self.unmatched_predictions += 1  # e.g. a replayed duplicate (at-least-once)
            return
        self.latencies_s.append(now - sent_at)
        self.recent_latencies_s.append(now - sent_at)

    def dead_letter_received(self, code: str) -> None:
        self.dlq[code] += 1

    # --- read by the view --------------------------------------------------------------------
    @property
    def awaiting_prediction(self) -> int:
        return len(self._pending)

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started_at

    def recent_users(self, count: int) -> list[Prediction]:
        """The latest prediction of the ``count`` most recently active users, newest first."""
        users = list(self.latest_by_user.values())
        return users[: -count - 1 : -1]

    def rates(self) -> tuple[float, float]:
        """Events sent and predictions received per second over the last few seconds."""
        now = self.clock()
        sent = self.sent_valid + sum(self.sent_malformed.values())
        self._rate_samples.append((now, sent, self.predictions))
        while len(self._rate_samples) > 2 and now - self._rate_samples[1][0] >= _RATE_WINDOW_S:
            self._rate_samples.popleft()
        then, sent_then, predicted_then = self._rate_samples[0]
        span = now - then
        if span <= 0:
            return 0.0, 0.0
        return (sent - sent_then) / span, (self.predictions - predicted_then) / span
