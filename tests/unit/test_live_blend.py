"""The blend baseline computed live (stream/evaluation/blend.py) ranks like the trainer's blend:
the fitted parts saved at training (training/live_baseline.py), fed the same events one at a time,
give the same top-10 as ``FittedBaselines`` on the test events (up to the order of exact ties)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from support.models import generated_histories

from stream.evaluation import OnlineScorer, RepeatBaseline
from stream.evaluation.blend import BlendBaseline, baseline_path
from stream.features import Vocabulary
from training.baselines import BlendParams, fit_baselines
from training.data import UserSequence, encode_sequences, training_tokens
from training.live_baseline import save_live_baseline
from training.split import TEST, TimeSplit


def test_live_blend_ranks_the_test_events_like_the_trainer(tmp_path: Path) -> None:
    histories = generated_histories(users=60, seed=5, max_len=80)
    sequences = [UserSequence(h[0].user_id, h) for h in histories]
    first = min(s.events[0].ts for s in sequences)
    last = max(s.events[-1].ts for s in sequences)
    split = TimeSplit.from_fractions(first, last, 0.6, 0.8)
    vocab = Vocabulary.build(training_tokens(sequences, split, "category"))
    data = encode_sequences(sequences, vocab, split)
    events = [e for s in sequences for e in s.events]
    assert data.ts.tolist() == [e.ts for e in events]  # positions are the events in this order
    fitted = fit_baselines(data, tune=True)
    fitted.blend = BlendParams(markov=0.5, popularity=0.05, long_repeat=0.3)  # every part counts
    save_live_baseline(tmp_path, "v1", fitted, vocab)
    blend = BlendBaseline.load(baseline_path(tmp_path, "v1"))

    repeat = RepeatBaseline.from_params(fitted.params()["repeat"], frozenset(vocab.tokens))  # type: ignore[arg-type]
    scorer = OnlineScorer(repeat, k=10, blend=blend)
    for event in events:
        scorer.add_event(event)
    queries = data.queries(TEST)
    offline = fitted.rank(queries, k=10)["blend"]
    scores = fitted.score_fn("blend")(queries)
    same = 0
    for row, q in enumerate(queries):
        before = events[q - 1]
        live = [vocab.index(c) for c in scorer.users[before.user_id].baseline_topk[before.event_id]]
        # the offline scores of the live list are the offline top-10's, rank by rank: any
        # difference is two categories of exactly equal score in the other order
        np.testing.assert_allclose(scores[row, live], scores[row, offline[row]], rtol=1e-9, atol=1e-12)
        same += live == offline[row].tolist()
    assert len(queries) > 300
    assert same > 0.9 * len(queries)


def test_without_a_history_the_blend_ranks_by_popularity(tmp_path: Path) -> None:
    sequences = [UserSequence(h[0].user_id, h) for h in generated_histories(users=20, seed=1)]
    split = TimeSplit.from_fractions(
        min(s.events[0].ts for s in sequences), max(s.events[-1].ts for s in sequences), 0.6, 0.8
    )
    vocab = Vocabulary.build(training_tokens(sequences, split, "category"))
    fitted = fit_baselines(encode_sequences(sequences, vocab, split), tune=False)
    save_live_baseline(tmp_path, "v", fitted, vocab)
    blend = BlendBaseline.load(baseline_path(tmp_path, "v"))
    expected = [vocab.token(int(i)) for i in np.argsort(-fitted.popularity, kind="stable")[:5]]
    assert blend.rank({}, {}, None, 5) == expected


def test_the_evaluator_uses_the_serving_versions_blend_when_the_trainer_saved_it(tmp_path: Path) -> None:
    from support.models import publish_model

    from stream.config import Settings
    from stream.evaluation.service import Evaluator, serving_blend

    root = tmp_path / "models"
    publish_model(root, "v1")
    settings = Settings(_env_file=None, model_registry=root, evaluation_port=0)  # type: ignore[call-arg]
    assert serving_blend(settings) is None and Evaluator(settings).scorer.blend is None  # repeat, then
    sequences = [UserSequence(h[0].user_id, h) for h in generated_histories(users=20, seed=1)]
    split = TimeSplit.from_fractions(
        min(s.events[0].ts for s in sequences), max(s.events[-1].ts for s in sequences), 0.6, 0.8
    )
    vocab = Vocabulary.build(training_tokens(sequences, split, "category"))
    save_live_baseline(root, "v1", fit_baselines(encode_sequences(sequences, vocab, split), tune=False), vocab)
    blend = Evaluator(settings).scorer.blend
    assert blend is not None and blend.tokens[2:] == list(vocab.tokens)
    baseline_path(root, "v1").write_bytes(b"not an npz")
    assert serving_blend(settings) is None  # unreadable: logged, and the evaluator falls back to repeat
