"""A worker started before any model exists (a fresh checkout, a Kubernetes roll-out before the
first training) waits instead of crashing: alive, not ready, saying how to get a model, and it
serves once a model is promoted, without a restart.

The worker is the real ``demandstream worker`` in a subprocess, probed over its HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from support.models import generated_histories, publish_model
from support.streams import event_payloads, predictions_until, predicts_all, produce, worker_env

from tools.devinfra.processes import free_port

WAIT_S = 60.0


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _until(probe: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            result = probe()
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # not up yet, or busy loading
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)


async def test_a_worker_without_a_model_waits_then_serves_the_first_promoted_one(
    settings_factory: Any, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_factory(http_port=port, model_poll_interval_s=0.3, model_registry=tmp_path / "empty-registry")
    log_path = tmp_path / "worker.log"
    command = [str(Path(sys.executable).parent / "demandstream"), "worker"]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)
    readyz, healthz = f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}/healthz"
    try:
        status, body = await _until(lambda: _get(readyz), "the endpoint answers")
        assert status == 503 and body["ready"] is False and body["checks"]["model"] is False
        assert _get(healthz)[0] == 200  # alive: a liveness probe must not restart it
        said = await _until(lambda: "no servable model" in log_path.read_text(), "the worker says what is missing")
        assert said
        text = log_path.read_text()
        assert "demandstream train" in text and "var/demo/models" in text and "Traceback" not in text
        await asyncio.sleep(1.0)
        assert worker.poll() is None and _get(readyz)[0] == 503  # still waiting, still not ready

        publish_model(settings.model_registry, "v1")  # promoted: CURRENT -> v1
        status, body = await _until(lambda: (lambda r: r if r[0] == 200 else None)(_get(readyz)), "ready")
        assert body["model_version"] == "v1" and all(body["checks"].values())

        events = generated_histories(users=3, seed=4, max_len=6)[0]
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
        await predictions_until(settings, predicts_all(events))  # it serves, same process
        assert worker.poll() is None

        # These events are from 2023: backfill, counted apart from the live latency histogram;
        # and every one of them was checked against the model's vocabularies.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            samples = {
                family.name + sample.name.removeprefix(family.name): sample.value
                for family in text_string_to_metric_families(response.read().decode())
                for sample in family.samples
                if not sample.labels or sample.labels.get("field") == "category"
            }
        assert samples["demandstream_worker_predictions_backfill_total"] == len(events)
        assert samples["demandstream_worker_e2e_latency_seconds_count"] == 0
        with_category = sum(1 for event in events if event.category_id is not None)
        assert samples["demandstream_worker_vocab_checked_total"] == with_category > 0
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert code == 0, log_path.read_text()[-3000:]
