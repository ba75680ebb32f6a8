"""faust-streaming agent vs aiokafka ``getmany``: the same N events, the same broker, one run.

    .venv/bin/pip install -e '.[faust]'     # faust-streaming is an extra, not a worker dependency
    .venv/bin/python -m bench.faust_vs_aiokafka [--events 20000] [--partitions 4]

Starts its own tansu broker, writes N events to one topic, then consumes all of them twice:
with a plain aiokafka consumer (``getmany`` batches) and with a trivial faust-streaming agent
(``async for value in stream`` counting raw values). Rates count from the first event received
to the last, so group joins and start-up are excluded. Logs both rates and the ratio and
writes bench/results/faust_vs_aiokafka.json. This is the measurement behind the worker's
framework decision (docs/worker.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.common import payloads, shopper_events, write_results
from bench.worker_bench import SESSION_MS, produce_all
from tools.devinfra.broker import TansuBroker, create_topics

logger = logging.getLogger("bench.faust_vs_aiokafka")


async def aiokafka_rate(bootstrap: str, topic: str, n: int) -> float:
    """Events/s of a bare aiokafka consumer reading ``n`` events in ``getmany`` batches."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
    )
    await consumer.start()
    done, first_at = 0, 0.0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            count = sum(len(records) for records in batch.values())
            if count and not first_at:
                first_at = time.perf_counter()
            done += count
        return n / (time.perf_counter() - first_at)
    finally:
        await consumer.stop()


async def faust_rate(bootstrap: str, topic: str, n: int, partitions: int, workdir: Path) -> float:
    """Events/s of a trivial faust-streaming agent (counts raw values) over the same ``n`` events."""
    import faust

    app_id = f"fbench-{uuid.uuid4().hex[:6]}"
    # tansu needs topics created explicitly: faust's leader topic too.
    await create_topics(bootstrap, {f"{app_id}-__assignor-__leader": 1})
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        store="memory://",
        web_enabled=False,
        datadir=str(workdir / "faust"),
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_MS / 1000,
        broker_heartbeat_interval=SESSION_MS / 3000,
    )
    source = app.topic(topic, value_serializer="raw", partitions=partitions)
    state: dict[str, Any] = {"count": 0, "first_at": 0.0, "done": asyncio.Event()}

    async def count(stream: Any) -> None:
        async for _value in stream:
            if not state["count"]:
                state["first_at"] = time.perf_counter()
            state["count"] += 1
            if state["count"] >= n:
                state["last_at"] = time.perf_counter()
                state["done"].set()

    app.agent(source, name="count")(count)
    await app.start()
    try:
        await asyncio.wait_for(state["done"].wait(), timeout=max(120.0, n / 100))
    finally:
        await app.stop()
    return n / (float(state["last_at"]) - float(state["first_at"]))


async def main(n: int, partitions: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ds-faust-bench-"))
    broker = TansuBroker(workdir=workdir / "tansu")
    (workdir / "tansu").mkdir(parents=True, exist_ok=True)
    await broker.start()
    try:
        topic = "fbench.events"
        await create_topics(broker.bootstrap, {topic: partitions})
        await produce_all(broker.bootstrap, topic, payloads(shopper_events(n, users=400, seed=5)))
        raw = await aiokafka_rate(broker.bootstrap, topic, n)
        logger.info("aiokafka getmany: %.0f events/s", raw)
        agent = await faust_rate(broker.bootstrap, topic, n, partitions, workdir)
        logger.info("faust agent: %.0f events/s", agent)
    finally:
        broker.stop()
    results = {"events": n, "partitions": partitions, "aiokafka_events_per_s": raw, "faust_events_per_s": agent,
               "aiokafka_over_faust": raw / agent, "load_average": os.getloadavg()}  # fmt: skip
    rows = [
        ("aiokafka getmany (consume only)", f"{raw:,.0f} ev/s"),
        ("faust-streaming agent (consume only)", f"{agent:,.0f} ev/s"),
        ("aiokafka / faust", f"{raw / agent:.1f}x"),
        ("load average (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]
    path = write_results("faust_vs_aiokafka", results, rows)
    logger.info("wrote %s", path)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(main(args.events, args.partitions))


if __name__ == "__main__":
    cli()
