"""The whole offline job as typed stages: load -> encode -> baselines -> fit -> evaluate -> export -> gate,
then the report (with each stage's wall time and peak RSS)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.features import FeatureSpec, Vocabulary
from stream.registry import ModelRegistry
from training import distributed
from training.baselines import FittedBaselines, fit_baselines
from training.data import BadRows, DataError, DataSummary, EncodedEvents, default_ts_bounds
from training.data.clean_columns import CleanedEvents, clean_columns
from training.data.encode_columns import code_vocabulary, encode_columns, target_codes, train_rows
from training.data.encoded import Target
from training.data.load import DataFormat, load_columns
from training.evaluate import evaluate
from training.export import export_to_registry
from training.histories import FlatHistories, attach_leave_user_out, flat_histories
from training.hyperparams import DEFAULTS
from training.intent import calibrate_intent, judge_intent
from training.live_baseline import save_live_baseline
from training.metrics import mrr_at_k, per_category
from training.model import DemandLSTM, ModelConfig
from training.priors import SparsePrior, counted_transitions
from training.promotion import PromotionDecision, decide_promotion
from training.report import EpochRecord, MethodResult, ReportFiles, ReportInput, write_report
from training.resources import StageClock
from training.split import TEST, TRAIN, VALID, TimeSplit
from training.train import TrainConfig, TrainResult, fit, predict

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
    item_min_count: int = DEFAULTS.item_min_count
    window: int = DEFAULTS.window
    hidden: int = DEFAULTS.hidden
    top_k: int = DEFAULTS.top_k
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


def choose_split(options: TrainOptions, first: int, last: int) -> TimeSplit:
    """The split of data whose events run from ``first`` to ``last`` (epoch ms)."""
    if options.split_dates:
        return TimeSplit.from_dates(*options.split_dates)
    if options.split_fractions or options.data_format != "taobao":
        train, valid = options.split_fractions or (0.8, 0.9)
        return TimeSplit.from_fractions(first, last, train, valid)
    from training.data.taobao import BEIJING

    return TimeSplit.last_days(last, test_days=options.test_days, valid_days=options.valid_days, tz=BEIJING)


def popular_tokens(popularity: np.ndarray, targets: Vocabulary, n: int = 50) -> dict[str, float]:
    """The training period's ``n`` most popular targets and shares, best first (the online baseline's fill)."""
    order = [int(i) for i in np.argsort(-popularity, kind="stable") if i >= 2 and popularity[i] > 0][:n]
    return {targets.token(i): float(popularity[i]) for i in order}


def query_intent_labels(histories: FlatHistories, queries: np.ndarray) -> np.ndarray:
    """Intent label of the model position that scores each query (the event before it)."""
    return np.asarray(histories.intent[queries - 1], dtype=np.int64)


# --- stages: load -> encode -> baselines -> fit -> evaluate -> export -> gate ---------------------


@dataclass
class Loaded:
    cleaned: CleanedEvents  # columnar, user-contiguous, time-ordered
    summary: DataSummary
    split: TimeSplit


@dataclass
class Encoded:
    targets: Vocabulary
    categories: Vocabulary
    items: Vocabulary
    data: EncodedEvents
    histories: FlatHistories
    spec: FeatureSpec
    test_queries: np.ndarray


@dataclass
class Baselines:
    fitted: FittedBaselines
    methods: dict[str, MethodResult]


@dataclass
class Fitted:
    model: DemandLSTM
    result: TrainResult


def load_stage(options: TrainOptions) -> Loaded:
    bad_rows = BadRows(strict=options.strict, max_bad=options.max_bad_rows)
    # Events are validated one by one but live only until their chunk is packed into columns.
    columns = load_columns(options.data, options.data_format, bad_rows=bad_rows)
    cleaned, summary = clean_columns(columns, ts_bounds=default_ts_bounds(options.data_format), bad_rows=bad_rows)
    del columns
    if not cleaned.users:
        first = f"; first: {bad_rows.examples[0]}" if bad_rows.examples else ""
        raise DataError(f"{options.data}: no usable events ({bad_rows.count} malformed rows skipped{first}); "
                        f"is --format {options.data_format} the file's format?")  # fmt: skip
    split = choose_split(options, int(cleaned.columns.ts.min()), int(cleaned.columns.ts.max()))
    log.info("%d users, %d events; split %s", summary.users, summary.events, split.to_dict())
    return Loaded(cleaned, summary, split)


def encode_stage(options: TrainOptions, loaded: Loaded) -> Encoded:
    cleaned, split = loaded.cleaned, loaded.split
    c, train = cleaned.columns, train_rows(cleaned, split)  # vocabularies: train-period events only
    targets = code_vocabulary(*target_codes(cleaned, options.target), train)
    categories = targets if options.target == "category" else code_vocabulary(c.category, c.category_ids, train)
    items = (
        targets
        if options.target == "item"
        else code_vocabulary(c.item, c.item_ids, train, min_count=options.item_min_count)
    )
    data = encode_columns(cleaned, targets, split, options.target)
    spec = FeatureSpec(window=options.window, target=options.target)
    histories = flat_histories(cleaned, spec, categories, items, split)
    return Encoded(targets.vocab, categories.vocab, items.vocab, data, histories, spec, data.queries(TEST))


def baselines_stage(encoded: Encoded) -> Baselines:
    baselines = fit_baselines(encoded.data)
    queries = encoded.test_queries
    intent_labels = query_intent_labels(encoded.histories, queries)
    known = intent_labels >= 0
    baseline_intent = baselines.intent_scores(queries)
    truth = encoded.data.target[queries]
    methods: dict[str, MethodResult] = {}
    for name, topk in baselines.rank(queries).items():
        scored = evaluate(truth, topk, intent_labels[known] == 1, baseline_intent[known])
        methods[name] = MethodResult(
            kind="baseline", metrics=scored, params=baselines.params(), per_category=per_category(truth, topk)
        )
    return Baselines(baselines, methods)


def fit_stage(options: TrainOptions, encoded: Encoded, baselines: FittedBaselines) -> Fitted:
    config = ModelConfig(len(encoded.categories), len(encoded.items), target=options.target, hidden=options.hidden)
    prior = SparsePrior.from_counts(baselines.transition_counts, baselines.popularity, config.prior_top_m)
    model = DemandLSTM(encoded.spec, config, prior)
    data = encoded.data
    # Training positions read the transition prior without their own user's transitions (priors.py).
    attach_leave_user_out(encoded.histories, prior, counted_transitions(data.target, data.period, data.starts))

    def valid_mrr(m: DemandLSTM) -> float:
        p = predict(m, encoded.histories, VALID)
        return mrr_at_k(p.targets, p.topk, 10)

    return Fitted(model, fit(model, encoded.histories, valid_mrr, options.train))


def evaluate_stage(encoded: Encoded, fitted: Fitted) -> MethodResult:
    test = predict(fitted.model, encoded.histories, TEST)
    if not np.array_equal(test.targets, encoded.data.target[encoded.test_queries]):
        raise RuntimeError("model and baselines were scored on different test events")  # a bug, not bad input
    known = test.intent_labels >= 0
    metrics = evaluate(test.targets, test.topk, test.intent_labels[known] == 1, test.intent_scores[known])
    return MethodResult(
        kind="model", metrics=metrics,
        params={**fitted.model.config.to_dict(), "best_epoch": fitted.result.best_epoch},
        per_category=per_category(test.targets, test.topk),
    )  # fmt: skip


def export_stage(
    options: TrainOptions, loaded: Loaded, encoded: Encoded, fitted: Fitted, version: str, extra: dict[str, Any]
) -> ModelRegistry:
    registry = ModelRegistry(options.registry)
    histories = loaded.cleaned.histories()  # contract events again, for these few users only
    parity = histories[-min(16, len(histories)) :]
    export_to_registry(
        registry, fitted.model, encoded.categories, encoded.items, version=version, parity_histories=parity,
        top_k=min(options.top_k, len(encoded.targets) - 2),  # never rank padding/OOV, even for tiny vocabularies
        extra=extra,
    )  # fmt: skip
    return registry


def intent_stage(encoded: Encoded, baselines: FittedBaselines, fitted: Fitted, platt: Any) -> dict[str, Any]:
    """The intent report (training/intent.py) on the test positions, beside simple rules."""
    test = predict(fitted.model, encoded.histories, TEST)
    queries = encoded.test_queries
    labels = query_intent_labels(encoded.histories, queries)
    known = labels >= 0
    return judge_intent(encoded.data, queries, known, labels[known] == 1, test.intent_scores[known],
                        baselines.intent_scores(queries)[known], platt)  # fmt: skip


def gate_stage(
    options: TrainOptions, registry: ModelRegistry, version: str, loaded: Loaded, encoded: Encoded,
    metrics: dict[str, dict[str, Any]],
) -> PromotionDecision:  # fmt: skip
    # The gate scores both models through ONNX, the way workers serve them (like for like), on the
    # test events both vocabularies hold; first it checks the model against its own baselines.
    decision = decide_promotion(
        registry, version, loaded.cleaned.histories(), encoded.data, encoded.test_queries, target=options.target,
        target_vocab=encoded.targets, method_metrics=metrics, force=options.force,
    )  # fmt: skip
    if options.promote and decision.promote:
        registry.promote(version)
    log.info("promotion of %s: %s", version, decision.reason)
    return decision


def run_training(options: TrainOptions) -> TrainOutcome | None:
    """The whole job; ``None`` on the ranks other than 0 of a ``torchrun`` launch (they only train)."""
    distributed.init_from_launcher()
    try:
        return _run_stages(options)
    finally:
        distributed.finish()


def _run_stages(options: TrainOptions) -> TrainOutcome | None:
    started, clock = time.monotonic(), StageClock()
    with clock.stage("load"):
        loaded = load_stage(options)
    with clock.stage("encode"):
        encoded = encode_stage(options, loaded)
    with clock.stage("baselines"):
        baselines = baselines_stage(encoded)
    with clock.stage("fit"):
        fitted = fit_stage(options, encoded, baselines.fitted)
    if distributed.rank_and_world()[0] != 0:
        return None
    with clock.stage("evaluate"):
        platt = calibrate_intent(fitted.model, encoded.histories)  # folded into the graph before export
        methods = {**baselines.methods, "lstm": evaluate_stage(encoded, fitted)}
        intent = intent_stage(encoded, baselines.fitted, fitted, platt)
    metrics: dict[str, dict[str, Any]] = {name: dict(r.metrics) for name, r in methods.items()}
    version = options.version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
    summary = loaded.summary.to_dict()
    with clock.stage("export"):
        registry = export_stage(
            options, loaded, encoded, fitted, version,
            {"target": options.target, "data_summary": summary, "split": loaded.split.to_dict(),
             "metrics": {"test": metrics, "training_seconds": round(fitted.result.seconds, 1), "intent": intent,
                         # what `demandstream evaluate` needs to compute the repeat baseline live
                         "baselines": {**baselines.fitted.params(),
                                       "popular": popular_tokens(baselines.fitted.popularity, encoded.targets)}}},
        )  # fmt: skip
    save_live_baseline(options.registry, version, baselines.fitted, encoded.targets)  # the live "baseline"
    with clock.stage("gate"):
        decision = gate_stage(options, registry, version, loaded, encoded, metrics)
    n_train = int(np.sum(encoded.data.period == TRAIN))
    curve = [
        EpochRecord(r.epoch, r.train_loss, r.valid_mrr10, round(r.seconds, 2), round(n_train / max(r.seconds, 1e-9), 1))
        for r in fitted.result.curve
    ]
    report_input = ReportInput(
        methods=methods, split=loaded.split.to_dict(), data_summary=summary, target=options.target,
        training_curve=curve, model_version=version,
        category_names={i: encoded.targets.token(i) for i in range(2, min(len(encoded.targets), 5000))},
        resources=clock.to_dict(len(encoded.data)),
    )  # fmt: skip
    files = write_report(report_input, options.out_dir)
    (options.out_dir / "intent.json").write_text(json.dumps(intent, indent=2), encoding="utf-8")
    return TrainOutcome(version, files, metrics, decision, time.monotonic() - started, intent)
