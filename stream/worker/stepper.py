"""The model work of one micro-batch: pick FAST or REBUILD per event, then step in rounds.

Pure computation (no I/O), so the decisions are unit-testable. The service does the Redis
round trips around it: ``append_batch`` before :func:`plan_batch`, one ``read_windows`` for
:attr:`BatchPlan.rebuild_users`, :func:`run_batch`, then one ``write_states``.

FAST: the event was newly applied and the user's best known state (stored, or computed for the
user's previous event in this batch) is the serving model's state at ``seq - 1``: one LSTM step
from ``(h, c)``, pointer inputs from the state's summary plus the new event; no window read.
REBUILD: anything else; the LSTM runs from zero over the window prefix that ends at the event,
so a replayed event gets the prediction it got the first time and never steps a state twice.

A user with several events in a batch is processed in rounds (round r = each user's r-th event),
one ONNX call per round for the fast events plus one per distinct prefix length for rebuilds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from stream.features import FeatureSpec, StaticColumn
from stream.features.encode import age_buckets, hour_buckets, step_features, window_features
from stream.registry import LoadedModel, StepOutput
from stream.store import AppendResult, StateWrite, Window
from stream.worker.exceptions import CodecError
from stream.worker.state_codec import ModelState, decode_state, encode_states
from stream.worker.window_codec import WindowRow, decode_rows, static_rows


class RebuildReason(StrEnum):
    """Why an event cannot take the fast path (a metric label)."""

    MISSING = "missing"  # no stored state (new user, expired, or never written)
    CORRUPT = "corrupt"  # stored blob does not decode
    VERSION = "version"  # state of another model version
    STALE = "stale"  # state is not at seq - 1 (a lost state write, or out-of-order delivery)
    REPLAY = "replay"  # the event was already in the window (redelivery after a crash)
    FORCED = "forced"  # settings.worker_force_rebuild (benchmark baseline)


class StepInput(NamedTuple):  # a NamedTuple, as every per-event record: 3x cheaper to build than a frozen dataclass
    """One valid event of the batch after its window append."""

    user_key: str
    row: WindowRow
    result: AppendResult


@dataclass(frozen=True, slots=True)
class BatchPlan:
    rounds: np.ndarray  # (N,) round of each event
    reasons: list[RebuildReason | None]  # None = FAST
    stored: dict[str, ModelState]  # decoded stored states (serving or not)
    stored_seq: dict[str, int | None]  # seq of the stored state per user, as Redis reported it


@dataclass(slots=True)
class BatchOutput:
    """Per event (batch order): vocabulary top-k, scores, intent, window length; plus states."""

    categories: np.ndarray  # (N, k) int64 vocabulary indices
    scores: np.ndarray  # (N, k) float32
    intent: np.ndarray  # (N,) float32
    history_len: np.ndarray  # (N,) int64
    state_writes: list[StateWrite] = field(default_factory=list)
    new_states: list[ModelState] = field(default_factory=list)  # the states of ``state_writes``
    model_calls: int = 0
    onnx_seconds: float = 0.0  # inside onnxruntime, a part of the whole run


def assign_rounds(user_keys: Sequence[str]) -> np.ndarray:
    """Occurrence index of each user within the batch: round r holds each user's r-th event."""
    seen: dict[str, int] = {}
    rounds = np.empty(len(user_keys), dtype=np.int64)
    for i, user in enumerate(user_keys):
        r = seen.get(user, 0)
        rounds[i] = r
        seen[user] = r + 1
    return rounds


def plan_batch(
    items: Sequence[StepInput],
    version: str,
    *,
    held: Mapping[str, ModelState] | None = None,
    force_rebuild: bool = False,
) -> tuple[BatchPlan, list[str]]:
    """Decide FAST/REBUILD per event; also returns the users whose windows must be read.

    ``held``: states the worker already holds (its state cache); one is used for a user when
    Redis reports that very seq as stored and so did not send the blob.
    """
    held = held or {}
    rounds = assign_rounds([item.user_key for item in items])
    stored: dict[str, ModelState] = {}
    stored_seq: dict[str, int | None] = {}
    corrupt: set[str] = set()
    # (version, seq) of each user's newest state, as it will be after each event in turn.
    best: dict[str, tuple[str, int] | None] = {}
    reasons: list[RebuildReason | None] = []
    for item in items:
        user, result = item.user_key, item.result
        if user not in best:
            stored_seq[user] = result.state_seq
            best[user] = None
            if result.state is not None:
                try:
                    state = decode_state(result.state)
                    stored[user] = state
                    best[user] = (state.version, state.seq)
                except CodecError:
                    corrupt.add(user)
            elif (cached := held.get(user)) is not None and cached.seq == result.state_seq:
                stored[user] = cached
                best[user] = (cached.version, cached.seq)
        known = best[user]
        reason: RebuildReason | None
        if force_rebuild:
            reason = RebuildReason.FORCED
        elif not result.applied:
            reason = RebuildReason.REPLAY
        elif known is None:
            reason = RebuildReason.CORRUPT if user in corrupt else RebuildReason.MISSING
        elif known[0] != version:
            reason = RebuildReason.VERSION
        elif known[1] != result.seq - 1:
            reason = RebuildReason.STALE
        else:
            reason = None
        reasons.append(reason)
        if known is None or result.seq > known[1]:
            best[user] = (version, result.seq)
    rebuild_users = list(dict.fromkeys(it.user_key for it, r in zip(items, reasons, strict=True) if r is not None))
    return BatchPlan(rounds=rounds, reasons=reasons, stored=stored, stored_seq=stored_seq), rebuild_users


@dataclass(frozen=True, slots=True)
class _DecodedWindow:
    seqs: np.ndarray  # (n,) int64
    ts: np.ndarray  # (n,) int64
    static: np.ndarray  # (n, static_width) int32


# (category, type, ts) of the last W events, most recent first: each (B, W)
_Summary = tuple[np.ndarray, np.ndarray, np.ndarray]


def _gap_buckets(ts: np.ndarray, prev_ts: np.ndarray, has_prev: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """``encode.gap_buckets`` for one event each of many users (vectorised across the batch)."""
    gaps_s = np.maximum(ts - prev_ts, 0) / 1000
    buckets = np.searchsorted(np.asarray(spec.gap_edges_s), gaps_s, side="right") + 1
    return np.where(has_prev, buckets, 0).astype(np.int64)


class _BatchRunner:
    """State of one :func:`run_batch` call."""

    def __init__(
        self, model: LoadedModel, items: Sequence[StepInput], plan: BatchPlan, windows: Mapping[str, Window]
    ) -> None:
        self.model = model
        self.spec = model.manifest.feature_spec
        self.items = items
        self.plan = plan
        self.windows = windows
        self.static = static_rows([item.row for item in items], model.encoder)
        self.ts = np.fromiter((item.row.ts for item in items), dtype=np.int64, count=len(items))
        self.best: dict[str, ModelState] = {u: s for u, s in plan.stored.items() if s.version == model.version}
        self.computed: set[str] = set()
        self._decoded: dict[str, _DecodedWindow] = {}
        k = model.manifest.top_k
        n = len(items)
        self.out = BatchOutput(
            categories=np.zeros((n, k), dtype=np.int64),
            scores=np.zeros((n, k), dtype=np.float32),
            intent=np.zeros(n, dtype=np.float32),
            history_len=np.zeros(n, dtype=np.int64),
        )

    def run(self) -> BatchOutput:
        rounds = self.plan.rounds
        is_fast = np.fromiter((r is None for r in self.plan.reasons), dtype=bool, count=len(rounds))
        for r in range(int(rounds.max(initial=-1)) + 1):
            in_round = rounds == r
            fast = np.flatnonzero(in_round & is_fast).tolist()
            if fast:
                self._step_fast(fast)
            by_length: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
            for i in np.flatnonzero(in_round & ~is_fast).tolist():
                steps, ts = self._prefix(i)
                by_length.setdefault(len(steps), []).append((i, steps, ts))
            for group in by_length.values():
                self._step_rebuild(group)
        self._collect_writes()
        return self.out

    def _step_fast(self, idx: list[int]) -> None:
        spec, w = self.spec, self.spec.window
        states = [self.best[self.items[i].user_key] for i in idx]
        h0 = np.array([s.h for s in states])[None]
        c0 = np.array([s.c for s in states])[None]
        static = self.static[idx]
        ts = self.ts[idx]
        prev = np.array([self.items[i].result.prev_ts_ms or 0 for i in idx], dtype=np.int64)
        has_prev = np.array([self.items[i].result.prev_ts_ms is not None for i in idx])
        gap = _gap_buckets(ts, prev, has_prev, spec)
        steps = np.concatenate([static.astype(np.int64), gap[:, None], hour_buckets(ts, spec)[:, None]], axis=1)
        # The new event goes in front of the stored summary (most recent first).
        cat = np.concatenate(
            [static[:, StaticColumn.CATEGORY, None], np.array([s.cat for s in states])[:, : w - 1]], axis=1
        )
        kind = np.concatenate(
            [static[:, StaticColumn.TYPE, None], np.array([s.kind for s in states])[:, : w - 1]], axis=1
        )
        win_ts = np.concatenate([ts[:, None], np.array([s.ts for s in states])[:, : w - 1]], axis=1)
        ages = np.where(kind > 0, age_buckets(ts[:, None] - win_ts, spec), 0)
        started = time.perf_counter()
        out = self.model.step(steps[:, None, :], h0, c0, cat.astype(np.int64), kind.astype(np.int64), ages)
        self.out.onnx_seconds += time.perf_counter() - started
        self.out.model_calls += 1
        history = np.array([self.items[i].result.window_len for i in idx], dtype=np.int64)
        self._record(idx, out, (cat, kind, win_ts), history)

    def _window(self, user: str) -> _DecodedWindow:
        decoded = self._decoded.get(user)
        if decoded is None:
            window = self.windows.get(user)
            if window is None or not len(window):
                decoded = _DecodedWindow(
                    np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.spec.static_width), np.int32)
                )
            else:
                decoded = _DecodedWindow(
                    np.asarray(window.seqs, dtype=np.int64),
                    np.asarray(window.ts_ms, dtype=np.int64),
                    static_rows(decode_rows(window.rows), self.model.encoder),
                )
            self._decoded[user] = decoded
        return decoded

    def _prefix(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Static rows and ts of the window up to and including event ``i`` (its own row last)."""
        item = self.items[i]
        window = self._window(item.user_key)
        before = window.seqs < item.result.seq
        rows = np.concatenate([window.static[before], self.static[i : i + 1]])
        ts = np.concatenate([window.ts[before], self.ts[i : i + 1]])
        return rows, ts

    def _step_rebuild(self, group: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        spec, w = self.spec, self.spec.window
        idx = [i for i, _, _ in group]
        steps = np.stack([step_features(rows, ts, None, spec) for _, rows, ts in group])
        cats, kinds, ages, win_ts = [], [], [], []
        for _, rows, ts in group:
            cat, kind, age = window_features(rows[:, StaticColumn.CATEGORY], rows[:, StaticColumn.TYPE], ts, spec)
            recent_ts = np.zeros(w, dtype=np.int64)
            n = min(w, len(ts))
            recent_ts[:n] = ts[len(ts) - n :][::-1]
            cats.append(cat)
            kinds.append(kind)
            ages.append(age)
            win_ts.append(recent_ts)
        h0, c0 = self.model.zero_state(len(idx))
        cat_a, kind_a = np.array(cats), np.array(kinds)
        started = time.perf_counter()
        out = self.model.step(steps, h0, c0, cat_a, kind_a, np.array(ages))
        self.out.onnx_seconds += time.perf_counter() - started
        self.out.model_calls += 1
        history = np.full(len(idx), steps.shape[1], dtype=np.int64)
        self._record(idx, out, (cat_a, kind_a, np.array(win_ts)), history)

    def _record(self, idx: list[int], out: StepOutput, summary: _Summary, history: np.ndarray) -> None:
        """Store the outputs of events ``idx`` and advance each user's best state."""
        self.out.scores[idx] = out.scores
        self.out.categories[idx] = out.categories
        self.out.intent[idx] = out.intent
        self.out.history_len[idx] = history
        h, c = out.h[0], out.c[0]
        cat, kind, win_ts = summary
        version = self.model.version
        for j, i in enumerate(idx):
            user, seq = self.items[i].user_key, self.items[i].result.seq
            current = self.best.get(user)
            if current is None or seq > current.seq:
                self.best[user] = ModelState(version, seq, h[j], c[j], cat[j], kind[j], win_ts[j])
                self.computed.add(user)

    def _collect_writes(self) -> None:
        users = [u for u in self.computed if (self.plan.stored_seq.get(u) or 0) < self.best[u].seq]
        if not users:
            return
        states = [self.best[u] for u in users]
        blobs = encode_states(
            self.model.version,
            [s.seq for s in states],
            np.array([s.h for s in states]),
            np.array([s.c for s in states]),
            np.array([s.cat for s in states]),
            np.array([s.kind for s in states]),
            np.array([s.ts for s in states]),
        )
        self.out.state_writes = [StateWrite(u, s.seq, b) for u, s, b in zip(users, states, blobs, strict=True)]
        self.out.new_states = states


def run_batch(
    model: LoadedModel, items: Sequence[StepInput], plan: BatchPlan, windows: Mapping[str, Window]
) -> BatchOutput:
    """Run the model over a planned batch; ``windows`` holds at least the plan's rebuild users."""
    return _BatchRunner(model, items, plan, windows).run()
