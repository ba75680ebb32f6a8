"""Fuzzed input through a real running worker (a `demandstream worker` subprocess).

10,000 Hypothesis-generated hostile payloads (test_fuzz_strategies.py: truncated JSON, wrong
types, NaN/Infinity, huge strings and arrays, deep nesting, invalid UTF-8, unknown types,
timestamps far off, oversized messages, random bytes, tombstones) mixed with 800 valid but
unfriendly events. Every invalid record must reach the DLQ with a reason and its exact source
position and bytes, every valid one must get its prediction, the process must stay up, and its
RSS must not keep growing between the two halves of the stream.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
from support.models import publish_model
from support.streams import TopicReader, dead_letters, predicted_ids, produce_located, rss_bytes, worker_env
from test_fuzz_strategies import hostile_mix

from stream.contracts import Prediction
from stream.contracts.predictions import DLQ_PAYLOAD_PREFIX_BYTES

INVALID, VALID = 10_000, 800
RSS_GROWTH_LIMIT = 1.20  # second half vs first half of the same amount of work


async def test_hostile_payloads_through_a_running_worker(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory(batch_max_size=256, batch_linger_ms=20)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    mix = await asyncio.to_thread(hostile_mix, INVALID, VALID, random_seed=20261128)
    kinds = collections.Counter(label.split(":")[0] for label, _ in mix)
    assert sum(n for kind, n in kinds.items() if kind != "valid") >= INVALID and kinds["valid"] == VALID

    log_path = tmp_path / "worker.log"
    command = [str(Path(sys.executable).parent / "demandstream"), "worker"]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)
    predictions = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    dlq = TopicReader(settings.kafka_bootstrap, settings.topic_dlq)
    invalid_at: dict[tuple[int, int], bytes] = {}
    valid_ids: set[str] = set()
    rss: list[int] = []
    try:
        half = len(mix) // 2
        for part in (mix[:half], mix[half:]):
            keys = [(label.encode() if label.startswith("valid") else None) for label, _ in part]
            located = await produce_located(
                settings.kafka_bootstrap,
                settings.topic_events,
                [(key or b"hostile", raw) for key, (_, raw) in zip(keys, part, strict=True)],
            )
            for (label, raw), where in zip(part, located, strict=True):
                if label.startswith("valid:"):
                    valid_ids.add(label.removeprefix("valid:"))
                else:
                    invalid_at[where] = raw or b""
            await predictions.until(lambda values: predicted_ids(values) >= valid_ids)
            await dlq.until(lambda values: len(values) >= len(invalid_at))
            assert worker.poll() is None, f"the worker died:\n{log_path.read_text()[-3000:]}"
            rss.append(rss_bytes(worker.pid))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        finally:
            if worker.poll() is None:
                worker.kill()
            await predictions.close()
            await dlq.close()
    assert worker.returncode == 0, log_path.read_text()[-3000:]

    letters = dead_letters(dlq.values)
    found = {(d.source_partition, d.source_offset): d for d in letters}
    assert len(found) == len(letters), "a record went to the DLQ twice"
    assert set(found) == set(invalid_at)
    for where, letter in found.items():
        assert letter.reason.strip() and letter.code and letter.source_topic == settings.topic_events
        raw = invalid_at[where]  # a bounded prefix travels, with the whole value's length and hash
        assert base64.b64decode(letter.payload_b64) == raw[:DLQ_PAYLOAD_PREFIX_BYTES]
        assert letter.payload_bytes == len(raw) and letter.payload_sha256 == hashlib.sha256(raw).hexdigest()
    assert predicted_ids(predictions.values) == valid_ids
    for value in predictions.values:
        prediction = msgspec.json.decode(value, type=Prediction)
        assert prediction.demand and 0.0 <= prediction.purchase_intent <= 1.0, prediction
    print(f"worker RSS after each half: {rss[0] >> 20} MiB, {rss[1] >> 20} MiB")
    assert rss[1] <= rss[0] * RSS_GROWTH_LIMIT, f"RSS grew from {rss[0] >> 20} MiB to {rss[1] >> 20} MiB"
    codes = collections.Counter(d.code for d in letters)
    assert {"oversize", "bad_utf8", "malformed_json", "bad_field", "unknown_type", "ts_out_of_range"} <= set(codes)
