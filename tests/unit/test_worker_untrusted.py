"""Stored data is untrusted: garbage windows and states are rebuilt from what decodes, never a crash.

A real small model (the real ONNX path) steps batches whose stored rows and states were damaged
in every way the worker could meet: random bytes, truncated msgpack, rows of unknown types, seqs
out of order, states of another hidden size or window, non-finite or out-of-vocabulary values.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.models import generated_histories, publish_model

from stream.registry import LoadedModel, ModelRegistry
from stream.store import AppendResult, Window
from stream.worker.exceptions import CodecError
from stream.worker.state_codec import ModelState, encode_state
from stream.worker.stepper import RebuildReason, StepInput, plan_batch, run_batch
from stream.worker.untrusted import (
    Rejected,
    StateLimits,
    StoredKey,
    decode_stored_state,
    decode_window,
    logged_key,
)
from stream.worker.window_codec import WindowRow, encode_row, row_of


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("registry")
    publish_model(root, "v1", seed=1)
    return LoadedModel.load(ModelRegistry(root), "v1")


HISTORY = generated_histories(users=1, seed=3, max_len=20)[0][:10]


def _window(rows: list[bytes], seqs: list[int] | None = None) -> Window:
    seqs = seqs or list(range(1, len(rows) + 1))
    return Window(seqs=seqs, ts_ms=[HISTORY[0].ts + i for i in range(len(rows))], rows=rows, event_ids=[""] * len(rows))


def _state(model: LoadedModel, hidden: int | None = None, window: int | None = None, seq: int = 9) -> ModelState:
    h = hidden or model.hidden
    w = window or model.manifest.feature_spec.window
    return ModelState(model.version, seq, np.zeros(h), np.zeros(h), np.zeros(w), np.zeros(w), np.zeros(w))


def test_good_rows_decode_and_bad_ones_are_left_out(model: LoadedModel) -> None:
    good = [encode_row(e) for e in HISTORY[:4]]
    bogus_type = msgspec.msgpack.encode(WindowRow(type="teleport", ts=1))
    bad_rating = msgspec.msgpack.encode(WindowRow("review", 1, rating=99))
    rows = [good[0], b"\xc1", good[1][:-2], bogus_type, bad_rating, good[2], good[3]]
    decoded, problems = decode_window(_window(rows), model.encoder, "u")
    assert decoded.seqs.tolist() == [1, 6, 7]
    expected, _ = decode_window(_window([good[0], good[2], good[3]], [1, 6, 7]), model.encoder)
    np.testing.assert_array_equal(decoded.static, expected.static)
    counts = {p.reason: p.values for p in problems}
    assert counts == {Rejected.UNDECODABLE: 2, Rejected.VALUES: 2}
    assert all(p.key is StoredKey.WINDOW and p.user_key == "u" for p in problems)


def test_seqs_out_of_order_and_malformed_entries_are_left_out(model: LoadedModel) -> None:
    rows = [encode_row(e) for e in HISTORY[:4]]
    window = Window([1, 2**63 + 5, 2, 2], [1, 2, 3, 4], rows, [""] * 4, malformed=3)
    decoded, problems = decode_window(window, model.encoder)
    assert decoded.seqs.tolist() == [1, 2]
    assert {p.reason: p.values for p in problems} == {Rejected.VALUES: 2, Rejected.ENTRY: 3}


@pytest.mark.parametrize(
    ("blob_of", "reason"),
    [
        (lambda m: b"", Rejected.UNDECODABLE),
        (lambda m: b"\x93\x01", Rejected.UNDECODABLE),
        (lambda m: encode_state(_state(m))[:-7], Rejected.UNDECODABLE),
        (lambda m: msgspec.msgpack.encode([2, "v1", 1, b"", b"", b"", b"", b""]), Rejected.FORMAT),
        (lambda m: encode_state(_state(m, hidden=7)), Rejected.SHAPE),
        (lambda m: encode_state(_state(m, window=3)), Rejected.SHAPE),
        (lambda m: encode_state(_state(m)._replace(h=np.full(m.hidden, np.nan))), Rejected.VALUES),
        (lambda m: encode_state(_state(m)._replace(cat=np.full(12, 10**6))), Rejected.VALUES),
        (lambda m: encode_state(_state(m)._replace(kind=np.full(12, 100))), Rejected.VALUES),
        (lambda m: encode_state(_state(m, seq=0)), Rejected.VALUES),
    ],
)
def test_unusable_states_are_refused_with_a_reason(model: LoadedModel, blob_of, reason: Rejected) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CodecError) as caught:
        decode_stored_state(blob_of(model), StateLimits.of(model))
    assert caught.value.reason == reason


def test_a_state_of_another_version_need_not_fit(model: LoadedModel) -> None:
    other = _state(model, hidden=7)._replace(version="v0")
    assert decode_stored_state(encode_state(other), StateLimits.of(model)).version == "v0"


def test_logged_key_never_holds_the_user_id() -> None:
    plain = logged_key("ds", "alice", StoredKey.WINDOW, pseudonymised=False)
    assert "alice" not in plain and plain.startswith("ds:{sha256:") and plain.endswith(":w")
    assert logged_key("ds", "4f2a", StoredKey.STATE, pseudonymised=True) == "ds:{4f2a}:s"


def _step(model: LoadedModel, window_rows: list[bytes], state: bytes | None, state_seq: int | None) -> tuple:  # type: ignore[type-arg]
    """One new event after a stored (possibly damaged) window and state; returns (reasons, out, plan)."""
    event = HISTORY[len(window_rows)] if len(window_rows) < len(HISTORY) else HISTORY[-1]
    seq = len(window_rows) + 1
    result = AppendResult(True, seq, seq, HISTORY[0].ts, state_seq, state)
    items = [StepInput("u", row_of(event), result)]
    plan, rebuild = plan_batch(items, model.version, limits=StateLimits.of(model))
    windows = {"u": _window([*window_rows, encode_row(event)])} if rebuild else {}
    out = run_batch(model, items, plan, windows)
    return plan.reasons, out, plan


def test_a_damaged_window_is_rebuilt_from_what_decodes(model: LoadedModel) -> None:
    good = [encode_row(e) for e in HISTORY[:5]]
    clean_reasons, _, _ = _step(model, [good[0], good[2], good[4]], None, None)
    damaged = [good[0], b"\xffgarbage", good[2], good[3][:3], good[4]]
    reasons, out, _ = _step(model, damaged, None, None)
    assert reasons == clean_reasons == [RebuildReason.MISSING]
    assert {(p.reason, p.values) for p in out.rejected} == {(Rejected.UNDECODABLE, 2)}
    assert np.isfinite(out.scores).all() and out.state_writes
    assert out.history_len.tolist() == [4]  # three decodable rows + the event


def test_a_misshapen_state_is_rebuilt(model: LoadedModel) -> None:
    good = [encode_row(e) for e in HISTORY[:4]]
    blob = encode_state(_state(model, hidden=7, seq=4))
    reasons, out, plan = _step(model, good, blob, 4)
    assert reasons == [RebuildReason.CORRUPT]
    assert [(p.key, p.reason) for p in plan.rejected] == [(StoredKey.STATE, Rejected.SHAPE)]
    assert out.state_writes and np.isfinite(out.scores).all()


def test_a_repaired_key_is_a_corrupt_rebuild(model: LoadedModel) -> None:
    event = HISTORY[0]
    result = AppendResult(True, 1, 1, None, None, None, repaired="window")
    plan, _ = plan_batch([StepInput("u", row_of(event), result)], model.version)
    assert plan.reasons == [RebuildReason.CORRUPT]
    assert [(p.key, p.reason) for p in plan.rejected] == [(StoredKey.WINDOW, Rejected.WRONG_TYPE)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([encode_row(e) for e in HISTORY[:5]])), max_size=6),
    state=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_any_stored_bytes_still_give_a_prediction(model: LoadedModel, rows: list[bytes], state: bytes | None) -> None:
    reasons, out, _ = _step(model, rows, state, None if state is None else len(rows))
    assert reasons[0] is not None  # random bytes never pass as a usable state
    assert out.scores.shape == (1, model.manifest.top_k) and np.isfinite(out.scores).all()
