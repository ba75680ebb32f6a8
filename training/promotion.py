"""The promotion gate: a new version replaces the serving one only if

1. it beats its own best baseline on its test events (MRR@10, the trained objective), since a
   model below a heuristic should not serve at all;
2. the serving model knows the categories of most of its test events (otherwise the two rank
   different catalogues and no comparison means anything: the serving model would score ~0 and
   any new model would "win");
3. on the test events *both* can score (target in both vocabularies), scored the way a worker
   would serve them (ONNX, event by event), it is at least as good on every gate metric.

``force`` skips all of it. The same rules, on what a manifest records, guard
``demandstream models promote`` (:func:`check_manifest_promotion`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.contracts import Event
from stream.features import Vocabulary
from stream.registry import LoadedModel, ModelRegistry, ModelVerificationError
from training.data.encoded import EncodedEvents
from training.evaluate import evaluate
from training.onnx_eval import step_through_histories

log = logging.getLogger(__name__)

GATE_METRICS = ("mrr@10", "recall@10")
BASELINE_METRIC = "mrr@10"
# Below this share of the candidate's test events (or vocabulary, for `models promote`) known to the
# serving model, the two models are taken to rank different catalogues. Retraining the Taobao sample
# on a later window keeps > 0.9; the demo's simulated catalogue against Taobao shares nothing.
MIN_VOCABULARY_OVERLAP = 0.5
MODEL_METHOD = "lstm"
VOCABULARY_HEAD = 500


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    current_version: str | None = None
    current_metrics: dict[str, Any] | None = None
    candidate_metrics: dict[str, Any] | None = None
    compared_events: int = 0


def known_share(tokens: Iterable[str], known: Collection[str]) -> float:
    """Share of ``tokens`` (with repeats) that ``known`` holds; 0.0 for no tokens.

    >>> known_share(["a", "b", "b", "c"], {"b", "c"})
    0.75
    """
    listed = list(tokens)
    return sum(t in known for t in listed) / len(listed) if listed else 0.0


def below_baseline(method_metrics: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the model is below its own best baseline on :data:`BASELINE_METRIC`, or ``None``.

    >>> below_baseline({"lstm": {"mrr@10": 0.8486}, "repeat": {"mrr@10": 0.8493}, "markov": {"mrr@10": 0.5}})
    'below its own best baseline repeat (mrr@10 0.8486 vs 0.8493)'
    >>> below_baseline({"lstm": {"mrr@10": 0.52}, "blend": {"mrr@10": 0.51}}) is None
    True
    """
    if MODEL_METHOD not in method_metrics:
        return None
    own = float(method_metrics[MODEL_METHOD].get(BASELINE_METRIC) or 0.0)
    baselines = {n: float(m.get(BASELINE_METRIC) or 0.0) for n, m in method_metrics.items() if n != MODEL_METHOD}
    if not baselines:
        return None
    best = max(baselines, key=lambda n: baselines[n])
    if own >= baselines[best]:
        return None
    return f"below its own best baseline {best} ({BASELINE_METRIC} {own:.4f} vs {baselines[best]:.4f})"


def catalogue_refusal(current: str, share: float, what: str) -> str:
    return (
        f"serving model {current} knows only {share:.1%} of the categories of {what} "
        f"(minimum {MIN_VOCABULARY_OVERLAP:.0%}): the two models rank different catalogues and cannot "
        "be compared"
    )


def stepped_topk(model: LoadedModel, histories: Sequence[Sequence[Event]]) -> np.ndarray:
    """Every position's served top-k as target tokens (object array ``(events, k)``); ``histories``
    are every user's events in the order of the flat arrays (``CleanedEvents.histories()``)."""
    stepped = step_through_histories(model, histories)
    k = model.manifest.top_k
    flat = np.concatenate([cats for _scores, cats, _intent in stepped]) if stepped else np.zeros((0, k), np.int64)
    return model.category_ids(flat)  # type: ignore[no-any-return]


def score_served_model(
    model: LoadedModel,
    histories: Sequence[Sequence[Event]],
    data: EncodedEvents,
    queries: np.ndarray,
    target_vocab: Vocabulary,
    *,
    ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of a registry model on the given test queries, in ``target_vocab``'s index space
    (``ids``: :func:`stepped_topk` of the model, when already computed)."""
    ids = stepped_topk(model, histories) if ids is None else ids
    picked = ids[queries - 1]  # the prediction made right after the previous event
    remap = np.vectorize(lambda tok: target_vocab.index(tok) if tok in target_vocab else -1, otypes=[np.int64])
    k = model.manifest.top_k
    topk = remap(picked) if picked.size else np.zeros((0, k), np.int64)
    if k < 20:
        topk = np.pad(topk, ((0, 0), (0, 20 - k)), constant_values=-1)
    return evaluate(data.target[queries], topk)


def decide_promotion(
    registry: ModelRegistry,
    version: str,
    histories: Sequence[Sequence[Event]],
    data: EncodedEvents,
    queries: np.ndarray,
    *,
    target: str,
    target_vocab: Vocabulary,
    method_metrics: Mapping[str, Mapping[str, Any]] | None = None,
    force: bool = False,
) -> PromotionDecision:
    """Should published ``version`` (trained on ``data``, tested on ``queries``) replace the
    serving model? ``method_metrics``: the version's and its baselines' test metrics."""
    current = registry.current_version()
    if force:
        return PromotionDecision(True, f"forced over {current}" if current else "forced", current)
    refusals = [weak] if (weak := below_baseline(method_metrics or {})) else []
    served = None
    if current is not None:
        try:
            served = LoadedModel.load(registry, current)
        except ModelVerificationError as exc:
            if not refusals:  # a broken serving model never blocks a fix
                return PromotionDecision(True, f"serving model {current} fails verification ({exc})", current)
    if served is not None and served.manifest.feature_spec.target != target:
        refusals.append(f"serving model {current} ranks another target")
        served = None
    known: set[str] = set(served.targets.tokens) if served is not None else set()
    scorable = queries[data.target[queries] >= 2]
    tokens = [target_vocab.token(int(t)) for t in data.target[scorable]]
    share = known_share(tokens, known)
    if served is not None and share < MIN_VOCABULARY_OVERLAP:
        refusals.append(catalogue_refusal(str(current), share, f"{version}'s test events"))
        served = None
    if served is None:
        if refusals:
            return PromotionDecision(False, f"refused: {'; '.join(refusals)}; use --force to serve it anyway", current)
        return PromotionDecision(True, "no model is serving yet")
    common = scorable[np.fromiter((t in known for t in tokens), dtype=bool, count=len(tokens))]
    old = score_served_model(served, histories, data, common, target_vocab)
    new = score_served_model(LoadedModel.load(registry, version), histories, data, common, target_vocab)
    summary = ", ".join(f"{m} {new[m]:.4f} vs {old[m]:.4f}" for m in GATE_METRICS)
    where = f"on the {len(common)} test events both can score ({summary})"
    if any(float(new[m] or 0) < float(old[m] or 0) for m in GATE_METRICS):
        refusals.append(f"worse than serving {current} {where}")
    if refusals:
        reason = f"refused: {'; '.join(refusals)}; use --force to serve it anyway"
        return PromotionDecision(False, reason, current, old, new, len(common))
    return PromotionDecision(True, f"at least as good as {current} {where}", current, old, new, len(common))


def check_manifest_promotion(registry: ModelRegistry, version: str) -> str | None:
    """Why ``models promote`` should refuse ``version`` from what the manifests record, or ``None``:
    below its own best baseline on its test events, or a catalogue the serving model barely knows."""
    weak = below_baseline(registry.manifest(version).metrics.get("test", {}))
    refusals = [f"{version} is {weak}"] if weak else []
    current = registry.current_version()
    if current is not None and current != version:
        try:
            candidate = LoadedModel.load(registry, version)
            served = LoadedModel.load(registry, current)
        except ModelVerificationError:
            served = None  # the caller verifies the candidate; a broken serving model never blocks a fix
        if served is not None:
            # Vocabularies are most frequent first: the head is what most events carry.
            share = known_share(candidate.targets.tokens[:VOCABULARY_HEAD], set(served.targets.tokens))
            if share < MIN_VOCABULARY_OVERLAP:
                refusals.append(catalogue_refusal(current, share, f"the {VOCABULARY_HEAD} most frequent of {version}"))
    return "; ".join(refusals) or None


LIVE_TIE = 1e-3  # live MRR/Recall differences this small are noise of when each row was read


def check_live_promotion(registry: ModelRegistry, version: str, min_events: int) -> str | None:
    """Why the live numbers refuse ``version``, or ``None``: it must have been judged on at least
    ``min_events`` events (as a shadow) and score at least the serving model on the same sampled
    users (the evaluator's ``<serving>@sample`` row) on MRR@10 and Recall@10."""
    live = registry.live_metrics()
    current = registry.current_version()
    mine = live.get(version, {})
    if mine.get("events", 0) < min_events:
        judged = mine.get("events", 0)
        return f"{version} has {judged:.0f} live judged events, fewer than {min_events} (run it as a shadow)"
    reference = live.get(f"{current}@sample")
    if not reference or not reference.get("events"):
        return f"no live numbers of the serving model {current} on the shadow's users to compare with"
    # Both rows judge the same sampled users but not always the very same last events (the two are
    # read at slightly different moments): differences within LIVE_TIE count as a tie, not as worse.
    worse = [m for m in ("mrr", "recall") if mine[f"{m}_model"] < reference[f"{m}_model"] - LIVE_TIE]
    if worse:
        summary = ", ".join(f"live {m} {mine[f'{m}_model']:.4f} vs {reference[f'{m}_model']:.4f}" for m in worse)
        return f"{version} is worse than serving {current} on the same users ({summary})"
    return None
