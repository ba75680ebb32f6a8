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
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiokafka import AIOKafkaProducer

from insights import report as rep
from insights.consumer import InsightsJob
from insights.names import Names
from insights.store import InsightsStore
from insights.web import create_app
from stream.config import Settings
from stream.contracts import CategoryScore, Event, Prediction, encode_event

BASE_TS = 1_700_000_000_000
CHROMIUM_PACKAGES = ["chromium", "chromium-driver", "fonts-noto-cjk"]
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


def _many_reviews(n: int) -> list[Event]:
    """Enough distinct phone reviews for a significant pain point (z >= 1.96, two quotable clauses)."""
    out = []
    for i in range(n):
        out.append(
            Event(
                f"rn{i}", f"rn{i}", BASE_TS + i, "review", category_id="手机", text=f"电池不耐用{i}，经常死机", rating=1
            )
        )
        out.append(
            Event(
                f"rp{i}", f"rp{i}", BASE_TS + i, "review", category_id="手机", text=f"外观漂亮{i}，屏幕清晰", rating=5
            )
        )
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


def _has_cjk_font() -> bool:
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    return "Noto Sans CJK" in fonts


def _ensure_chromium() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER) and _has_cjk_font():
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
        if result.returncode == 0 and os.path.exists(CHROMEDRIVER) and _has_cjk_font():
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


NAMES = Names({"c-alpha": "earphones (耳机)", "c-beta": "tablets (平板)"})


def rendered_fonts(driver: Any, selector: str) -> dict[str, int]:
    """Platform fonts Chromium drew the element's text with (family -> glyphs), via DevTools."""
    driver.execute_cdp_cmd("DOM.enable", {})
    driver.execute_cdp_cmd("CSS.enable", {})
    root = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, f"nothing matches {selector}"
    fonts = driver.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {f["familyName"]: int(f["glyphCount"]) for f in fonts}


def assert_chinese_rendered(driver: Any, selector: str) -> None:
    """Chinese text is drawn with a CJK font, and its glyphs are as wide as CJK glyphs are (~1 em),
    not the narrow boxes of a missing font."""
    fonts = rendered_fonts(driver, selector)
    assert any("CJK" in family and n > 0 for family, n in fonts.items()), fonts
    em, width = driver.execute_script(
        "const s = document.createElement('span'); s.style.fontSize = '20px'; s.textContent = '电池屏幕续航';"
        "document.body.appendChild(s); const w = s.getBoundingClientRect().width; s.remove(); return [20, w];"
    )
    assert 5.5 * em <= width <= 6.5 * em, width


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(settings: Settings) -> AsyncIterator[str]:
    app: web.Application = create_app(InsightsStore(settings), refresh_s=0.5, window=4, names=NAMES)
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


async def _script(driver: Any, js: str) -> Any:
    return await asyncio.to_thread(driver.execute_script, js)


async def test_dashboard_shows_the_running_stream_and_updates(settings: Settings, dashboard: str, browser: Any) -> None:
    await _produce(settings, [_prediction(i, "c-alpha", BASE_TS) for i in range(20)], _events() + _many_reviews(40))
    running = RunningJob(settings, "ins-web")
    try:
        await asyncio.to_thread(browser.get, dashboard)
        assert "insights" in (await asyncio.to_thread(lambda: browser.title)).lower()
        await _wait_page(browser, "demand", "earphones (耳机)")  # the name, with the id beside it
        assert "c-alpha" in await _page_text(browser, "demand")
        await _wait_page(browser, "unmet", "汉服")
        await _wait_page(browser, "painpoints", "电池")
        # One bucket: nothing can rise yet, and the empty table says so instead of bare headers.
        assert "No category is rising" in await _page_text(browser, "rising")
        # Every prediction has intent 0.4: the page says intent does not separate categories.
        assert "does not tell categories apart" in await _page_text(browser, "intent")
        status = await _page_text(browser, "status")
        assert "updated" in status and "predictions in window" not in status and "refresh" not in status
        await _wait_page(browser, "chart", "")
        for _ in range(200):
            if await _script(
                browser, "const i = document.querySelector('#chart img'); return !!i && i.naturalWidth > 0"
            ):
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("the demand chart never rendered")
        await asyncio.to_thread(assert_chinese_rendered, browser, "#painpoints li")

        # New demand arrives in a later bucket; the open page must pick it up by itself.
        later = BASE_TS + 60_000
        await _produce(settings, [_prediction(i, "c-beta", later, 0.9) for i in range(40)], [])
        await _wait_page(browser, "demand", "tablets (平板)")
        await _wait_page(browser, "rising", "tablets (平板)")
        assert "usual share" in await _page_text(browser, "rising")  # the lift in a sentence
        refreshes = await asyncio.to_thread(
            lambda: int(browser.execute_script("return document.body.dataset.refreshes"))
        )
        assert refreshes >= 2
    finally:
        await running.close()


async def test_dashboard_shows_model_vs_baseline_live(settings: Settings, tmp_path: Path, browser: Any) -> None:
    """The evaluator's numbers (the registry's live.json) in the "Model vs baseline, live" panel:
    the serving model against the baseline named after what the evaluator computes, a shadow
    beside the serving model on the same sampled users."""
    from support.models import publish_model

    from stream.registry import ModelRegistry

    registry = tmp_path / "models"
    publish_model(registry, "serving")
    publish_model(registry, "nightly", promote=False)
    reg = ModelRegistry(registry)
    reg.set_shadow("nightly")
    row = {"events": 5000.0, "mrr_model": 0.5229, "mrr_baseline": 0.5157, "recall_model": 0.7268,
           "recall_baseline": 0.7238, "intent_ece": 0.012}  # fmt: skip
    reg.write_live_metrics({"serving": row, "nightly": {**row, "events": 400.0, "mrr_model": 0.4623},
                            "serving@sample": {**row, "events": 400.0, "mrr_model": 0.5308}})  # fmt: skip
    app = create_app(InsightsStore(settings), refresh_s=0.5, window=4, names=NAMES, registry=registry)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        await asyncio.to_thread(browser.get, f"http://{host}:{port}/")
        await _wait_page(browser, "online", "0.5229")
        text = await _page_text(browser, "online")
        assert "MRR@10 repeat" in text  # no fitted blend saved for this version: the evaluator ranks repeat
        lines = text.splitlines()
        serving = next(line for line in lines if line.startswith("serving serving"))
        assert "5000" in serving and "0.5157" in serving and "beats the repeat baseline by 0.007" in serving
        assert any(line.startswith("nightly shadow 400 0.4623") for line in lines), lines
        assert any("shadow's users" in line and "0.5308" in line for line in lines), lines
        (registry / "baselines").mkdir()
        (registry / "baselines" / "serving.npz").write_bytes(b"")  # the trainer saved a blend
        await _wait_page(browser, "online", "MRR@10 blend")
    finally:
        await runner.cleanup()


def test_report_renders_names_charts_and_chinese(tmp_path: Path, browser: Any) -> None:
    """The offline report in a real browser: names (not ids), SVG series charts, CJK glyphs."""
    from selenium.webdriver.common.by import By

    events = []
    for hour in range(6):
        t = BASE_TS + hour * 3_600_000
        n_tablets = 5 if hour < 5 else 60  # earphones (1004) jump in the newest hour
        for i in range(n_tablets):
            events.append(Event(f"t{hour}-{i}", f"u{i}", t + i, "view", item_id="x", category_id="1004"))
        for i in range(20):
            events.append(Event(f"p{hour}-{i}", f"v{i}", t + i, "view", item_id="y", category_id="1001"))
        for i in range(40):  # enough reviews for a significant z
            text = f"电池不耐用{hour}{i}，屏幕也暗" if i % 2 else f"外观漂亮{hour}{i}，运行流畅"
            events.append(
                Event(
                    f"r{hour}-{i}", f"w{i}", t + i, "review", category_id="1001", text=text, rating=1 + 4 * (i % 2 == 0)
                )
            )
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(encode_event(e) for e in events))
    catalogue = Path(__file__).resolve().parents[2] / "tools" / "simulate" / "catalogue.json"
    inputs = rep.ReportInputs(events=path, names=Names.load(catalogue), bucket_s=3600)
    findings = rep.offline_findings(inputs)
    rep.write_report(findings, tmp_path / "out")
    browser.get((tmp_path / "out" / "report.html").as_uri())
    demand = browser.find_element(By.ID, "demand").text
    assert "phones (手机)" in demand and "earphones (耳机)" in demand
    rising = browser.find_element(By.ID, "rising").text
    assert "Demand for earphones (耳机) this hour is" in rising and "95% confidence" in rising
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) >= 2 and all(c.size["width"] > 200 for c in charts)
    assert "phones (手机)" in charts[0].text  # chart labels are text the browser draws
    pain = browser.find_element(By.CSS_SELECTOR, "table.pain").text
    assert "电池" in pain and "Fix the 电池" in pain
    assert "no sessions" not in browser.find_element(By.ID, "unmet-section").text
    assert_chinese_rendered(browser, "table.pain td b")
