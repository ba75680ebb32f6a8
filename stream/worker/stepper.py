"""The model work of one micro-batch: pick FAST or REBUILD per event, then one model call.

Pure computation (no I/O), so the decisions are unit-testable. The service does the Redis
round trips around it: ``append_batch`` before :func:`plan_batch`, one ``read_windows`` for
the rebuild users it returns, :func:`run_batch`, then one ``write_states``.

FAST: the event was newly applied and the user's best known state (stored, or computed for the
user's previous event in this batch) is the serving model's state at ``seq - 1``: one LSTM step
from ``(h, c)``, pointer inputs from the state's summary plus the new event; no window read.
REBUILD: anything else; the LSTM runs from zero over the window prefix that ends at the event,
so a replayed event gets the prediction it got the first time and never steps a state twice.

The batch becomes rows of one call (:class:`_Rows`): a row starts at a stored state or at zero
(a REBUILD event, its window prefix first) and goes on through the FAST events that follow it,
so a user with several events in the batch still costs one row, and a batch of FAST events one
onnxruntime call. Rows much longer than the rest (rebuilt windows) get calls of their own
(:func:`group_rows`): the LSTM runs every row of a call as long as its longest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from stream.features import StaticColumn
from stream.features.encode import age_buckets, gap_buckets_after, hour_buckets, target_column
from stream.registry import LoadedModel
from stream.store import AppendResult, StateWrite, Window
from stream.worker.exceptions import CodecError
from stream.worker.state_codec import ModelState, encode_states
from stream.worker.untrusted import Rejected, Rejection, StateLimits, StoredKey, decode_stored_state, decode_window
from stream.worker.window_codec import WindowRow, static_rows


class RebuildReason(StrEnum):
    """Why an event cannot take the fast path (a metric label)."""

    MISSING = "missing"  # no stored state (new user, expired, or never written)
    CORRUPT = "corrupt"  # stored state does not decode or does not fit the model (or a key had the wrong type)
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
    reasons: list[RebuildReason | None]  # None = FAST
    stored: dict[str, ModelState]  # decoded stored states (serving or not)
    stored_seq: dict[str, int | None]  # seq of the stored state per user, as Redis reported it
    rejected: list[Rejection] = field(default_factory=list)  # stored values not used, and why


@dataclass(slots=True)
class BatchOutput:
    """Per event (batch order): vocabulary top-k, scores, intent, window length; plus states."""

    categories: np.ndarray  # (N, k) int64 vocabulary indices
    scores: np.ndarray  # (N, k) float32
    intent: np.ndarray  # (N,) float32
    history_len: np.ndarray  # (N,) int64
    state_writes: list[StateWrite] = field(default_factory=list)  # ``decoded``: the new state (own arrays)
    new_states: list[ModelState] = field(default_factory=list)  # the states of ``state_writes``
    model_calls: int = 0
    onnx_seconds: float = 0.0  # inside onnxruntime, a part of the whole run
    rejected: list[Rejection] = field(default_factory=list)  # window rows not used, and why


def plan_batch(
    items: Sequence[StepInput],
    version: str,
    *,
    held: Mapping[str, ModelState] | None = None,
    force_rebuild: bool = False,
    limits: StateLimits | None = None,
) -> tuple[BatchPlan, list[str]]:
    """Decide FAST/REBUILD per event; also returns the users whose windows must be read.

    ``held``: states the worker already holds (its state cache); one is used for a user when
    Redis reports that very seq as stored and so did not send the blob. ``limits``: what a
    stored state of the serving version must look like (else it is ``CORRUPT``: rebuilt).
    """
    held = held or {}
    stored: dict[str, ModelState] = {}
    stored_seq: dict[str, int | None] = {}
    corrupt: set[str] = set()
    rejected: list[Rejection] = []
    # (version, seq) of each user's newest state, as it will be after each event in turn.
    best: dict[str, tuple[str, int] | None] = {}
    reasons: list[RebuildReason | None] = []
    for item in items:
        user, result = item.user_key, item.result
        if user not in best:
            stored_seq[user] = result.state_seq
            best[user] = None
            if result.repaired is not None:  # the store deleted a key of the wrong type
                corrupt.add(user)
                key = StoredKey.STATE if result.repaired == "state" else StoredKey.WINDOW
                rejected.append(Rejection(user, key, Rejected.WRONG_TYPE, 1, f"{result.repaired} key deleted"))
            if result.state is not None:
                try:
                    state = decode_stored_state(result.state, limits)
                    stored[user] = state
                    best[user] = (state.version, state.seq)
                except CodecError as exc:
                    corrupt.add(user)
                    why = Rejected(exc.reason or Rejected.UNDECODABLE)
                    rejected.append(Rejection(user, StoredKey.STATE, why, 1, str(exc)))
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
    return BatchPlan(reasons=reasons, stored=stored, stored_seq=stored_seq, rejected=rejected), rebuild_users


# What a model call costs beyond its LSTM steps, in row-steps (one row, one LSTM step). Measured:
# onnxruntime's fixed cost per run is ~0.17 ms and a padded step ~1-2 µs; but splitting a batch of
# FAST rows (1-4 steps each) into two calls was no faster than one call (alternating runs), so the
# cost is set high enough that such batches stay one call, while a rebuilt window next to them
# still gets a call of its own (bench.model_bench "ragged rows": 7.6x less than padding every row).
CALL_COST_STEPS = 1_000


def group_rows(lengths: np.ndarray, call_cost: int = CALL_COST_STEPS) -> list[np.ndarray]:
    """Rows of a batch cut into model calls so that padding costs little.

    A call runs every row for as many LSTM steps as its longest row: one rebuilt 100-event window
    among 200 one-step rows would make the call's LSTM work 50 times what it needs. Rows sorted by
    length are cut into contiguous groups minimising ``sum(call_cost + rows * longest)``; a batch
    of FAST events (one to a few steps per user) stays one call.

    >>> [g.tolist() for g in group_rows(np.array([1, 1, 2, 1, 4]))]
    [[0, 1, 2, 3, 4]]
    >>> [g.tolist() for g in group_rows(np.array([1, 100, 2] + [1] * 20))][1]
    [1]
    """
    distinct, inverse, counts = np.unique(lengths, return_inverse=True, return_counts=True)
    sizes, below = distinct.tolist(), np.concatenate([[0], np.cumsum(counts)]).tolist()
    best, cut = [0] + [0] * len(sizes), [0] * (len(sizes) + 1)
    for j in range(1, len(sizes) + 1):  # best[j]: the first j distinct lengths, grouped
        options = [(best[i - 1] + call_cost + (below[j] - below[i - 1]) * sizes[j - 1], i) for i in range(1, j + 1)]
        best[j], cut[j] = min(options)
    groups, j = [], len(sizes)
    while j > 0:
        i = cut[j]
        groups.append(np.flatnonzero((inverse >= i - 1) & (inverse <= j - 1)))
        j = i - 1
    return groups[::-1]


@dataclass(frozen=True, slots=True)
class _DecodedWindow:
    seqs: np.ndarray  # (n,) int64
    ts: np.ndarray  # (n,) int64
    static: np.ndarray  # (n, static_width) int32


@dataclass(slots=True)
class _Rows:
    """How the batch's events map onto the rows of the model call."""

    row: np.ndarray  # (N,) row of each event
    step: np.ndarray  # (N,) step of each event in its row (after the row's window prefix)
    starts: list[ModelState | None]  # per row: the state it continues, or None (from zero)
    prefixes: list[_DecodedWindow | None]  # per row from zero: the window rows before its first event
    lengths: list[int]  # per row: steps
    first: list[int]  # per row: its first event (batch index)
    tail: list[int]  # per row: its last event


class _CallInputs(NamedTuple):
    steps: np.ndarray  # (rows, longest row, step_width)
    h0: np.ndarray  # (1, rows, hidden)
    c0: np.ndarray
    win_cat: np.ndarray  # (events, window): each event's pointer window, most recent first
    win_kind: np.ndarray
    win_ts: np.ndarray
    ages: np.ndarray


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
        self.serving = {u: s for u, s in plan.stored.items() if s.version == model.version}
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
        if not self.items:
            return self.out
        rows = self._assign_rows()
        self._run_calls(rows, self._call_inputs(rows))
        return self.out

    def _assign_rows(self) -> _Rows:
        n = len(self.items)
        rows = _Rows(np.empty(n, np.int64), np.empty(n, np.int64), [], [], [], [], [])
        tail_of: dict[tuple[str, int], int] = {}  # (user, seq) -> the row that ends at that seq
        for i, (item, reason) in enumerate(zip(self.items, self.plan.reasons, strict=True)):
            user, seq = item.user_key, item.result.seq
            r = tail_of.get((user, seq - 1)) if reason is None else None
            if r is None:
                r = len(rows.lengths)
                if reason is None:  # continues the stored state (plan_batch checked it is at seq - 1)
                    rows.starts.append(self.serving[user])
                    rows.prefixes.append(None)
                    rows.lengths.append(0)
                else:
                    window = self._window(user)
                    before = window.seqs < seq
                    prefix = _DecodedWindow(window.seqs[before], window.ts[before], window.static[before])
                    rows.starts.append(None)
                    rows.prefixes.append(prefix)
                    rows.lengths.append(len(prefix.seqs))
                rows.first.append(i)
                rows.tail.append(i)
            rows.row[i], rows.step[i] = r, rows.lengths[r]
            rows.lengths[r] += 1
            rows.tail[r] = i
            tail_of[(user, seq)] = r
        return rows

    def _call_inputs(self, rows: _Rows) -> _CallInputs:
        """The model inputs of every row and event, padded to the longest row."""
        spec, w, n_rows = self.spec, self.spec.window, len(rows.lengths)
        width = max(rows.lengths)
        target = target_column(spec)
        # Per row, oldest first: the w events before its first step (the start state's summary,
        # or padding), then its steps. The pointer window of step t is columns t+1 .. t+w.
        cat = np.zeros((n_rows, w + width), dtype=np.int64)
        kind = np.zeros((n_rows, w + width), dtype=np.int64)
        ts = np.zeros((n_rows, w + width), dtype=np.int64)
        static = np.zeros((n_rows, width, spec.static_width), dtype=np.int32)
        h0, c0 = self.model.zero_state(n_rows)
        prev_ts = np.zeros(n_rows, dtype=np.int64)  # before each row's first step
        has_prev = np.zeros(n_rows, dtype=bool)
        continued = [r for r, start in enumerate(rows.starts) if start is not None]
        if continued:
            states = [start for start in rows.starts if start is not None]
            h0[0, continued] = np.array([s.h for s in states])
            c0[0, continued] = np.array([s.c for s in states])
            cat[continued, :w] = np.array([s.cat for s in states])[:, ::-1]
            kind[continued, :w] = np.array([s.kind for s in states])[:, ::-1]
            ts[continued, :w] = np.array([s.ts for s in states])[:, ::-1]
            firsts = [self.items[rows.first[r]].result.prev_ts_ms for r in continued]
            prev_ts[continued] = [t or 0 for t in firsts]
            has_prev[continued] = [t is not None for t in firsts]
        for r, prefix in enumerate(rows.prefixes):
            if prefix is not None and len(prefix.seqs):
                p = len(prefix.seqs)
                static[r, :p] = prefix.static
                cat[r, w : w + p] = prefix.static[:, target]
                kind[r, w : w + p] = prefix.static[:, StaticColumn.TYPE]
                ts[r, w : w + p] = prefix.ts
        at_row, at_step = rows.row, rows.step
        static[at_row, at_step] = self.static
        cat[at_row, w + at_step] = self.static[:, target]
        kind[at_row, w + at_step] = self.static[:, StaticColumn.TYPE]
        ts[at_row, w + at_step] = self.ts

        step_ts = ts[:, w:]
        prev = np.concatenate([prev_ts[:, None], step_ts[:, :-1]], axis=1)
        prev_known = np.concatenate([has_prev[:, None], np.ones((n_rows, width - 1), dtype=bool)], axis=1)
        gap = gap_buckets_after(step_ts, prev, prev_known, spec)
        hour = hour_buckets(step_ts, spec)
        steps = np.concatenate([static.astype(np.int64), gap[..., None], hour[..., None]], axis=2)

        windows = np.lib.stride_tricks.sliding_window_view
        win_cat = windows(cat, w, axis=1)[at_row, at_step + 1, ::-1]
        win_kind = windows(kind, w, axis=1)[at_row, at_step + 1, ::-1]
        win_ts = windows(ts, w, axis=1)[at_row, at_step + 1, ::-1]
        ages = np.where(win_kind > 0, age_buckets(self.ts[:, None] - win_ts, spec), 0)

        return _CallInputs(steps, h0, c0, win_cat, win_kind, win_ts, ages)

    def _run_calls(self, rows: _Rows, inputs: _CallInputs) -> None:
        """One onnxruntime call per group of rows (:func:`group_rows`; one in the usual batch)."""
        at_row, at_step = rows.row, rows.step
        lengths = np.asarray(rows.lengths, dtype=np.int64)
        h1, c1 = np.empty_like(inputs.h0), np.empty_like(inputs.c0)
        local = np.empty(len(lengths), dtype=np.int64)  # row -> its index within its call
        for group in group_rows(lengths):
            local[group] = np.arange(len(group))
            events = np.flatnonzero(np.isin(at_row, group))
            group_width = int(lengths[group].max())
            started = time.perf_counter()
            out = self.model.step(
                inputs.steps[group, :group_width], lengths[group], inputs.h0[:, group], inputs.c0[:, group],
                local[at_row[events]] * group_width + at_step[events],
                inputs.win_cat[events], inputs.win_kind[events], inputs.ages[events],
            )  # fmt: skip
            self.out.onnx_seconds += time.perf_counter() - started
            self.out.model_calls += 1
            self.out.scores[events] = out.scores
            self.out.categories[events] = out.categories
            self.out.intent[events] = out.intent
            h1[:, group], c1[:, group] = out.h, out.c
        from_window = np.fromiter((r is not None for r in self.plan.reasons), dtype=bool, count=len(self.items))
        reported = np.fromiter((it.result.window_len for it in self.items), dtype=np.int64, count=len(self.items))
        # A rebuilt event saw its window prefix; a stepped one the window Redis reported.
        self.out.history_len[:] = np.where(from_window, at_step + 1, reported)
        self._collect_writes(rows, h1[0], c1[0], (inputs.win_cat, inputs.win_kind, inputs.win_ts))

    def _window(self, user: str) -> _DecodedWindow:
        decoded = self._decoded.get(user)
        if decoded is None:
            # Stored rows are untrusted: what does not decode is left out (and reported), the
            # state is rebuilt from the rest; a crash here would recur on every replay.
            usable, rejected = decode_window(self.windows.get(user), self.model.encoder, user)
            self.out.rejected += rejected
            decoded = self._decoded[user] = _DecodedWindow(*usable)
        return decoded

    def _collect_writes(self, rows: _Rows, h1: np.ndarray, c1: np.ndarray, summary: tuple[np.ndarray, ...]) -> None:
        """Each user's newest state (the row ending at its highest seq), unless Redis holds it."""
        newest: dict[str, tuple[int, int]] = {}  # user -> (seq, row)
        for r, i in enumerate(rows.tail):
            item = self.items[i]
            seq = item.result.seq
            known = newest.get(item.user_key)
            if known is None or seq > known[0]:
                newest[item.user_key] = (seq, r)
        users = [u for u, (seq, _) in newest.items() if (self.plan.stored_seq.get(u) or 0) < seq]
        if not users:
            return
        picked = [newest[u][1] for u in users]
        tails = [rows.tail[r] for r in picked]
        seqs = [newest[u][0] for u in users]
        h, c = h1[picked], c1[picked]
        cat, kind, ts = (a[tails] for a in summary)
        version = self.model.version
        blobs = encode_states(version, seqs, h, c, cat, kind, ts)
        # Each state owns its arrays: a row view would keep the whole batch's arrays alive as long
        # as the user is held (idle users would pin gigabytes).
        states = [
            ModelState(version, seq, h[j].copy(), c[j].copy(), cat[j].copy(), kind[j].copy(), ts[j].copy())
            for j, seq in enumerate(seqs)
        ]
        self.out.state_writes = [
            StateWrite(u, seq, blob, state) for u, seq, blob, state in zip(users, seqs, blobs, states, strict=True)
        ]
        self.out.new_states = states


def run_batch(
    model: LoadedModel, items: Sequence[StepInput], plan: BatchPlan, windows: Mapping[str, Window]
) -> BatchOutput:
    """Run the model over a planned batch; ``windows`` holds at least the plan's rebuild users."""
    return _BatchRunner(model, items, plan, windows).run()
