"""Worker benchmark (issue 4): raw aiokafka pass-through vs the full pipeline vs whole-window
recompute, per-stage microseconds per event, and end-to-end latency at half the maximum rate.

    .venv/bin/python -m bench.worker_bench [--events 40000] [--users 400]

Starts its own tansu broker and redis-server, prints a table, writes bench/results/worker_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import tempfile
import time
import uuid
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import HIDDEN, Services, export_model, make_topics, payloads, services, shopper_events, write_results
from bench.live_probes import GcPauses, LoopLag
from stream.config import Settings
from stream.contracts import Event, Prediction
from stream.worker import Worker
from stream.worker.metrics import STAGES
from stream.worker.publish import BatchPublisher

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


async def passthrough(svc: Services, topic: str, out_topic: str, n: int, *, batched: bool) -> tuple[float, float]:
    """(a) consume -> produce -> commit with no work: (events/s, process CPU µs/event) after the first batch.

    ``batched``: produce like the worker does (one record batch per partition, BatchPublisher);
    otherwise one ``send`` per record (the plain aiokafka way).
    """
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
    publisher = BatchPublisher(producer)
    done, first_at, first_n, first_cpu = 0, 0.0, 0, 0.0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=256)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            if batched:
                await publisher.publish([(out_topic, r.key, r.value) for r in records])
            else:
                futures = [await producer.send(out_topic, value=r.value, key=r.key) for r in records]
                await asyncio.gather(*futures)
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs})
            if not first_at:
                first_at, first_n, first_cpu = time.perf_counter(), len(records), time.process_time()
            done += len(records)
        cpu_us = 1e6 * (time.process_time() - first_cpu) / (done - first_n)
        return (done - first_n) / (time.perf_counter() - first_at), cpu_us
    finally:
        await consumer.stop()
        await producer.stop()


def settings_for(svc: Services, registry: Path, topics: dict[str, str], prefix: str, **extra: Any) -> Settings:
    return Settings(
        _env_file=None, kafka_bootstrap=svc.bootstrap, redis_url=svc.redis_url, topic_events=topics["events"],
        topic_predictions=topics["predictions"], topic_dlq=topics["dlq"], consumer_group=f"w-{uuid.uuid4().hex[:6]}",
        kafka_session_timeout_ms=SESSION_MS, model_registry=registry, http_port=0, redis_key_prefix=prefix, **extra,
    )  # fmt: skip


async def redis_cpu_s(url: str) -> float:
    """redis-server's CPU seconds so far (``INFO cpu``: user + sys, main thread and children)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def pipeline(settings: Settings, n: int) -> dict[str, Any]:
    """(b)/(c): one worker over ``n`` queued events; rate after its first batch, stage µs/event.

    Also redis-server's CPU per event over the same span (its ``INFO cpu`` delta): with state
    held in process, Redis's share of the work is the write-behind (and the loads at first sight).
    """
    worker = Worker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, max_records=n))
    while worker.records_done == 0:
        await asyncio.sleep(0.002)
    first_at, first_n, first_cpu = time.perf_counter(), worker.records_done, time.process_time()
    redis0 = await redis_cpu_s(settings.redis_url)
    stages0 = {s: worker.metrics.stage_total(s) for s in STAGES}
    await task
    elapsed, cpu_s = time.perf_counter() - first_at, time.process_time() - first_cpu
    redis_s = await redis_cpu_s(settings.redis_url) - redis0
    counted = worker.records_done - first_n
    stage_us = {s: 1e6 * (worker.metrics.stage_total(s) - stages0[s]) / counted for s in STAGES}
    registry = worker.metrics.registry
    calls = registry.get_sample_value("demandstream_worker_model_calls_total") or 0
    onnx_s = registry.get_sample_value("demandstream_worker_onnx_seconds_total") or 0.0
    batches = registry.get_sample_value("demandstream_worker_batch_size_count") or 1.0
    events = registry.get_sample_value("demandstream_worker_batch_size_sum") or 0.0
    return {"events_per_s": counted / elapsed, "cpu_us_per_event": 1e6 * cpu_s / counted,
            "redis_cpu_us_per_event": 1e6 * redis_s / counted,
            "stage_us_per_event": stage_us, "model_calls": calls,
            "onnx_us_per_event": 1e6 * onnx_s / max(events, 1), "batches": batches,
            "mean_batch": events / batches, "batch_max_size": settings.batch_max_size}  # fmt: skip


_TS_PLACEHOLDER = 1_111_111_111_111  # 13 digits, like every epoch-ms ts until 2286


async def _produce_at_rate(bootstrap: str, topic: str, rate: float, total: int, users: int) -> None:
    """Every 5 ms tick, the events due so far go out as one record batch per partition, each
    stamped with the send time: the way a producer with a few ms of linger sends. (One produce
    request per record, ~4,000/s at these rates, cost tansu half a core on this 2-core machine.)"""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    publisher = BatchPublisher(producer)
    placeholder = b'"ts":%d' % _TS_PLACEHOLDER
    events = [
        msgspec.structs.replace(event, event_id=f"lat-{j}", ts=_TS_PLACEHOLDER)
        for j, event in enumerate(shopper_events(total, users, seed=7))
    ]
    records = [(event.user_id.encode(), msgspec.json.encode(event)) for event in events]
    started, sent, tick = time.perf_counter(), 0, 0.005
    pending: list[asyncio.Future[Any]] = []
    try:
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            stamp = b'"ts":%d' % (time.time_ns() // 1_000_000)
            batch = [(topic, key, value.replace(placeholder, stamp, 1)) for key, value in records[sent:due]]
            pending += await publisher.submit(batch)
            sent = due
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def produce_at_rate(bootstrap: str, topic: str, rate: float, total: int, users: int) -> None:
    """Entry point of the producer process: a producer sharing the worker's event loop would both
    delay the worker and be delayed by it (the worker's batch work blocks the loop)."""
    asyncio.run(_produce_at_rate(bootstrap, topic, rate, total, users))


def start_producer(bootstrap: str, topic: str, rate: float, total: int, users: int) -> BaseProcess:
    """:func:`produce_at_rate` in a new (spawned) process, started."""
    process = multiprocessing.get_context("spawn").Process(
        target=produce_at_rate, args=(bootstrap, topic, rate, total, users)
    )
    process.start()
    return process


def _latency_summary(rate: float, latencies_ms: list[int]) -> dict[str, float]:
    arr = np.asarray(latencies_ms, dtype=np.float64)
    return {"rate_per_s": rate, "events": float(len(arr)), "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}  # fmt: skip


async def latency(svc: Services, settings: Settings, rate: float, seconds: float, users: int) -> dict[str, Any]:
    """End-to-end at a fixed input rate, produced from another process: event ts -> ``predicted_at``
    and event ts -> the prediction record's Kafka timestamp (set when its batch is built for the
    broker), with per-stage ms per batch, the event loop's lag and the GC pauses during the run."""
    worker = Worker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while not worker.assigned:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    total = int(rate * seconds)
    stages0 = {s: worker.metrics.stage_total(s) for s in STAGES}
    batches0 = _batches(worker)
    lag = LoopLag()
    lag.start()
    with GcPauses() as gc_pauses:
        producer = start_producer(svc.bootstrap, settings.topic_events, rate, total, users)
        while producer.is_alive():
            await asyncio.sleep(0.05)
        if producer.exitcode != 0:
            raise RuntimeError(f"the latency producer failed (exit code {producer.exitcode})")
        while worker.records_done < total:
            await asyncio.sleep(0.05)
    loop_lag = await lag.stop()
    batches = max(_batches(worker) - batches0, 1.0)
    stage_ms = {s: 1e3 * (worker.metrics.stage_total(s) - stages0[s]) / batches for s in STAGES}
    stop.set()
    await task
    consumer = AIOKafkaConsumer(bootstrap_servers=svc.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign([TopicPartition(settings.topic_predictions, p) for p in range(PARTITIONS)])
    lat: list[int] = []
    to_record: list[int] = []
    while len(lat) < total:
        batch = await consumer.getmany(timeout_ms=500)
        if not batch:
            break
        for records in batch.values():
            for r in records:
                p = msgspec.json.decode(r.value, type=Prediction)
                lat.append(p.predicted_at - p.event_ts)
                to_record.append(r.timestamp - p.event_ts)
    await consumer.stop()
    return {
        **_latency_summary(rate, lat),
        "record_ts": _latency_summary(rate, to_record),
        "mean_batch": total / batches,
        "stage_ms_per_batch": stage_ms,
        "loop_lag": loop_lag,
        "gc": gc_pauses.summary(),
    }


def _batches(worker: Worker) -> float:
    return float(worker.metrics.registry.get_sample_value("demandstream_worker_batch_size_count") or 0.0)


async def broker_latency(
    svc: Services, topic: str, rate: float, seconds: float, users: int, wait_ms: int
) -> dict[str, float]:
    """(e0) The broker alone at the same rate: event ts -> a plain consumer has the record, with the
    worker's fetch wait. tansu answers a fetch only when its wait ends (no wake-up on new data),
    so this is the floor under the worker's end-to-end latency on this broker."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=svc.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms
    )
    await consumer.start()
    total = int(rate * seconds)
    lat: list[int] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        producer = start_producer(svc.bootstrap, topic, rate, total, users)
        deadline = time.monotonic() + seconds + 60
        while len(lat) < total and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=256)
            now = time.time_ns() // 1_000_000
            lat.extend(now - msgspec.json.decode(r.value, type=Event).ts for rs in batch.values() for r in rs)
        producer.join()
    finally:
        await consumer.stop()
    return {**_latency_summary(rate, lat), "fetch_max_wait_ms": float(wait_ms)}


async def main(n_events: int, users: int, extra_events: int, latency_s: float, latency_rate: float | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    registry = workdir / "models"
    await asyncio.to_thread(export_model, registry)
    async with services(workdir) as svc:

        def topics(name: str) -> dict[str, str]:
            return {k: f"{name}.{k}" for k in ("events", "predictions", "dlq")}

        main_t, raw_t, lat_t, floor_t = topics("main"), topics("raw"), topics("lat"), topics("floor")
        quarter_t = topics("quarter")
        names = [*main_t.values(), *raw_t.values(), *lat_t.values(), *floor_t.values(), *quarter_t.values()]
        await make_topics(svc.bootstrap, names, PARTITIONS)
        warm = shopper_events(n_events, users, seed=1)
        more = shopper_events(2 * extra_events, users, seed=2, start_ms=warm[-1].ts + 1000)
        await produce_all(svc.bootstrap, main_t["events"], payloads(warm))
        raw_rate, raw_cpu = await passthrough(svc, main_t["events"], raw_t["predictions"], n_events, batched=True)
        logger.info("(a) pass-through, batched produce: %.0f events/s", raw_rate)
        raw_send, raw_send_cpu = await passthrough(svc, main_t["events"], raw_t["dlq"], n_events, batched=False)
        logger.info("(a0) pass-through, one send per record: %.0f events/s", raw_send)
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
        lat_rate = latency_rate or min(full["events_per_s"], steady["events_per_s"]) / 2
        lat_settings = settings_for(svc, registry, lat_t, "bench-lat")
        lat = await latency(svc, lat_settings, lat_rate, latency_s, users)
        wait_ms = lat_settings.kafka_fetch_max_wait_ms  # what the worker asks the broker for
        floor = await broker_latency(svc, floor_t["events"], lat_rate, latency_s, users, wait_ms)
        # A second point of the latency curve: produced live, batches are smaller and cost more
        # per event than the backlog batches the maximum was measured with (docs/worker.md).
        quarter = await latency(svc, settings_for(svc, registry, quarter_t, "bench-q"), lat_rate / 2, latency_s, users)
    model_ratio = rebuild["stage_us_per_event"]["model"] / steady["stage_us_per_event"]["model"]
    results = {"events": n_events, "users": users, "partitions": PARTITIONS, "batch_max_size": full["batch_max_size"],
               "load_average": os.getloadavg(), "model": {"hidden": HIDDEN, "transitions": True},
               "passthrough_events_per_s": raw_rate, "passthrough_send_each_events_per_s": raw_send,
               "passthrough_cpu_us_per_event": raw_cpu, "passthrough_send_each_cpu_us_per_event": raw_send_cpu,
               "full": full, "full_steady": steady, "rebuild": rebuild,
               "pipeline_vs_passthrough": full["events_per_s"] / raw_rate, "rebuild_model_cost_ratio": model_ratio,
               "latency_at_half_max": lat, "broker_latency_at_half_max": floor,
               "latency_at_quarter_max": quarter}  # fmt: skip

    def rate(part: dict[str, Any]) -> str:
        return (
            f"{part['events_per_s']:,.0f} ev/s ({100 * part['events_per_s'] / raw_rate:.0f}% of a, "
            f"{100 * part['events_per_s'] / raw_send:.0f}% of a0), {part['cpu_us_per_event']:.0f} µs CPU/event"
            f" + redis-server {part['redis_cpu_us_per_event']:.1f} µs"
        )

    parts = (full, steady, rebuild)

    def stage(name: str) -> str:
        return " / ".join(f"{p['stage_us_per_event'][name]:.1f}" for p in (full, steady, rebuild))

    rows = [
        ("(a) raw aiokafka pass-through (batched produce)", f"{raw_rate:,.0f} ev/s, {raw_cpu:.0f} µs CPU/event"),
        ("(a0) same, one send() per record", f"{raw_send:,.0f} ev/s, {raw_send_cpu:.0f} µs CPU/event"),
        ("(b) full pipeline (windows filling)", rate(full)),
        ("(b') full pipeline, windows full", rate(steady)),
        ("(c) whole-window recompute", rate(rebuild)),
        *[(f"(d) {name} µs/event b / b' / c", stage(name)) for name in STAGES],
        ("(d) of model: onnx µs/event b / b' / c", " / ".join(f"{p['onnx_us_per_event']:.1f}" for p in parts)),
        ("ONNX calls per batch b / b' / c", " / ".join(f"{p['model_calls'] / p['batches']:.1f}" for p in parts)),
        ("model cost c / b'", f"{model_ratio:.1f}x"),
        (f"e2e at {lat['rate_per_s']:,.0f} ev/s", f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms"),
        (
            "  same, to the prediction record's timestamp",
            f"p50 {lat['record_ts']['p50_ms']:.1f} ms, p99 {lat['record_ts']['p99_ms']:.1f} ms",
        ),
        (
            "  ms per batch by stage",
            ", ".join(f"{k} {v:.2f}" for k, v in lat["stage_ms_per_batch"].items())
            + f" (mean batch {lat['mean_batch']:.1f})",
        ),
        (
            "  event-loop lag",
            f"p50 {lat['loop_lag']['p50_ms']:.1f} ms, p99 {lat['loop_lag']['p99_ms']:.1f} ms, "
            f"max {lat['loop_lag']['max_ms']:.1f} ms",
        ),
        (
            "  GC pauses gen0/1/2 (count, max ms)",
            " / ".join(f"{int(g['count'])}, {g['max_ms']:.1f}" for g in lat["gc"].values()),
        ),
        ("  mean batch at that rate", f"{lat['mean_batch']:.1f} events"),
        (
            f"(e0) broker alone at the half rate, fetch wait {wait_ms} ms",
            f"p50 {floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms",
        ),
        (
            f"e2e at {quarter['rate_per_s']:,.0f} ev/s (a quarter of the max)",
            f"p50 {quarter['p50_ms']:.1f} ms, p99 {quarter['p99_ms']:.1f} ms, mean batch {quarter['mean_batch']:.1f}",
        ),
        ("load average (1/5/15 min) at the end", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]
    path = write_results("worker_bench", results, rows)
    logger.info("wrote %s", path)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--extra-events", type=int, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--latency-rate", type=float, default=None, help="events/s (default: half the max)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(main(args.events, args.users, args.extra_events, args.latency_seconds, args.latency_rate))


if __name__ == "__main__":
    cli()
