"""The insights job on a real broker and Redis, and its dashboard in a real headless Chromium.

Chromium and chromedriver are Debian packages (``chromium``, ``chromium-driver``). If absent,
the fixture installs them with apt-get when it runs as root, and otherwise fails with the
command to run: the dashboard must be tested in a browser, never skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiokafka import AIOKafkaProducer

from insights.consumer import InsightsJob
from insights.store import InsightsStore
from insights.web import create_app
from stream.config import Settings
from stream.contracts import CategoryScore, Event, Prediction, encode_event

BASE_TS = 1_700_000_000_000
CHROMIUM_PACKAGES = ["chromium", "chromium-driver"]
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


def _prediction(i: int, category: str, ts: int, score: float = 0.5) -> Prediction:
    return Prediction(
        user_id=f"u{i % 7}",
        event_id=f"e-{category}-{i}",
        event_ts=ts,
        predicted_at=ts + 5,
        model_version="test",
        demand=[CategoryScore(category, score), CategoryScore("c-other", 0.1)],
        purchase_intent=0.4,
        history_len=3,
    )


def _events() -> list[Event]:
    t = BASE_TS
    out = []
    for i in range(40):  # 40 sessions search 汉服; only 1 converts. 20 search 耳机; all convert.
        out.append(Event(f"s{i}", f"h{i}", t + i, "search", query="汉服 女"))
        if i == 0:
            out.append(Event(f"c{i}", f"h{i}", t + 100 + i, "cart", item_id="x"))
    for i in range(20):
        out.append(Event(f"se{i}", f"e{i}", t + i, "search", query="耳机"))
        out.append(Event(f"pe{i}", f"e{i}", t + 100 + i, "purchase", item_id="y"))
    for i, text in enumerate(["电池不耐用，经常死机", "电池不耐用", "死机严重，电池不耐用"]):
        out.append(Event(f"r{i}", f"r{i}", t + i, "review", category_id="手机", text=text, rating=1))
    for i, text in enumerate(["外观漂亮，颜色好看", "屏幕清晰，外观好", "颜色正，电池还行"]):
        out.append(Event(f"p{i}", f"p{i}", t + i, "review", category_id="手机", text=text, rating=5))
    return out


async def _produce(settings: Settings, preds: list[Prediction], events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for p in preds:
            await producer.send(settings.topic_predictions, msgspec.json.encode(p), key=p.user_id.encode())
        for e in events:
            await producer.send(settings.topic_events, encode_event(e), key=e.user_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _wait_for(condition: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    for _ in range(int(limit_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class RunningJob:
    def __init__(self, settings: Settings, group: str) -> None:
        self.job = InsightsJob(settings, group=group)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.job.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(insights_bucket_s=60, batch_linger_ms=10)


async def test_job_aggregates_and_a_replay_counts_nothing_twice(settings: Settings) -> None:
    # Two one-minute buckets: 10 c-hot predictions in the first, 30 in the second.
    preds = [_prediction(i, "c-hot", BASE_TS + (0 if i < 10 else 60_000)) for i in range(40)]
    events = _events()
    await _produce(settings, preds, events)
    running = RunningJob(settings, "ins-a")
    await _wait_for(
        lambda: running.job.stats["predictions"] + running.job.stats["events"] == len(preds) + len(events),
        "the job to consume everything",
    )
    await running.close()

    store = InsightsStore(settings)
    latest = await store.latest_bucket()
    assert latest == (BASE_TS + 60_000) // 60_000
    window = await store.read_window(latest, 2)
    assert window.demand["c-hot"] == pytest.approx([5.0, 15.0])
    assert window.predictions == 40
    assert window.searches["汉服"] == 40 and window.conversions["汉服"] == 1
    assert window.searches["耳机"] == 20 and window.conversions["耳机"] == 20
    assert window.review_counts[("手机", True)] == 3
    assert window.review_words[("手机", True)]["电池"] == 3

    # A second job in a new group replays the topics from the start: Redis offsets skip it all.
    replay = RunningJob(settings, "ins-b")
    await _wait_for(lambda: replay.job.stats["replayed"] == len(preds) + len(events), "the replay")
    await replay.close()
    again = await store.read_window(latest, 2)
    assert again.demand == window.demand and again.searches == window.searches


# --- the dashboard in a real browser -------------------------------------------------------


def _ensure_chromium() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    install = ["apt-get", "install", "-y", *CHROMIUM_PACKAGES]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        result = subprocess.run(
            install,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and os.path.exists(CHROMEDRIVER):
            return
    pytest.fail(
        "the dashboard test needs Debian's headless Chromium: run "
        f"`apt-get update && {' '.join(install)}` (as root) before the tests"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="insights-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(settings: Settings) -> AsyncIterator[str]:
    app: web.Application = create_app(InsightsStore(settings), refresh_s=0.5, window=4)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/"
    finally:
        await runner.cleanup()


async def _page_text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    def read() -> str:
        return str(driver.find_element(By.ID, element_id).text)

    return await asyncio.to_thread(read)


async def _wait_page(driver: Any, element_id: str, needle: str, limit_s: float = 60.0) -> None:
    for _ in range(int(limit_s / 0.25)):
        if needle in await _page_text(driver, element_id):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{needle!r} never appeared in #{element_id}")


async def test_dashboard_shows_the_running_stream_and_updates(settings: Settings, dashboard: str, browser: Any) -> None:
    await _produce(settings, [_prediction(i, "c-alpha", BASE_TS) for i in range(20)], _events())
    running = RunningJob(settings, "ins-web")
    try:
        await asyncio.to_thread(browser.get, dashboard)
        assert "insights" in (await asyncio.to_thread(lambda: browser.title)).lower()
        await _wait_page(browser, "demand", "c-alpha")
        await _wait_page(browser, "unmet", "汉服")
        await _wait_page(browser, "painpoints", "电池")
        before = await _page_text(browser, "rising")
        assert "c-beta" not in before

        # New demand arrives in a later bucket; the open page must pick it up by itself.
        later = BASE_TS + 60_000
        await _produce(settings, [_prediction(i, "c-beta", later, 0.9) for i in range(40)], [])
        await _wait_page(browser, "demand", "c-beta")
        await _wait_page(browser, "rising", "c-beta")
        refreshes = await asyncio.to_thread(
            lambda: int(browser.execute_script("return document.body.dataset.refreshes"))
        )
        assert refreshes >= 2
    finally:
        await running.close()
