"""Fault injection: bad models promoted under a running worker are refused; the old one serves.

tests/unit/test_registry.py covers each refusal at the registry level (hash mismatch, truncated
graph, interface mismatch, traversal); tests/integration/test_worker_pipeline.py covers a
tampered file under a running worker. This adds, under a running worker, a graph whose inputs do
not match its feature spec (hashes consistent: only the interface check can tell) and a
``CURRENT`` pointer that tries path traversal.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import msgspec
from support.models import generated_histories, publish_model
from support.streams import Captured, Running, TopicReader, event_payloads, produce

from stream.contracts import Prediction
from stream.registry import ModelRegistry
from stream.registry.manifest import MANIFEST_NAME, MODEL_FILE
from stream.registry.registry import CURRENT, sha256_file


def _swap_graph_and_rehash(registry: ModelRegistry, version: str, graph_from: str) -> None:
    """Put another version's graph into ``version`` and re-hash, as a careless publisher would."""
    directory = registry.version_dir(version)
    shutil.copy2(registry.version_dir(graph_from) / MODEL_FILE, directory / MODEL_FILE)
    manifest = registry.manifest(version)
    files = {name: sha256_file(directory / name) for name in manifest.files}
    (directory / MANIFEST_NAME).write_bytes(msgspec.structs.replace(manifest, files=files).to_json())
    registry.verify_files(version)  # the hashes are fine: only the input-spec check can refuse it


async def test_wrong_input_spec_and_traversing_pointer_are_refused(settings_factory: Any) -> None:
    settings = settings_factory(model_poll_interval_s=0.1, batch_linger_ms=0)
    root = settings.model_registry
    await asyncio.to_thread(publish_model, root, "v1", seed=1)
    await asyncio.to_thread(publish_model, root, "v2", seed=2, promote=False)
    await asyncio.to_thread(publish_model, root, "w20", seed=3, promote=False, window=20)
    registry = ModelRegistry(root)
    _swap_graph_and_rehash(registry, "v2", graph_from="w20")
    histories = generated_histories(users=5, seed=12, max_len=12)
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    sent = 0

    async def versions_of_next(part: slice) -> set[str]:
        nonlocal sent
        events = [e for h in histories for e in h[part]]
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
        sent += len(events)
        values = await reader.until(lambda values: len(values) >= sent)
        return {msgspec.json.decode(v, type=Prediction).model_version for v in values[sent - len(events) :]}

    with Captured() as logs:
        running = Running(settings)
        refused = {"outcome": "refused"}
        try:
            assert await versions_of_next(slice(0, 3)) == {"v1"}

            (root / CURRENT).write_text("v2\n", encoding="utf-8")  # pointer moved without `promote`
            await running.until(
                lambda: running.metric("demandstream_worker_model_reloads_total", refused) == 1, what="refusal"
            )
            assert await versions_of_next(slice(3, 6)) == {"v1"}

            (root / CURRENT).write_text("../../../etc\n", encoding="utf-8")
            await running.until(
                lambda: any("model registry unreadable" in line for line in logs.lines), what="traversal refusal"
            )
            assert await versions_of_next(slice(6, 9)) == {"v1"}
            checks = await running.worker.readiness()
            assert checks["model"] and running.worker.model is not None and running.worker.model.version == "v1"
            # A refused version is remembered, not reloaded at every poll.
            assert running.metric("demandstream_worker_model_reloads_total", refused) == 1
        finally:
            await running.close()
            await reader.close()
    assert running.alive() is False and running.task.exception() is None
    assert any("model v2 refused, keeping v1" in line and "shape" in line for line in logs.lines)
    assert any("invalid model version name" in line for line in logs.lines)
    assert not (root.parent / "etc").exists()
