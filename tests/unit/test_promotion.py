"""The promotion gate (training/promotion.py) on real exported models: below its own baselines,
worse than the serving model on the events both can score, another catalogue, and the manifest
checks behind ``demandstream models promote``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from support.models import generated_histories

from stream.contracts import Event
from stream.features import EventEncoder, FeatureSpec, Vocabulary
from stream.registry import LoadedModel, ModelRegistry
from tools.cli import main
from training.data import EncodedEvents, UserSequence, encode_sequences, training_tokens
from training.export import export_to_registry
from training.metrics import mrr_at_k
from training.model import DemandLSTM, ModelConfig
from training.promotion import (
    MIN_VOCABULARY_OVERLAP,
    PromotionDecision,
    check_live_promotion,
    check_manifest_promotion,
    decide_promotion,
    score_served_model,
)
from training.sequences import encode_history
from training.split import TEST, VALID, TimeSplit
from training.train import TrainConfig, fit, predict

pytestmark = pytest.mark.slow

TOP_K = 10
SPEC = FeatureSpec(window=12, text_tokens=3, text_buckets=256)
GOOD = {"lstm": {"mrr@10": 0.6, "recall@10": 0.8}, "blend": {"mrr@10": 0.5, "recall@10": 0.7}}


@dataclass
class Trained:
    model: DemandLSTM
    categories: Vocabulary
    items: Vocabulary
    sequences: list[UserSequence]
    data: EncodedEvents
    queries: np.ndarray


def train_on(histories: list[list[Event]], epochs: int = 3) -> Trained:
    sequences = [UserSequence(h[0].user_id, h) for h in histories]
    first = min(s.events[0].ts for s in sequences)
    last = max(s.events[-1].ts for s in sequences)
    split = TimeSplit.from_fractions(first, last, 0.7, 0.85)
    categories = Vocabulary.build(training_tokens(sequences, split, "category"))
    items = Vocabulary.build(training_tokens(sequences, split, "item"))
    encoded = [encode_history(s.user_id, s.events, EventEncoder(SPEC, categories, items), split) for s in sequences]
    torch.manual_seed(0)
    model = DemandLSTM(SPEC, ModelConfig(len(categories), len(items), hidden=16, cat_dim=8, pointer_dim=8))

    def valid_mrr(m: DemandLSTM) -> float:
        p = predict(m, encoded, VALID)
        return mrr_at_k(p.targets, p.topk, 10)

    if epochs:
        fit(model, encoded, valid_mrr, TrainConfig(epochs=epochs, progress=False, threads=1, seed=3))
    model.eval()
    data = encode_sequences(sequences, categories, split, "category")
    return Trained(model, categories, items, sequences, data, data.queries(TEST))


def renamed(histories: list[list[Event]], prefix: str, share: float = 1.0) -> list[list[Event]]:
    """The same shoppers with ``share`` of the categories renamed: a catalogue the model never saw."""
    names = sorted({e.category_id for h in histories for e in h if e.category_id})
    moved = set(names[: round(len(names) * share)])

    def rename(e: Event) -> Event:
        return msgspec.structs.replace(e, category_id=prefix + e.category_id) if e.category_id in moved else e

    return [[rename(e) for e in h] for h in histories]


@pytest.fixture(scope="module")
def trained() -> Trained:
    return train_on(generated_histories(users=80, seed=11, max_len=50))


def degraded(model: DemandLSTM) -> DemandLSTM:
    """The trained model with all weight on the popularity expert: a deliberately worse model."""
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.gate.weight.zero_()
        bad.gate.bias.copy_(torch.tensor([-20.0, -20.0, -20.0, 20.0, -20.0]))
    return bad


def publish(registry: ModelRegistry, t: Trained, version: str, model: DemandLSTM | None = None,
            metrics: dict[str, dict[str, float]] | None = None) -> None:  # fmt: skip
    export_to_registry(
        registry, model or t.model, t.categories, t.items, version=version, top_k=TOP_K,
        parity_histories=[s.events for s in t.sequences[:4]], extra={"metrics": {"test": metrics or GOOD}},
    )  # fmt: skip


@pytest.fixture
def registry(trained: Trained, tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    publish(reg, trained, "good")
    reg.promote("good")
    return reg


def decide(reg: ModelRegistry, t: Trained, version: str, *, method_metrics: dict[str, dict[str, float]],
           force: bool = False) -> PromotionDecision:  # fmt: skip
    return decide_promotion(reg, version, [s.events for s in t.sequences], t.data, t.queries, target="category",
                            target_vocab=t.categories, method_metrics=method_metrics, force=force)  # fmt: skip


def test_a_worse_model_is_refused_and_force_overrides(trained: Trained, registry: ModelRegistry) -> None:
    publish(registry, trained, "worse", degraded(trained.model))
    decision = decide(registry, trained, "worse", method_metrics=GOOD)
    assert not decision.promote
    assert decision.reason.startswith("refused: worse than serving good on the")
    old, new = decision.current_metrics, decision.candidate_metrics
    assert old is not None and new is not None
    assert old["mrr@10"] > new["mrr@10"] + 0.05  # the setup is meaningful
    forced = decide(registry, trained, "worse", method_metrics=GOOD, force=True)
    assert forced.promote and forced.reason == "forced over good"
    assert registry.current_version() == "good"  # deciding never moves the pointer


def test_an_equal_model_passes_and_is_compared_on_every_scorable_event(
    trained: Trained, registry: ModelRegistry
) -> None:
    publish(registry, trained, "same")
    decision = decide(registry, trained, "same", method_metrics=GOOD)
    assert decision.promote, decision.reason
    scorable = int((trained.data.target[trained.queries] >= 2).sum())
    assert decision.compared_events == scorable > 50
    assert decision.current_metrics is not None and decision.candidate_metrics is not None
    assert decision.current_metrics["mrr@10"] == pytest.approx(decision.candidate_metrics["mrr@10"])


def test_a_model_below_its_own_best_baseline_is_refused_even_with_nothing_serving(
    trained: Trained, tmp_path: Path
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    # the numbers: 0.8486 against the repeat baseline's 0.8493
    weak = {"lstm": {"mrr@10": 0.8486}, "repeat": {"mrr@10": 0.8493}, "blend": {"mrr@10": 0.84}}
    decision = decide(reg, trained, "new", method_metrics=weak)
    assert not decision.promote
    assert "below its own best baseline repeat (mrr@10 0.8486 vs 0.8493)" in decision.reason
    assert decide(reg, trained, "new", method_metrics=weak, force=True).promote
    assert decide(reg, trained, "new", method_metrics=GOOD).reason == "no model is serving yet"


def test_a_model_of_another_catalogue_is_refused_with_a_message_that_says_so(
    trained: Trained, registry: ModelRegistry
) -> None:
    other = train_on(renamed([s.events for s in trained.sequences], "x-"), epochs=0)
    publish(registry, other, "other")
    decision = decide(registry, other, "other", method_metrics=GOOD)
    assert not decision.promote
    assert "serving model good knows only 0.0% of the categories" in decision.reason
    assert "different catalogues" in decision.reason and "--force" in decision.reason
    assert "different catalogues" in (check_manifest_promotion(registry, "other") or "")


def test_partly_new_categories_are_compared_only_where_both_models_can_score(
    trained: Trained, registry: ModelRegistry
) -> None:
    """A quarter of the categories renamed: the old model cannot score those events, so they are
    left out instead of counting as its misses (which would let any new model win)."""
    moved = train_on(renamed([s.events for s in trained.sequences], "x-", share=0.25), epochs=0)
    assert len(moved.categories) == len(trained.categories)  # a renaming: the trained model fits its shapes
    publish(registry, moved, "moved", trained.model)
    decision = decide(registry, moved, "moved", method_metrics=GOOD)
    targets = moved.data.target[moved.queries]
    known = {moved.categories.token(int(t)) in trained.categories for t in targets[targets >= 2]}
    assert known == {True, False}
    tokens = [moved.categories.token(int(t)) for t in targets[targets >= 2]]
    both = sum(tok in trained.categories for tok in tokens)
    assert both / len(tokens) >= MIN_VOCABULARY_OVERLAP
    assert decision.compared_events == both
    everything = score_served_model(
        LoadedModel.load(registry, "good"),
        [s.events for s in moved.sequences],
        moved.data,
        moved.queries,
        moved.categories,
    )
    assert decision.current_metrics is not None
    assert decision.current_metrics["mrr@10"] > everything["mrr@10"]


def test_models_promote_applies_the_gate_and_force_overrides(trained: Trained, registry: ModelRegistry) -> None:
    weak = {"lstm": {"mrr@10": 0.40}, "blend": {"mrr@10": 0.45}}
    publish(registry, trained, "weak", metrics=weak)
    runner = CliRunner()
    refused = runner.invoke(main, ["models", "promote", "weak", "--registry", str(registry.root)])
    assert refused.exit_code != 0
    assert "not promoted: weak is below its own best baseline blend (mrr@10 0.4000 vs 0.4500)" in refused.output
    assert registry.current_version() == "good"
    forced = runner.invoke(main, ["models", "promote", "weak", "--force", "--registry", str(registry.root)])
    assert forced.exit_code == 0 and registry.current_version() == "weak"
    publish(registry, trained, "fine")
    assert runner.invoke(main, ["models", "promote", "fine", "--registry", str(registry.root)]).exit_code == 0
    assert registry.current_version() == "fine"


def test_live_numbers_refuse_a_worse_or_unproven_shadow(trained: Trained, registry: ModelRegistry) -> None:
    publish(registry, trained, "shadowed")
    row = {"events": 500.0, "mrr_model": 0.50, "recall_model": 0.70}
    registry.write_live_metrics({"good@sample": row, "shadowed": {**row, "mrr_model": 0.49}})
    assert "worse than serving good on the same users (live mrr 0.4900 vs 0.5000)" in str(
        check_live_promotion(registry, "shadowed", 100)
    )
    assert "fewer than 1000" in str(check_live_promotion(registry, "shadowed", 1000))
    registry.write_live_metrics({"good@sample": row, "shadowed": {**row, "mrr_model": 0.51}})
    assert check_live_promotion(registry, "shadowed", 100) is None
    registry.write_live_metrics({"shadowed": row})
    assert "no live numbers of the serving model good" in str(check_live_promotion(registry, "shadowed", 100))
    runner = CliRunner()
    refused = runner.invoke(main, ["models", "promote", "shadowed", "--min-live-events", "100",
                                   "--registry", str(registry.root)])  # fmt: skip
    assert refused.exit_code != 0 and registry.current_version() == "good"


def test_promote_shadow_exit_codes_wait_refuse_then_promote(trained: Trained, registry: ModelRegistry) -> None:
    """The hourly second step of the retraining loop: 4 (or 0 with --waiting-ok) while the shadow
    has too few live events, 3 for a worse shadow, 0 once it holds; the mark is then removed."""
    runner = CliRunner()

    def promote_shadow(*extra: str) -> tuple[int, str]:
        result = runner.invoke(main, ["models", "promote-shadow", "--registry", str(registry.root),
                                      "--min-live-events", "100", *extra])  # fmt: skip
        return result.exit_code, result.output

    assert promote_shadow()[0] == 4  # no shadow at all
    publish(registry, trained, "nightly")
    registry.set_shadow("nightly")
    row = {"events": 500.0, "mrr_model": 0.50, "recall_model": 0.70}
    registry.write_live_metrics({"good@sample": row, "nightly": {**row, "events": 50.0}})
    code, output = promote_shadow()
    assert code == 4 and "nightly has 50 of 100 live events" in output
    assert promote_shadow("--waiting-ok")[0] == 0 and registry.current_version() == "good"
    registry.write_live_metrics({"good@sample": row, "nightly": {**row, "recall_model": 0.60}})
    code, output = promote_shadow()
    assert code == 3 and "live recall 0.6000 vs 0.7000" in output and registry.current_version() == "good"
    registry.write_live_metrics({"good@sample": row, "nightly": {**row, "mrr_model": 0.52}})
    code, output = promote_shadow()
    assert code == 0 and "serving nightly" in output
    assert registry.current_version() == "nightly" and registry.shadow_versions() == []


def test_promote_shadow_keep_leaves_the_mark(trained: Trained, registry: ModelRegistry) -> None:
    publish(registry, trained, "kept")
    registry.set_shadow("kept")
    row = {"events": 500.0, "mrr_model": 0.50, "recall_model": 0.70}
    registry.write_live_metrics({"good@sample": row, "kept": row})  # a tie holds
    result = CliRunner().invoke(main, ["models", "promote-shadow", "--registry", str(registry.root), "--keep",
                                       "--min-live-events", "100"])  # fmt: skip
    assert result.exit_code == 0 and registry.current_version() == "kept" and registry.shadow_versions() == ["kept"]
