"""Screenshots of the insights report and dashboard on real data plus a simulated stream.

    .venv/bin/python scripts/insights_screenshots.py --out /tmp/insights-shots

Runs the real pipeline on this machine: a tansu broker and a redis-server (tools.devinfra), the
demo model (trained on first use, tools.demo.model), the worker, and the insights job; feeds
``--events`` simulated shoppers (event time ending now) through Kafka; then writes the report
(shared online_shopping_10_cats reviews, MultiCPR queries, the simulator's catalogue for names,
``--live`` Redis aggregates) and serves the dashboard, and photographs both in headless Chromium
(Debian's chromium + chromedriver, selenium from the test extra, fonts-noto-cjk for Chinese).
Writes report.png, dashboard.png and the report's files into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from insights import report as rep
from insights.consumer import InsightsJob
from insights.names import Names
from insights.store import InsightsStore
from insights.web import create_app
from stream.contracts import encode_event
from stream.worker import Worker
from tools.demo.cli import demo_settings
from tools.demo.model import ensure_demo_model
from tools.devinfra.broker import TansuBroker, create_topics
from tools.devinfra.redis_server import RedisServer
from tools.simulate import ShopperSimulator

log = logging.getLogger("insights_screenshots")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CATALOGUE = REPO / "tools" / "simulate" / "catalogue.json"


async def _feed(settings: Any, count: int, hours: float) -> int:
    start = int(time.time() * 1000 - hours * 3_600_000)
    events = [e for e in itertools.islice(ShopperSimulator(42, 800, start_ms=start), count)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        for e in events:
            await producer.send(settings.topic_events, encode_event(e), key=e.user_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return len(events)


async def _until(condition: Any, what: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        await asyncio.sleep(0.5)


def _shoot(url: str, path: Path, wait_for: str | None = None) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='shots-')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        if wait_for:
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, wait_for))
        time.sleep(1.0)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 100, 16_000))
        driver.save_screenshot(str(path))
    finally:
        driver.quit()


async def main(out: Path, workdir: Path, count: int, hours: float, bucket_s: int) -> None:
    broker, redis_server = TansuBroker(workdir=workdir / "infra"), RedisServer(workdir=workdir / "infra")
    await broker.start()
    redis_server.start()
    try:
        ensure_demo_model(workdir)
        settings = demo_settings(broker.bootstrap, redis_server.url, workdir / "models", 0)
        settings = settings.model_copy(update={"insights_bucket_s": bucket_s, "http_port": 0})
        topics = (settings.topic_events, settings.topic_predictions, settings.topic_dlq, settings.topic_models)
        await create_topics(broker.bootstrap, dict.fromkeys(topics, 3))
        worker, job = Worker(settings), InsightsJob(settings, group="screenshots")
        stop = asyncio.Event()
        tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(job.run(stop))]
        await _until(lambda: bool(worker.assigned), "the worker's partitions", 120)
        sent = await _feed(settings, count, hours)
        log.info("fed %d simulated events", sent)
        await _until(lambda: job.stats["predictions"] >= 0.9 * sent, "predictions to reach the insights job", 600)
        await asyncio.sleep(3)
        names = Names.load(CATALOGUE)
        inputs = rep.ReportInputs(
            reviews=DATA / "online_shopping_10_cats" / "online_shopping_10_cats.csv",
            queries=DATA / "multicpr_ecom_queries" / "train.query.txt",
            names=names,
            bucket_s=bucket_s,
        )
        store = InsightsStore(settings)
        findings = await rep.add_live(await asyncio.to_thread(rep.offline_findings, inputs), store, 24, names)
        rep.write_report(findings, out)
        await asyncio.to_thread(_shoot, (out / "report.html").as_uri(), out / "report.png")
        offline = {c: p for c, p in findings.pain_points.items() if c in {"手机", "平板", "计算机", "洗发水", "水果"}}
        app = create_app(store, refresh_s=30, window=24, offline_pain_points=offline, names=names)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            await asyncio.to_thread(_shoot, f"http://{host}:{port}/", out / "dashboard.png", "#chart img")
        finally:
            await runner.cleanup()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        broker.stop()
        redis_server.stop()
    log.info("screenshots in %s", out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "insights-shots-work")
    parser.add_argument("--events", type=int, default=20_000, help="simulated events fed through the pipeline")
    parser.add_argument("--hours", type=float, default=12.0, help="event time span they start before now")
    parser.add_argument("--bucket-s", type=int, default=1800)
    args = parser.parse_args()
    asyncio.run(main(args.out, args.workdir, args.events, args.hours, args.bucket_s))
