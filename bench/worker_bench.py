"""Worker benchmark (issue 4): raw aiokafka pass-through vs the full pipeline vs whole-window
recompute, per-stage microseconds per event, and end-to-end latency at half the maximum rate.

    .venv/bin/python -m bench.worker_bench [--events 40000] [--users 400]

Starts its own tansu broker and redis-server, prints a table, writes bench/results/worker_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import Services, export_model, make_topics, payloads, services, shopper_events, write_results
from stream.config import Settings
from stream.contracts import Prediction
from stream.worker import Worker
from stream.worker.metrics import STAGES

logger = logging.getLogger("bench.worker_bench")
PARTITIONS = 4
SESSION_MS = 6000


async def produce_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def passthrough(svc: Services, topic: str, out_topic: str, n: int) -> float:
    """(a) consume -> produce -> commit with no work; events/s after the first batch."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=svc.bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=svc.bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    done, first_at, first_n = 0, 0.0, 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=256)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            futures = [await producer.send(out_topic, value=r.value, key=r.key) for r in records]
            await asyncio.gather(*futures)
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs})
            if not first_at:
                first_at, first_n = time.perf_counter(), len(records)
            done += len(records)
        return (done - first_n) / (time.perf_counter() - first_at)
    finally:
        await consumer.stop()
        await producer.stop()


def settings_for(svc: Services, registry: Path, topics: dict[str, str], prefix: str, **extra: Any) -> Settings:
    return Settings(
        _env_file=None, kafka_bootstrap=svc.bootstrap, redis_url=svc.redis_url, topic_events=topics["events"],
        topic_predictions=topics["predictions"], topic_dlq=topics["dlq"], consumer_group=f"w-{uuid.uuid4().hex[:6]}",
        kafka_session_timeout_ms=SESSION_MS, model_registry=registry, http_port=0, redis_key_prefix=prefix, **extra,
    )  # fmt: skip


async def pipeline(settings: Settings, n: int) -> dict[str, Any]:
    """(b)/(c): one worker over ``n`` queued events; rate after its first batch, stage µs/event."""
    worker = Worker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, max_records=n))
    while worker.records_done == 0:
        await asyncio.sleep(0.002)
    first_at, first_n = time.perf_counter(), worker.records_done
    stages0 = {s: worker.metrics.stage_total(s) for s in STAGES}
    await task
    elapsed = time.perf_counter() - first_at
    counted = worker.records_done - first_n
    stage_us = {s: 1e6 * (worker.metrics.stage_total(s) - stages0[s]) / counted for s in STAGES}
    calls = worker.metrics.registry.get_sample_value("demandstream_worker_model_calls_total") or 0
    return {"events_per_s": counted / elapsed, "stage_us_per_event": stage_us, "model_calls": calls}


async def latency(svc: Services, settings: Settings, rate: float, seconds: float, users: int) -> dict[str, float]:
    """End-to-end (event ts -> predicted_at) at a fixed input rate."""
    worker = Worker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while not worker.assigned:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    producer = AIOKafkaProducer(bootstrap_servers=svc.bootstrap, linger_ms=1)
    await producer.start()
    total = int(rate * seconds)
    tick = 0.01
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        chunk = (
            shopper_events(due - sent, users, seed=sent + 7, start_ms=time.time_ns() // 1_000_000) if due > sent else []
        )
        for j, event in enumerate(chunk):
            event = msgspec.structs.replace(event, event_id=f"lat-{sent + j}", ts=time.time_ns() // 1_000_000)
            await producer.send(settings.topic_events, value=msgspec.json.encode(event), key=event.user_id.encode())
        sent = due
        await asyncio.sleep(tick)
    await producer.flush()
    await producer.stop()
    while worker.records_done < total:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    consumer = AIOKafkaConsumer(bootstrap_servers=svc.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    from aiokafka import TopicPartition

    consumer.assign([TopicPartition(settings.topic_predictions, p) for p in range(PARTITIONS)])
    lat: list[int] = []
    while len(lat) < total:
        batch = await consumer.getmany(timeout_ms=500)
        if not batch:
            break
        for records in batch.values():
            for r in records:
                p = msgspec.json.decode(r.value, type=Prediction)
                lat.append(p.predicted_at - p.event_ts)
    await consumer.stop()
    arr = np.asarray(lat, dtype=np.float64)
    return {"rate_per_s": rate, "events": float(len(arr)), "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}  # fmt: skip


async def main(n_events: int, users: int, extra_events: int, latency_s: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    registry = workdir / "models"
    await asyncio.to_thread(export_model, registry)
    async with services(workdir) as svc:

        def topics(name: str) -> dict[str, str]:
            return {k: f"{name}.{k}" for k in ("events", "predictions", "dlq")}

        main_t, raw_t, lat_t = topics("main"), topics("raw"), topics("lat")
        await make_topics(svc.bootstrap, [*main_t.values(), *raw_t.values(), *lat_t.values()], PARTITIONS)
        warm = shopper_events(n_events, users, seed=1)
        more = shopper_events(2 * extra_events, users, seed=2, start_ms=warm[-1].ts + 1000)
        await produce_all(svc.bootstrap, main_t["events"], payloads(warm))
        raw_rate = await passthrough(svc, main_t["events"], raw_t["predictions"], n_events)
        logger.info("(a) pass-through: %.0f events/s", raw_rate)
        full = await pipeline(settings_for(svc, registry, main_t, "bench"), n_events)
        logger.info("(b) full pipeline (windows filling): %.0f events/s", full["events_per_s"])
        steady_t, rebuild_t = topics("steady"), topics("rebuild")
        await make_topics(svc.bootstrap, [*steady_t.values(), *rebuild_t.values()], PARTITIONS)
        await produce_all(svc.bootstrap, steady_t["events"], payloads(more[:extra_events]))
        await produce_all(svc.bootstrap, rebuild_t["events"], payloads(more[extra_events:]))
        steady = await pipeline(settings_for(svc, registry, steady_t, "bench"), extra_events)
        logger.info("(b') full pipeline, full windows: %.0f events/s", steady["events_per_s"])
        rebuild = await pipeline(
            settings_for(svc, registry, rebuild_t, "bench", worker_force_rebuild=True), extra_events
        )
        logger.info("(c) whole-window recompute: %.0f events/s", rebuild["events_per_s"])
        max_rate = min(full["events_per_s"], steady["events_per_s"])
        lat = await latency(svc, settings_for(svc, registry, lat_t, "bench-lat"), max_rate / 2, latency_s, users)
    model_ratio = rebuild["stage_us_per_event"]["model"] / steady["stage_us_per_event"]["model"]
    results = {"events": n_events, "users": users, "partitions": PARTITIONS, "batch_max_size": 256,
               "passthrough_events_per_s": raw_rate, "full": full, "full_steady": steady, "rebuild": rebuild,
               "pipeline_vs_passthrough": full["events_per_s"] / raw_rate, "rebuild_model_cost_ratio": model_ratio,
               "latency_at_half_max": lat}  # fmt: skip

    def rate(part: dict[str, Any]) -> str:
        return f"{part['events_per_s']:,.0f} ev/s ({100 * part['events_per_s'] / raw_rate:.0f}% of a)"

    def stage(name: str) -> str:
        return " / ".join(f"{p['stage_us_per_event'][name]:.1f}" for p in (full, steady, rebuild))

    rows = [
        ("(a) raw aiokafka pass-through", f"{raw_rate:,.0f} ev/s"),
        ("(b) full pipeline (windows filling)", rate(full)),
        ("(b') full pipeline, windows full", rate(steady)),
        ("(c) whole-window recompute", rate(rebuild)),
        *[(f"(d) {name} µs/event b / b' / c", stage(name)) for name in STAGES],
        ("model cost c / b'", f"{model_ratio:.1f}x"),
        (f"e2e at {lat['rate_per_s']:,.0f} ev/s", f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms"),
    ]
    path = write_results("worker_bench", results, rows)
    logger.info("wrote %s", path)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--extra-events", type=int, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(main(args.events, args.users, args.extra_events, args.latency_seconds))


if __name__ == "__main__":
    cli()
