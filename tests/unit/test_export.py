"""ONNX export of the incremental serving graph (parity, dynamic batch, multi-step calls) and the
promotion gate, on a model trained briefly on generated shoppers."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from support.models import generated_histories

from stream.contracts import Event
from stream.features import EventEncoder, FeatureSpec, StaticColumn, Vocabulary
from stream.features.encode import sequence_window_features, step_features, target_column
from stream.registry import LoadedModel, Manifest, ModelRegistry
from stream.registry.manifest import serving_inputs, serving_outputs
from stream.registry.registry import sha256_file
from training import export as export_module
from training.data import EncodedEvents, UserSequence, encode_sequences, training_tokens
from training.exceptions import ExportError
from training.export import PARITY_TOLERANCE, build_version, check_parity, export_to_registry
from training.metrics import mrr_at_k
from training.model import DemandLSTM, ModelConfig
from training.onnx_eval import step_through_histories
from training.promotion import score_served_model
from training.sequences import encode_history
from training.split import TEST, VALID, TimeSplit
from training.train import TrainConfig, fit, predict

pytestmark = pytest.mark.slow

TOP_K = 10
SPEC = FeatureSpec(window=12, text_tokens=3, text_buckets=256)


@dataclass
class Trained:
    model: DemandLSTM
    categories: Vocabulary
    items: Vocabulary
    sequences: list[UserSequence]
    data: EncodedEvents
    queries: np.ndarray
    split: TimeSplit


@pytest.fixture(scope="module")
def trained() -> Trained:
    """A small DemandLSTM trained for a few epochs on generated shoppers (fractions split)."""
    histories = generated_histories(users=80, seed=11, max_len=50)
    sequences = [UserSequence(h[0].user_id, h) for h in histories]
    first = min(s.events[0].ts for s in sequences)
    last = max(s.events[-1].ts for s in sequences)
    split = TimeSplit.from_fractions(first, last, 0.7, 0.85)
    categories = Vocabulary.build(training_tokens(sequences, split, "category"))
    items = Vocabulary.build(training_tokens(sequences, split, "item"))
    encoder = EventEncoder(SPEC, categories, items)
    encoded = [encode_history(s.user_id, s.events, encoder, split) for s in sequences]
    torch.manual_seed(0)
    model = DemandLSTM(SPEC, ModelConfig(len(categories), len(items), hidden=16, cat_dim=8, pointer_dim=8))

    def valid_mrr(m: DemandLSTM) -> float:
        p = predict(m, encoded, VALID)
        return mrr_at_k(p.targets, p.topk, 10)

    fit(model, encoded, valid_mrr, TrainConfig(epochs=3, progress=False, threads=1, seed=3))
    model.eval()
    data = encode_sequences(sequences, categories, split, "category")
    return Trained(model, categories, items, sequences, data, data.queries(TEST), split)


@pytest.fixture(scope="module")
def staged(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, LoadedModel, Path]:
    staging = tmp_path_factory.mktemp("staging")
    manifest = build_version(
        trained.model, trained.categories, trained.items, version="vtest", top_k=TOP_K,
        parity_histories=[s.events for s in trained.sequences[:8]], extra={}, staging=staging,
    )  # fmt: skip
    return manifest, LoadedModel.from_directory(staging, manifest), staging


def encode_for_serving(model: LoadedModel, events: list[Event]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Step features ``(T, step_width)`` and window features ``3 x (T, W)`` as a worker builds them."""
    spec = model.encoder.spec
    rows = model.encoder.static_rows(events)
    ts = np.array([e.ts for e in events], dtype=np.int64)
    windows = sequence_window_features(rows[:, target_column(spec)], rows[:, StaticColumn.TYPE], ts, spec)
    return step_features(rows, ts, None, spec), windows


# --- export and parity ------------------------------------------------------------------------------


def test_manifest_records_hashes_and_the_serving_interface(
    trained: Trained, staged: tuple[Manifest, LoadedModel, Path]
) -> None:
    manifest, loaded, staging = staged
    assert manifest.inputs == serving_inputs(SPEC, 16)
    assert manifest.outputs == serving_outputs(TOP_K, 16)
    assert manifest.feature_spec == SPEC
    assert (manifest.n_categories, manifest.n_items) == (len(trained.categories), len(trained.items))
    assert loaded.version == "vtest"
    assert sorted(manifest.files) == ["categories.json", "items.json", "model.onnx"]
    for name, digest in manifest.files.items():
        assert sha256_file(staging / name) == digest


def test_onnx_parity_on_held_out_generated_histories(
    trained: Trained, staged: tuple[Manifest, LoadedModel, Path]
) -> None:
    _, loaded, _ = staged
    held_out = generated_histories(users=20, seed=1234, max_len=70)  # not the parity set used at export
    diff = check_parity(trained.model, loaded, held_out)
    assert diff <= PARITY_TOLERANCE
    # The model is trained (scores are not flat), so parity is not trivially met by constant outputs.

    stepped = step_through_histories(loaded, held_out)
    top1 = np.concatenate([scores[:, 0] for scores, _cats, _intent in stepped])
    assert top1.max() - top1.min() > 0.05


def test_onnx_rankings_match_the_trainer_predictions(
    trained: Trained, staged: tuple[Manifest, LoadedModel, Path]
) -> None:
    """The promotion gate's ONNX scoring sees the same rankings as the trainer's torch evaluation."""
    _, loaded, _ = staged
    onnx = score_served_model(
        loaded, [s.events for s in trained.sequences], trained.data, trained.queries, trained.categories
    )
    encoder = EventEncoder(SPEC, trained.categories, trained.items)
    split = trained.split
    encoded = [encode_history(s.user_id, s.events, encoder, split) for s in trained.sequences]
    torch_pred = predict(trained.model, encoded, TEST, k=TOP_K)
    assert onnx["n_events"] == len(torch_pred.targets) > 50
    assert onnx["mrr@10"] == pytest.approx(mrr_at_k(torch_pred.targets, torch_pred.topk, 10), abs=2e-3)


def test_dynamic_batch_gives_the_same_results_as_single_rows(staged: tuple[Manifest, LoadedModel, Path]) -> None:
    _, loaded, _ = staged
    histories = generated_histories(users=7, seed=77, max_len=30)
    t = 1  # the second event of every user, with the state after the first
    encoded = [encode_for_serving(loaded, h) for h in histories]
    steps = np.stack([e[0][t] for e in encoded])[:, None, :]
    wins = [np.stack([e[1][j][t] for e in encoded]) for j in range(3)]
    rng = np.random.default_rng(0)
    h0 = rng.normal(size=(1, 7, loaded.hidden)).astype(np.float32) * 0.3
    c0 = rng.normal(size=(1, 7, loaded.hidden)).astype(np.float32) * 0.3
    ones, rows = np.ones(7, dtype=np.int64), np.arange(7)
    batch = loaded.step(steps, ones, h0, c0, rows, *wins)
    assert batch.scores.shape == (7, TOP_K) and batch.h.shape == (1, 7, loaded.hidden)
    for i in range(7):
        one = loaded.step(
            steps[i : i + 1], ones[:1], h0[:, i : i + 1], c0[:, i : i + 1], rows[:1], *(w[i : i + 1] for w in wins)
        )
        np.testing.assert_allclose(one.scores[0], batch.scores[i], atol=1e-6)
        np.testing.assert_array_equal(one.categories[0], batch.categories[i])
        np.testing.assert_allclose(one.intent[0], batch.intent[i], atol=1e-6)
        np.testing.assert_allclose(one.h[0, 0], batch.h[0, i], atol=1e-6)
        np.testing.assert_allclose(one.c[0, 0], batch.c[0, i], atol=1e-6)
    # rows really differ, so the comparison above could have caught mixed-up rows
    assert len({tuple(np.round(r, 5)) for r in batch.scores}) > 1


def test_several_steps_in_one_call_equal_stepping_one_by_one(staged: tuple[Manifest, LoadedModel, Path]) -> None:
    """Rows of different lengths share one call: each row's (h, c) is its state after its own
    last step (padding moves nothing) and every picked step predicts what stepping predicts."""
    _, loaded, _ = staged
    histories = [h for h in generated_histories(users=12, seed=5, max_len=40) if len(h) >= 6][:3]
    assert len(histories) == 3
    lengths = np.array([5, 2, 4], dtype=np.int64)
    s = int(lengths.max())
    encoded = [encode_for_serving(loaded, h) for h in histories]
    steps = np.zeros((3, s, encoded[0][0].shape[1]), dtype=np.int64)
    for row, (e, n) in enumerate(zip(encoded, lengths, strict=True)):
        steps[row, :n] = e[0][:n]
    picked = [(row, t) for row, n in enumerate(lengths) for t in range(n)]
    positions = np.array([row * s + t for row, t in picked])
    wins = [np.stack([encoded[row][1][j][t] for row, t in picked]) for j in range(3)]
    h, c = loaded.zero_state(3)
    many = loaded.step(steps, lengths, h, c, positions, *wins)
    assert many.scores.shape == (len(picked), TOP_K)
    # one call per step, carrying (h, c), each row only as far as its own length
    for row, n in enumerate(lengths):
        h1, c1 = loaded.zero_state(1)
        for t in range(n):
            out = loaded.step(
                steps[row : row + 1, t : t + 1], np.ones(1, dtype=np.int64), h1, c1, np.zeros(1, dtype=np.int64),
                *(np.stack([encoded[row][1][j][t]]) for j in range(3)),
            )  # fmt: skip
            h1, c1 = out.h, out.c
            k = picked.index((row, t))
            np.testing.assert_allclose(many.scores[k], out.scores[0], atol=1e-5)
            np.testing.assert_allclose(many.intent[k], out.intent[0], atol=1e-5)
            np.testing.assert_array_equal(many.categories[k], out.categories[0])
        np.testing.assert_allclose(many.h[0, row], h1[0, 0], atol=1e-5)
        np.testing.assert_allclose(many.c[0, row], c1[0, 0], atol=1e-5)
    # the short row's state would differ had the padded steps been run
    padded = loaded.step(steps, np.full(3, s), h, c, positions, *wins)
    assert not np.allclose(padded.h[0, 1], many.h[0, 1], atol=1e-3)


def test_export_fails_when_the_graph_does_not_reproduce_the_model(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exporter that captured other weights than the ones checked must fail the parity check,
    and nothing reaches the registry."""
    model = copy.deepcopy(trained.model)
    real_export = export_module.export_onnx

    def export_then_drift(m: DemandLSTM, path: Path, top_k: int, candidates: bool | None = None) -> None:
        real_export(m, path, top_k, candidates)
        with torch.no_grad():  # the torch model moves on after the graph was written
            m.gate.bias.add_(torch.randn_like(m.gate.bias) * 0.5)
            intent_layer = m.intent[0]
            assert isinstance(intent_layer, torch.nn.Linear)
            intent_layer.weight.add_(torch.randn_like(intent_layer.weight) * 0.5)

    monkeypatch.setattr(export_module, "export_onnx", export_then_drift)
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ExportError, match="ONNX parity failed"):
        export_to_registry(
            registry, model, trained.categories, trained.items, version="drifted", top_k=TOP_K,
            parity_histories=[s.events for s in trained.sequences[:8]], extra={},
        )  # fmt: skip
    assert registry.versions() == []
    assert not registry.versions_dir.exists() or list(registry.versions_dir.iterdir()) == []
