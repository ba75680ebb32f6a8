"""FAST/REBUILD decisions, rounds, and the equality of incremental stepping and rebuilds.

The model is a small real one exported through the real ONNX path; Redis is replaced by the
exact values ``append_batch`` / ``read_windows`` would return, so these stay unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from support.models import CATEGORIES, ITEMS, generated_histories, publish_model

from stream.contracts import Event
from stream.features import FeatureSpec, Vocabulary
from stream.registry import LoadedModel, ModelRegistry
from stream.store import AppendResult, Window
from stream.worker.state_codec import decode_state, encode_state
from stream.worker.stepper import RebuildReason, StepInput, plan_batch, run_batch
from stream.worker.window_codec import decode_rows, encode_row
from training.export import export_to_registry
from training.model import DemandLSTM, ModelConfig
from training.onnx_eval import step_through_histories


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("registry")
    publish_model(root, "v1", seed=1)
    return LoadedModel.load(ModelRegistry(root), "v1")


class FakeUser:
    """One user's window and stored state, as the Redis store would hold them."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.events: list[Event] = []
        self.state_seq: int | None = None
        self.state: bytes | None = None

    def append(self, event: Event) -> StepInput:
        known = [e.event_id for e in self.events]
        if event.event_id in known:
            seq = known.index(event.event_id) + 1
            prev = self.events[seq - 2].ts if seq > 1 else None
            result = AppendResult(False, seq, len(self.events), prev, self.state_seq, self.state)
        else:
            prev = self.events[-1].ts if self.events else None
            self.events.append(event)
            result = AppendResult(True, len(self.events), len(self.events), prev, self.state_seq, self.state)
        return StepInput(self.user, decode_rows([encode_row(event)])[0], result)

    def window(self) -> Window:
        return Window(
            seqs=list(range(1, len(self.events) + 1)),
            ts_ms=[e.ts for e in self.events],
            rows=[encode_row(e) for e in self.events],
            event_ids=[e.event_id for e in self.events],
        )


def process(
    model: LoadedModel, users: dict[str, FakeUser], events: Sequence[Event], *, force: bool = False
) -> tuple[np.ndarray, np.ndarray, list[RebuildReason | None], int]:
    items = [users.setdefault(e.user_id, FakeUser(e.user_id)).append(e) for e in events]
    plan, rebuild_users = plan_batch(items, model.version, force_rebuild=force)
    out = run_batch(model, items, plan, {u: users[u].window() for u in rebuild_users})
    for write in out.state_writes:
        user = users[write.user_key]
        if user.state_seq is None or write.seq > user.state_seq:
            user.state_seq, user.state = write.seq, write.blob
    return out.scores, out.categories, plan.reasons, out.model_calls


def test_incremental_steps_equal_rebuilds_from_the_window(model: LoadedModel) -> None:
    history = generated_histories(users=1, seed=5, max_len=40)[0][:25]
    assert len(history) > model.manifest.feature_spec.window  # exercises the summary's shifting
    incremental: dict[str, FakeUser] = {}
    rebuilt: dict[str, FakeUser] = {}
    for j, event in enumerate(history):
        fast_scores, fast_cats, reasons, _ = process(model, incremental, [event])
        assert reasons == [RebuildReason.MISSING if j == 0 else None]
        slow_scores, slow_cats, reasons, _ = process(model, rebuilt, [event], force=True)
        assert reasons == [RebuildReason.FORCED]
        np.testing.assert_array_equal(fast_cats, slow_cats)
        np.testing.assert_allclose(fast_scores, slow_scores, rtol=1e-4, atol=1e-6)


def test_one_batch_in_one_call_equals_event_by_event(model: LoadedModel) -> None:
    histories = generated_histories(users=3, seed=9, max_len=12)
    events = [e for h in histories for e in h[:4]]  # grouped by user: several per user in a batch
    one_by_one: dict[str, FakeUser] = {}
    expected = np.concatenate([process(model, one_by_one, [e])[0] for e in events])
    batched: dict[str, FakeUser] = {}
    scores, _, reasons, calls = process(model, batched, events)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)
    # Each user's first event is rebuilt, its next three stepped: all in one model call.
    assert calls == 1
    assert reasons.count(RebuildReason.MISSING) == 3 and reasons.count(None) == len(events) - 3
    for user in batched.values():
        assert user.state_seq == len(user.events) == decode_state(user.state or b"").seq


def test_decisions(model: LoadedModel) -> None:
    history = generated_histories(users=1, seed=2, max_len=30)[0]
    users: dict[str, FakeUser] = {}
    process(model, users, history[:3])
    user = users[history[0].user_id]
    stored = decode_state(user.state or b"")

    # A replay is rebuilt, gets its first prediction again, and writes no state.
    first, *_ = process(model, {}, history[:2])
    scores, _, reasons, _ = process(model, users, [history[1]])
    assert reasons == [RebuildReason.REPLAY]
    np.testing.assert_allclose(scores, first[1:2], rtol=1e-4, atol=1e-6)
    assert user.state_seq == 3

    # A state of another model version is rebuilt.
    user.state = encode_state(type(stored)("v0", stored.seq, stored.h, stored.c, stored.cat, stored.kind, stored.ts))
    assert process(model, users, [history[3]])[2] == [RebuildReason.VERSION]
    # A lost state write leaves the state behind the window: stale.
    user.events.append(history[4])
    assert process(model, users, [history[5]])[2] == [RebuildReason.STALE]
    # A corrupt blob is rebuilt, not a crash; then the next event is fast again.
    user.state = b"\x00garbage"
    assert process(model, users, [history[6]])[2] == [RebuildReason.CORRUPT]
    assert process(model, users, [history[7]])[2] == [None]


def test_replay_then_new_event_in_one_batch(model: LoadedModel) -> None:
    history = generated_histories(users=1, seed=4, max_len=30)[0]
    users: dict[str, FakeUser] = {}
    process(model, users, history[:3])
    _, _, reasons, _ = process(model, users, [history[2], history[3]])
    # The replayed event's rebuilt state (seq 3) is the stored one: the new event is still fast.
    assert reasons == [RebuildReason.REPLAY, None]
    assert users[history[0].user_id].state_seq == 4


def test_a_held_state_stands_in_for_the_blob_redis_did_not_send(model: LoadedModel) -> None:
    history = generated_histories(users=1, seed=3, max_len=30)[0]
    users: dict[str, FakeUser] = {}
    process(model, users, history[:3])
    user = users[history[0].user_id]
    held = {user.user: decode_state(user.state or b"")}
    item = user.append(history[3])
    plan, _ = plan_batch([item], model.version)
    assert plan.reasons == [None]
    expected = run_batch(model, [item], plan, {})
    # Redis reports the stored seq but, since the worker holds that state, sends no blob.
    bare = StepInput(item.user_key, item.row, item.result._replace(state=None))
    plan, rebuild_users = plan_batch([bare], model.version, held=held)
    assert plan.reasons == [None] and rebuild_users == []
    got = run_batch(model, [bare], plan, {})
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert [w.seq for w in got.state_writes] == [4] and got.new_states[0].seq == 4
    # A held state of another seq is not used: the event is rebuilt from the window.
    stale = {user.user: held[user.user]._replace(seq=2)}
    assert plan_batch([bare], model.version, held=stale)[0].reasons == [RebuildReason.MISSING]


def test_a_mixed_batch_in_one_call_equals_event_by_event(model: LoadedModel) -> None:
    """Replays, rebuilds and stepped chains of several users, interleaved, share one call and
    predict exactly what feeding the same events one at a time predicts."""
    histories = [h for h in generated_histories(users=6, seed=21, max_len=30) if len(h) >= 10][:3]
    assert len(histories) == 3
    a, b, c = histories

    def prepared() -> dict[str, FakeUser]:
        users: dict[str, FakeUser] = {}
        for h in histories:
            process(model, users, h[:5])
        users[c[0].user_id].events.append(c[5])  # a lost state write: c's state is one event behind
        return users

    # a: a replay then two new events; b: three new events from its stored state; c: stale.
    batch = [a[3], b[5], c[6], a[5], b[6], a[6], c[7], b[7]]
    one_by_one = prepared()
    expected = [process(model, one_by_one, [e]) for e in batch]
    batched = prepared()
    scores, cats, reasons, calls = process(model, batched, batch)
    assert calls == 1
    assert reasons == [r for _, _, (r,), _ in expected]
    assert reasons[:3] == [RebuildReason.REPLAY, None, RebuildReason.STALE]
    np.testing.assert_allclose(scores, np.concatenate([s for s, *_ in expected]), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(cats, np.concatenate([k for _, k, *_ in expected]))
    for user, alone in zip(batched.values(), one_by_one.values(), strict=True):
        got, want = decode_state(user.state or b""), decode_state(alone.state or b"")
        assert got.seq == want.seq == len(user.events)
        np.testing.assert_allclose(got.h, want.h, atol=1e-5)
        np.testing.assert_array_equal(got.cat, want.cat)
        np.testing.assert_array_equal(got.ts, want.ts)


def test_a_long_rebuild_gets_its_own_call_and_changes_nothing(model: LoadedModel) -> None:
    """A rebuilt 40-event window next to 40 one-step rows: two calls (padding every row to 40
    steps would cost more), and the same predictions as one event at a time."""
    histories = generated_histories(users=80, seed=8, max_len=60)
    long = next(h for h in histories if len(h) >= 42)
    short = [h for h in histories if h is not long and len(h) >= 3][:40]
    assert len(short) == 40

    def prepared() -> dict[str, FakeUser]:
        users: dict[str, FakeUser] = {}
        process(model, users, long[:40])
        for h in short:
            process(model, users, h[:2])
        users[long[0].user_id].events.append(long[40])  # a lost state write: rebuilt from the window
        return users

    batch = [long[41], *(h[2] for h in short)]
    one_by_one = prepared()
    expected = [process(model, one_by_one, [e]) for e in batch]
    scores, _, reasons, calls = process(model, prepared(), batch)
    assert reasons == [RebuildReason.STALE, *[None] * 40]
    assert calls == 2
    np.testing.assert_allclose(scores, np.concatenate([s for s, *_ in expected]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("target", ["category", "item"])
def test_the_worker_predicts_what_the_trainers_evaluation_predicts(tmp_path: Path, target: str) -> None:
    """Serving and training read the same window column: an item model's pointer reads items."""
    torch.manual_seed(3)
    categories, items = Vocabulary(CATEGORIES), Vocabulary(ITEMS)
    spec = FeatureSpec(window=12, text_tokens=3, text_buckets=256, target=target)  # type: ignore[arg-type]
    config = ModelConfig(len(categories), len(items), hidden=16, cat_dim=8, pointer_dim=8, target=target)
    registry = ModelRegistry(tmp_path)
    export_to_registry(registry, DemandLSTM(spec, config), categories, items, version="t", top_k=5,
                       parity_histories=generated_histories(users=3, seed=1), extra={})  # fmt: skip
    served = LoadedModel.load(registry, "t")
    history = generated_histories(users=1, seed=11, max_len=40)[0][:20]
    ((expected, expected_ids, _),) = step_through_histories(served, [history])
    stepped: dict[str, FakeUser] = {}
    one_by_one = [process(served, stepped, [e]) for e in history]
    np.testing.assert_allclose(np.concatenate([s for s, *_ in one_by_one]), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([k for _, k, *_ in one_by_one]), expected_ids)
    batch_scores, *_ = process(served, {}, history)  # the whole history as one batch
    np.testing.assert_allclose(batch_scores, expected, rtol=1e-4, atol=1e-6)
