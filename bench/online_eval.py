"""Online evaluation on a replay of the Taobao sample (issue 18's "must show").

A trained model serves in one worker; ``demandstream replay`` publishes the whole sample at full
speed while the evaluator (its own consumer group) runs beside the worker, as deployed. At the
end, the evaluator's window (the last two days of event time) holds the test period of the
training run, so its MRR@10 of the model and of the live baseline (the blend, the best offline
baseline, when the trainer saved it; else repeat) are printed beside the offline numbers of the
same run's metrics.json. The evaluator's cost per record is then timed by
feeding the two topics' records through a fresh evaluator in memory::

    .venv/bin/python -m bench.online_eval --registry DIR --metrics DIR/reports/VERSION/metrics.json

Starts its own tansu broker and redis-server; writes bench/results/online_eval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from bench.common import make_topics, services, write_results
from stream.config import Settings
from stream.contracts import Prediction
from stream.evaluation import RepeatBaseline
from stream.evaluation.blend import BlendBaseline
from stream.evaluation.service import Evaluator, serving_baseline, serving_blend
from stream.registry import ModelRegistry
from stream.worker import Worker
from tools.demo.replay import replay_file
from training.promotion import check_live_promotion

logger = logging.getLogger("bench.online_eval")
_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_DATA = _SHARED / "data/taobao_userbehavior_head100k/UserBehavior_head100k.csv"
PARTITIONS = 4


def cleaned_jsonl(data: Path, out: Path) -> Path:
    from stream.contracts import encode_event
    from training.data import clean_events, default_ts_bounds, load_events

    sequences, _ = clean_events(load_events(str(data), "taobao"), ts_bounds=default_ts_bounds("taobao"))
    events = sorted((e for s in sequences for e in s.events), key=lambda e: e.ts)
    out.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    return out


def training_popular(data: Path, train_end_ms: int, vocabulary: frozenset[str] | None) -> dict[str, float]:
    """The training period's 50 most frequent categories (for a version trained before manifests
    recorded them), counted as the trainer does: cleaned events before the split."""
    from collections import Counter

    from training.data import clean_events, default_ts_bounds, load_events

    sequences, _ = clean_events(load_events(str(data), "taobao"), ts_bounds=default_ts_bounds("taobao"))
    counts = Counter(
        e.category_id for s in sequences for e in s.events
        if e.ts < train_end_ms and e.category_id and (vocabulary is None or e.category_id in vocabulary)
    )  # fmt: skip
    total = sum(counts.values()) or 1
    return {c: n / total for c, n in sorted(counts.items(), key=lambda kv: -kv[1])[:50]}


def time_evaluator(
    settings: Settings, baseline: RepeatBaseline, records: list[tuple[str, bytes]], blend: BlendBaseline | None
) -> tuple[float, float, Evaluator]:
    """Wall and CPU seconds of a fresh evaluator over ``records`` (in memory, no broker)."""
    timer = Evaluator(settings, baseline, blend)
    t0, c0 = time.perf_counter(), time.process_time()
    for topic, value in records:
        timer.handle(topic, value)
    return time.perf_counter() - t0, time.process_time() - c0, timer


async def read_all(bootstrap: str, topics: list[str], idle_s: float = 3.0) -> list[tuple[str, bytes]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())])
        out: list[tuple[str, bytes]] = []
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            for tp, records in (await consumer.getmany(timeout_ms=200, max_records=4096)).items():
                out.extend((tp.topic, r.value) for r in records if r.value is not None)
                last = time.monotonic()
        return out
    finally:
        await consumer.stop()


async def run(registry: Path, metrics_path: Path, data: Path, workdir: Path, shadow: str | None) -> dict[str, Any]:
    offline = json.loads(metrics_path.read_text(encoding="utf-8"))
    methods = offline["methods"]
    served = serving_baseline(Settings(_env_file=None, model_registry=registry))  # the serving vocabulary
    popular = served.popular or training_popular(data, offline["split"]["train_end_ms"], served.vocabulary)
    baseline = RepeatBaseline.from_params(methods["repeat"]["params"]["repeat"], served.vocabulary, popular)
    blend = serving_blend(Settings(_env_file=None, model_registry=registry))
    reference = "blend" if blend is not None else "repeat"  # the live baseline and its offline twin
    # The trainer's cleaning (duplicates, timestamps outside the sample's days) applied to what is
    # replayed too: the same events offline and online. An event from years later would otherwise
    # jump the event-time window past everything else.
    cleaned = cleaned_jsonl(data, workdir / "cleaned.jsonl")
    async with services(workdir) as svc:
        suffix = uuid.uuid4().hex[:6]
        topics = {name: f"{name}-{suffix}" for name in ("events", "predictions", "dlq", "models")}
        await make_topics(svc.bootstrap, list(topics.values()), PARTITIONS)
        settings = Settings(
            _env_file=None, kafka_bootstrap=svc.bootstrap, redis_url=svc.redis_url, topic_events=topics["events"],
            topic_predictions=topics["predictions"], topic_dlq=topics["dlq"],
            consumer_group=f"w-{suffix}", evaluation_group=f"e-{suffix}", model_registry=registry, http_port=0,
            evaluation_port=0, redis_key_prefix=f"b{suffix}", kafka_session_timeout_ms=6000,
        )  # fmt: skip
        if shadow:
            ModelRegistry(registry).set_shadow(shadow)
        worker, evaluator, stop = Worker(settings), Evaluator(settings, baseline, blend), asyncio.Event()
        started = time.monotonic()
        worker_task = asyncio.create_task(worker.run(stop))
        eval_task = asyncio.create_task(evaluator.run(stop))
        summary = await replay_file(settings, cleaned, "jsonl")
        while worker.records_done < summary.sent:
            await asyncio.sleep(0.5)
        while evaluator.records < 2 * summary.sent - 50:  # both topics read (a few DLQ'd events make no prediction)
            await asyncio.sleep(0.5)
            if time.monotonic() - started > 3600:
                break
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(worker_task, eval_task)
        seconds = time.monotonic() - started
        online = evaluator.publish()
        records = await read_all(svc.bootstrap, [topics["events"], topics["predictions"]])
    if shadow:
        ModelRegistry(registry).set_shadow(shadow, on=False)
    wall, cpu, _ = time_evaluator(settings, baseline, records, blend)
    wall_repeat, cpu_repeat, _ = time_evaluator(settings, baseline, records, None)  # the cost of the blend
    shadow_cost: dict[str, float] = {}
    if shadow:  # the same records again with the shadow running: its cost per shadow step
        ModelRegistry(registry).set_shadow(shadow)
        _, cpu_s, timer = time_evaluator(settings, baseline, records, blend)
        ModelRegistry(registry).set_shadow(shadow, on=False)
        shadow_cost = {"steps": timer.shadow.steps, "cpu_us_per_step": 1e6 * (cpu_s - cpu) / max(timer.shadow.steps, 1),
                       "wall_us_per_step": 1e6 * timer.shadow.seconds / max(timer.shadow.steps, 1)}  # fmt: skip
    version = ModelRegistry(registry).current_version()
    live = online[str(version)]
    lstm, base = methods["lstm"]["metrics"], methods[reference]["metrics"]
    published = Counter(msgspec.json.decode(v, type=Prediction).model_version
                        for t, v in records if t == topics["predictions"])  # fmt: skip
    shadow_part: dict[str, Any] = {}
    if shadow:
        sampled = online.get(f"{version}@sample", {})
        shadow_part = {
            "shadow": online.get(shadow, {}), "serving_on_sample": sampled,
            "promote_with_min_live_events_1000": check_live_promotion(ModelRegistry(registry), shadow, 1000)
            or "allowed",
        }  # fmt: skip
    return {
        "shadow_cost": shadow_cost,
        **shadow_part, "published_by_version": dict(published),
        "version": version, "replayed": summary.sent, "seconds": round(seconds, 1),
        "online_window_days": settings.evaluation_window_s / 86400, "online": live,
        "baseline": reference,
        "offline": {"mrr@10_model": lstm["mrr@10"], "mrr@10_baseline": base["mrr@10"],
                    "recall@10_model": lstm["recall@10"], "recall@10_baseline": base["recall@10"],
                    "n_events": lstm["n_events"]},
        "max_gap": max(abs(live["mrr_model"] - lstm["mrr@10"]), abs(live["mrr_baseline"] - base["mrr@10"]),
                       abs(live["recall_model"] - lstm["recall@10"]),
                       abs(live["recall_baseline"] - base["recall@10"])),
        "evaluator_us_per_record": {"wall": 1e6 * wall / len(records), "cpu": 1e6 * cpu / len(records),
                                    "records": len(records), "wall_repeat_only": 1e6 * wall_repeat / len(records),
                                    "cpu_repeat_only": 1e6 * cpu_repeat / len(records)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json of the serving version's training")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--shadow", default=None, help="A registry version to run as a shadow meanwhile.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="online-eval-") as tmp:
        results = asyncio.run(run(args.registry, args.metrics, args.data, Path(tmp), args.shadow))
    live, off = results["online"], results["offline"]
    rows = [
        ("replayed events", f"{results['replayed']} in {results['seconds']} s"),
        ("online judged (last 2 days)", f"{live['events']:.0f}  (offline test events {off['n_events']})"),
        ("MRR@10 model online/offline", f"{live['mrr_model']:.4f} / {off['mrr@10_model']:.4f}"),
        (f"MRR@10 {results['baseline']} online/offline", f"{live['mrr_baseline']:.4f} / {off['mrr@10_baseline']:.4f}"),
        ("Recall@10 model online/offline", f"{live['recall_model']:.4f} / {off['recall@10_model']:.4f}"),
        (f"Recall@10 {results['baseline']} online/offline",
         f"{live['recall_baseline']:.4f} / {off['recall@10_baseline']:.4f}"),
        ("max |online - offline|", f"{results['max_gap']:.4f}"),
        ("intent ECE / Brier online", f"{live.get('intent_ece', float('nan')):.4f} / "
                                      f"{live.get('intent_brier', float('nan')):.4f}"),
        ("evaluator µs/record (wall, cpu)", "{wall:.1f}, {cpu:.1f} over {records}; repeat only {wall_repeat_only:.1f},"
                                            " {cpu_repeat_only:.1f}".format(**results["evaluator_us_per_record"])),
        ("published predictions by version", str(results["published_by_version"])),
    ]  # fmt: skip
    if args.shadow:
        shadow, sampled = results["shadow"], results["serving_on_sample"]
        rows += [
            (f"shadow {args.shadow} MRR@10 / Recall@10", f"{shadow.get('mrr_model', 0):.4f} / "
                                                         f"{shadow.get('recall_model', 0):.4f}"),
            ("serving on the same users", f"{sampled.get('mrr_model', 0):.4f} / {sampled.get('recall_model', 0):.4f}"
                                          f" over {sampled.get('events', 0):.0f} events"),
            ("shadow µs per step (cpu, wall)", "{cpu_us_per_step:.0f}, {wall_us_per_step:.0f} over {steps}".format(
                **results["shadow_cost"])),
            ("models promote --min-live-events 1000", results["promote_with_min_live_events_1000"]),
        ]  # fmt: skip
    write_results("online_eval", results, rows)


if __name__ == "__main__":
    main()
