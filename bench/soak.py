"""Soak benchmark (not in CI): N minutes at 70% of the measured maximum rate.

    .venv/bin/python -m bench.soak [--minutes 10] [--fraction 0.7] [--users 2000] [--interval 10]

Starts its own tansu broker and redis-server, exports a default-sized model (needs the `train`
extra), and runs ONE `demandstream worker` subprocess (so that the RSS sampled is the worker's
alone). Phase 1 measures the maximum rate by draining a pre-filled backlog; phase 2 produces at
``fraction`` of it for ``minutes``, stamping each event with the current time, and reports per
interval: input and output rate, p50/p99 end-to-end latency (``predicted_at - event_ts``) and
the worker's RSS. Memory growth = last interval's RSS vs the first interval's (after warm-up).
Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import Services, export_model, make_topics, services, shopper_events, write_results
from stream.config import Settings
from stream.contracts import Event, Prediction
from tools.devinfra.processes import ManagedProcess

logger = logging.getLogger("bench.soak")
PARTITIONS = 4
SESSION_MS = 6000
GROWTH_LIMIT = 0.10  # the bar: memory growth under 10%


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"DEMANDSTREAM_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["DEMANDSTREAM_LOG_LEVEL"] = "WARNING"
    return env


def event_stream(users: int, chunk: int = 5000) -> Iterator[Event]:
    """Endless shopper events with unique ids, generated a chunk at a time."""
    for n in range(10**9):
        yield from shopper_events(chunk, users, seed=1000 + n)


@dataclass
class Collector:
    """Consumes the predictions topic; keeps latencies (ms) by arrival interval."""

    bootstrap: str
    topic: str
    count: int = 0
    latencies: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``, from explicit offsets (tansu's ListOffsets answers are unreliable).

        A consumer that sees nothing for 2 s is replaced by a fresh one at the saved offsets
        (defensive: the soak must not hang on a stalled fetch session).
        """
        positions = dict.fromkeys(range(PARTITIONS), 0)
        while not stop.is_set():
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, auto_offset_reset="earliest")
            await consumer.start()
            try:
                partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
                consumer.assign(partitions)
                for tp in partitions:
                    consumer.seek(tp, positions[tp.partition])
                idle_since = time.perf_counter()
                while not stop.is_set() and time.perf_counter() - idle_since < 2.0:
                    batch = await consumer.getmany(timeout_ms=200)
                    now = time.perf_counter()
                    for tp, records in batch.items():
                        if records:
                            idle_since = now
                            positions[tp.partition] = records[-1].offset + 1
                        for record in records:
                            if record.value is None:
                                continue
                            p = msgspec.json.decode(record.value, type=Prediction)
                            self.latencies.append(float(p.predicted_at - p.event_ts))
                            self.count += 1
            finally:
                await consumer.stop()

    def take(self) -> list[float]:
        out, self.latencies = self.latencies, []
        return out


async def produce_backlog(bootstrap: str, topic: str, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        now = time.time_ns() // 1_000_000
        futures = [
            await producer.send(
                topic, value=msgspec.json.encode(msgspec.structs.replace(e, ts=now)), key=e.user_id.encode()
            )
            for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for(condition: Any, timeout_s: float, what: str, progress: Any = None) -> None:
    next_log = time.monotonic() + 10
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        if progress is not None and time.monotonic() > next_log:
            logger.info("waiting for %s: %s", what, progress())
            next_log += 10
        await asyncio.sleep(0.1)


async def soak(svc: Services, workdir: Path, minutes: float, fraction: float, users: int, interval_s: float) -> None:
    topics = {k: f"soak-{uuid.uuid4().hex[:6]}.{k}" for k in ("events", "predictions", "dlq")}
    await make_topics(svc.bootstrap, list(topics.values()), PARTITIONS)
    settings = Settings(
        _env_file=None, kafka_bootstrap=svc.bootstrap, redis_url=svc.redis_url, topic_events=topics["events"],
        topic_predictions=topics["predictions"], topic_dlq=topics["dlq"], consumer_group="soak",
        kafka_session_timeout_ms=SESSION_MS, model_registry=workdir / "models", http_port=0, redis_key_prefix="soak",
    )  # fmt: skip
    log_path = workdir / "worker.log"
    os.environ.update(worker_env(settings))  # ManagedProcess inherits it; the worker dies with us
    process = ManagedProcess(
        [str(Path(sys.executable).parent / "demandstream"), "worker"], name="worker", log_path=log_path
    )
    process.start()
    pid = process.pid
    assert pid is not None
    collector = Collector(svc.bootstrap, topics["predictions"])
    stop_collecting = asyncio.Event()
    collecting = asyncio.create_task(collector.run(stop_collecting))
    stream = event_stream(users)
    try:
        # Phase 1: the maximum rate, from draining a backlog (after a warm-up batch).
        warm = [next(stream) for _ in range(2000)]
        await produce_backlog(svc.bootstrap, topics["events"], warm)
        await wait_for(lambda: collector.count >= len(warm), 300, "warm-up predictions", lambda: collector.count)
        backlog = [next(stream) for _ in range(20_000)]
        await produce_backlog(svc.bootstrap, topics["events"], backlog)
        # Measured from the end of production (the worker may drain part of it meanwhile).
        target, mark, t0 = len(warm) + len(backlog), collector.count, time.perf_counter()
        await wait_for(lambda: collector.count >= target, 600, "backlog predictions", lambda: collector.count)
        max_rate = (target - mark) / (time.perf_counter() - t0)
        rate = fraction * max_rate
        collector.take()
        logger.info("max rate %.0f events/s; soaking at %.0f events/s for %.1f min", max_rate, rate, minutes)

        # Phase 2: a steady rate with live timestamps, sampled every interval.
        producer = AIOKafkaProducer(bootstrap_servers=svc.bootstrap, linger_ms=2)
        await producer.start()
        rows: list[dict[str, float]] = []
        sent, started = 0, time.perf_counter()
        next_sample, received_mark = started + interval_s, collector.count
        try:
            while (now := time.perf_counter()) - started < minutes * 60:
                due = int((now - started) * rate)
                while sent < due:
                    event = msgspec.structs.replace(next(stream), ts=time.time_ns() // 1_000_000)
                    await producer.send(topics["events"], value=msgspec.json.encode(event), key=event.user_id.encode())
                    sent += 1
                if now >= next_sample:
                    lat = np.asarray(collector.take() or [float("nan")])
                    rows.append({
                        "t_s": round(now - started, 1), "in_per_s": rate,
                        "out_per_s": (collector.count - received_mark) / interval_s,
                        "p50_ms": float(np.nanpercentile(lat, 50)), "p99_ms": float(np.nanpercentile(lat, 99)),
                        "rss_mib": rss_mib(pid),
                    })  # fmt: skip
                    logger.info("%s", rows[-1])
                    received_mark, next_sample = collector.count, next_sample + interval_s
                    if not process.running:
                        raise RuntimeError(f"worker exited: {log_path.read_text()[-2000:]}")
                await asyncio.sleep(0.005)
            await producer.flush()
        finally:
            await producer.stop()
        total = len(warm) + len(backlog) + sent
        await wait_for(lambda: collector.count >= total, 300, "the last predictions")
    finally:
        process.stop(grace_s=60)  # SIGTERM: the worker drains its batch and commits
        stop_collecting.set()
        await collecting

    growth = rows[-1]["rss_mib"] / rows[0]["rss_mib"] - 1 if len(rows) >= 2 else float("nan")
    p99s = [r["p99_ms"] for r in rows]
    results = {
        "minutes": minutes, "fraction": fraction, "users": users, "max_rate_per_s": max_rate, "rate_per_s": rate,
        "events_sent": sent, "predictions": collector.count, "intervals": rows,
        "rss_growth": growth, "rss_growth_ok": growth < GROWTH_LIMIT,
    }  # fmt: skip
    summary = [
        ("max rate (backlog drain)", f"{max_rate:,.0f} events/s"),
        (f"soak rate ({fraction:.0%})", f"{rate:,.0f} events/s for {minutes:g} min ({sent:,} events)"),
        ("output rate (mean of intervals)", f"{np.mean([r['out_per_s'] for r in rows]):,.0f} events/s"),
        ("p99 latency (median / worst interval)", f"{np.nanmedian(p99s):,.0f} / {np.nanmax(p99s):,.0f} ms"),
        ("worker RSS first -> last interval", f"{rows[0]['rss_mib']:.0f} -> {rows[-1]['rss_mib']:.0f} MiB"),
        ("memory growth", f"{growth:+.1%} ({'OK' if growth < GROWTH_LIMIT else 'OVER'} the {GROWTH_LIMIT:.0%} bar)"),
    ]
    logger.info("wrote %s", write_results("soak", results, summary))


async def main(minutes: float, fraction: float, users: int, interval_s: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ds-soak-"))
    await asyncio.to_thread(export_model, workdir / "models")
    async with services(workdir) as svc:
        await soak(svc, workdir, minutes, fraction, users, interval_s)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    parser.add_argument("--fraction", type=float, default=0.7, help="share of the measured max rate (default 0.7)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per reported interval")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(main(args.minutes, args.fraction, args.users, args.interval))


if __name__ == "__main__":
    cli()
