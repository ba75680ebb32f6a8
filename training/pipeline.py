"""The whole offline job: load -> clean -> split -> baselines -> train -> evaluate -> report -> export."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream.features import EventEncoder, FeatureSpec, Vocabulary
from stream.registry import ModelRegistry
from training.baselines import fit_baselines
from training.data import (
    BadRows,
    UserSequence,
    clean_events,
    default_ts_bounds,
    encode_sequences,
    load_events,
    training_tokens,
)
from training.data.encoded import Target
from training.data.load import DataFormat
from training.evaluate import evaluate
from training.export import export_to_registry
from training.intent import calibrate_intent, judge_intent
from training.metrics import mrr_at_k, per_category
from training.model import DemandLSTM, ModelConfig
from training.priors import LeaveUserOutPrior
from training.promotion import PromotionDecision, decide_promotion
from training.report import EpochRecord, MethodResult, ReportFiles, ReportInput, write_report
from training.sequences import EncodedHistory, encode_history
from training.split import TEST, VALID, TimeSplit
from training.train import TrainConfig, fit, predict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    data: str
    data_format: DataFormat
    registry: Path
    out_dir: Path
    target: Target = "category"
    split_dates: tuple[str, str] | None = None
    split_fractions: tuple[float, float] | None = None
    test_days: int = 2
    valid_days: int = 1
    item_min_count: int = 3
    window: int = 100
    hidden: int = 64
    top_k: int = 20
    train: TrainConfig = field(default_factory=TrainConfig)
    version: str | None = None
    promote: bool = True
    force: bool = False
    strict: bool = False
    max_bad_rows: int | None = 1000


@dataclass
class TrainOutcome:
    version: str
    report: ReportFiles
    metrics: dict[str, dict[str, Any]]
    promotion: PromotionDecision
    seconds: float
    intent: dict[str, Any] = field(default_factory=dict)


def choose_split(options: TrainOptions, sequences: list[UserSequence]) -> TimeSplit:
    first = min(s.events[0].ts for s in sequences)
    last = max(s.events[-1].ts for s in sequences)
    if options.split_dates:
        return TimeSplit.from_dates(*options.split_dates)
    if options.split_fractions or options.data_format != "taobao":
        train, valid = options.split_fractions or (0.8, 0.9)
        return TimeSplit.from_fractions(first, last, train, valid)
    from training.data.taobao import BEIJING

    return TimeSplit.last_days(last, test_days=options.test_days, valid_days=options.valid_days, tz=BEIJING)


MAX_DENSE_PRIOR = 6000  # a (V, V) float32 prior above this would weigh over 144 MB in the graph


def transition_prior(transitions: Any, popularity: np.ndarray) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The baselines' first-order transitions (training period only) as a dense prior for the model;
    rows of targets never seen as a predecessor fall back to popularity."""
    pop = torch.from_numpy(np.asarray(popularity, dtype=np.float32))
    pop[:2] = 0.0  # padding and OOV are never predicted
    if pop.shape[0] > MAX_DENSE_PRIOR:
        log.info("no dense transition prior for %d targets", pop.shape[0])
        return None, pop
    dense = torch.from_numpy(np.asarray(transitions.toarray(), dtype=np.float32))
    dense[:, :2] = 0.0
    dense[dense.sum(dim=1) == 0] = pop
    return dense, pop


def popular_tokens(popularity: np.ndarray, targets: Vocabulary, n: int = 50) -> dict[str, float]:
    """The training period's ``n`` most popular targets and shares, best first (the online baseline's fill)."""
    order = [int(i) for i in np.argsort(-popularity, kind="stable") if i >= 2 and popularity[i] > 0][:n]
    return {targets.token(i): float(popularity[i]) for i in order}


def query_intent_labels(histories: list[EncodedHistory], queries: np.ndarray) -> np.ndarray:
    """Intent label of the model position that scores each query (the event before it)."""
    flat: np.ndarray = np.concatenate([h.intent for h in histories])
    return flat[queries - 1]  # type: ignore[no-any-return]


def run_training(options: TrainOptions) -> TrainOutcome:
    started = time.monotonic()
    bad_rows = BadRows(strict=options.strict, max_bad=options.max_bad_rows)
    events = load_events(options.data, options.data_format, bad_rows=bad_rows)
    sequences, summary = clean_events(events, ts_bounds=default_ts_bounds(options.data_format), bad_rows=bad_rows)
    split = choose_split(options, sequences)
    log.info("%d users, %d events; split %s", summary.users, summary.events, split.to_dict())

    targets = Vocabulary.build(training_tokens(sequences, split, options.target))
    categories = (
        targets if options.target == "category" else Vocabulary.build(training_tokens(sequences, split, "category"))
    )
    items = Vocabulary.build(
        training_tokens(sequences, split, "item"), min_count=1 if options.target == "item" else options.item_min_count
    )
    data = encode_sequences(sequences, targets, split, options.target)
    test_queries = data.queries(TEST)

    baselines = fit_baselines(data)
    spec = FeatureSpec(window=options.window, target=options.target)
    encoder = EventEncoder(spec, categories, items)
    histories = [
        encode_history(s.user_id, s.events, encoder, split) for s in sequences
    ]
    intent_labels = query_intent_labels(histories, test_queries)
    known = intent_labels >= 0
    baseline_intent = baselines.intent_scores(test_queries)
    methods: dict[str, MethodResult] = {}
    for name, topk in baselines.rank(test_queries).items():
        scored = evaluate(data.target[test_queries], topk, intent_labels[known] == 1, baseline_intent[known])
        methods[name] = MethodResult(
            kind="baseline", metrics=scored, params=baselines.params(),
            per_category=per_category(data.target[test_queries], topk),
        )  # fmt: skip

    config = ModelConfig(len(categories), len(items), target=options.target, hidden=options.hidden)
    model = DemandLSTM(spec, config, *transition_prior(baselines.transitions, baselines.popularity))

    def valid_mrr(m: DemandLSTM) -> float:
        p = predict(m, histories, VALID)
        return mrr_at_k(p.targets, p.topk, 10)

    # Training positions read the transition prior without their own user's transitions (priors.py).
    loo = LeaveUserOutPrior.from_counts(baselines.transition_counts, baselines.popularity)
    result = fit(model, histories, valid_mrr, options.train, loo if model.transitions.shape[0] > 1 else None)
    platt = calibrate_intent(model, histories)
    test = predict(model, histories, TEST)
    if not np.array_equal(test.targets, data.target[test_queries]):
        raise RuntimeError("model and baselines were scored on different test events")  # a bug, not bad input
    model_metrics = evaluate(test.targets, test.topk, test.intent_labels[known] == 1, test.intent_scores[known])
    methods["lstm"] = MethodResult(
        kind="model", metrics=model_metrics, params={**config.to_dict(), "best_epoch": result.best_epoch},
        per_category=per_category(test.targets, test.topk),
    )  # fmt: skip

    version = options.version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
    curve = [EpochRecord(r.epoch, r.train_loss, r.valid_mrr10, r.seconds) for r in result.curve]
    report_input = ReportInput(
        methods=methods, split=split.to_dict(), data_summary=summary.to_dict(), target=options.target,
        training_curve=curve, model_version=version,
        category_names={i: targets.token(i) for i in range(2, min(len(targets), 5000))},
    )  # fmt: skip
    files = write_report(report_input, options.out_dir)
    metrics: dict[str, dict[str, Any]] = {name: dict(r.metrics) for name, r in methods.items()}
    intent = judge_intent(data, test_queries, known, intent_labels[known] == 1,
                          test.intent_scores[known], baseline_intent[known], platt)  # fmt: skip
    (options.out_dir / "intent.json").write_text(json.dumps(intent, indent=2), encoding="utf-8")

    registry = ModelRegistry(options.registry)
    # what `demandstream evaluate` needs to compute the repeat baseline live as it was fitted here
    recorded_baselines = {**baselines.params(), "popular": popular_tokens(baselines.popularity, targets)}
    parity = [s.events for s in sequences[-min(16, len(sequences)) :]]
    export_to_registry(
        registry, model, categories, items, version=version, parity_histories=parity,
        top_k=min(options.top_k, len(targets) - 2),  # never rank padding/OOV, even for tiny vocabularies
        extra={"target": options.target, "data_summary": summary.to_dict(), "split": split.to_dict(),
               "metrics": {"test": metrics, "training_seconds": round(result.seconds, 1), "intent": intent,
                           "baselines": recorded_baselines}},
    )  # fmt: skip
    # The gate scores both models through ONNX, the way workers serve them (like for like), on the
    # test events both vocabularies hold; first it checks the model against its own baselines.
    decision = decide_promotion(
        registry, version, sequences, data, test_queries, target=options.target, target_vocab=targets,
        method_metrics=metrics, force=options.force,
    )  # fmt: skip
    if options.promote and decision.promote:
        registry.promote(version)
    log.info("promotion of %s: %s", version, decision.reason)
    return TrainOutcome(version, files, metrics, decision, time.monotonic() - started, intent)
