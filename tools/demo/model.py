"""The demo's model: reuse the one in the demo registry, or train a small one on simulated shoppers.

Training goes through the project's own trainer (``training.pipeline.run_training``: baselines,
evaluation, ONNX export, registry, promotion), imported only here, when a model is missing, so
``stream`` does not import ``training`` (or torch) at import time. The training data is the seeded
simulator's output, so the same command reproduces the same data on any machine.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from stream.contracts import encode_event
from stream.registry import ModelRegistry
from stream.registry.manifest import FORMAT_VERSION
from tools.simulate import DEFAULT_START_MS, ShopperSimulator

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoTraining:
    """Size of the demo model and its data: small enough to train in well under a minute on 2 cores."""

    seed: int = 7
    users: int = 50
    events: int = 4_000
    epochs: int = 3
    hidden: int = 32
    window: int = 30
    top_k: int = 5  # the default catalogue has only 10 categories


def write_training_events(path: Path, config: DemoTraining) -> int:
    """Simulate ``config.events`` events (a fixed start time: the seed alone fixes them) as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    simulator = ShopperSimulator(config.seed, config.users, start_ms=DEFAULT_START_MS)
    written = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for event in itertools.islice(simulator, config.events):
            out.write(encode_event(event) + b"\n")
            written += 1
    tmp.replace(path)  # a half-written file is never mistaken for the training data
    return written


def ensure_demo_model(workdir: Path, *, retrain: bool = False, config: DemoTraining | None = None) -> str:
    """The version serving in ``workdir/models``; trains and promotes one first if there is none."""
    registry_dir = workdir / "models"
    registry = ModelRegistry(registry_dir)
    current = registry.current_version()
    if current is not None and not retrain:
        served = registry.manifest(current).format_version
        if served == FORMAT_VERSION:
            logger.info("demo model %s found in %s", current, registry_dir)
            return current
        # A workdir from an earlier release: its model cannot serve here, the demo's data makes a new one.
        logger.info(
            "demo model %s has serving format %d, workers serve %d: training a new one", current, served, FORMAT_VERSION
        )
    config = config or DemoTraining()
    data = workdir / "train.jsonl"
    count = write_training_events(data, config)
    logger.info("training the demo model on %d simulated events (%s); takes about a minute", count, data)
    started = time.monotonic()
    from training.pipeline import TrainOptions, run_training  # torch: only when a model is missing
    from training.train import TrainConfig

    outcome = run_training(
        TrainOptions(
            data=str(data),
            data_format="jsonl",
            registry=registry_dir,
            out_dir=workdir / "report",
            train=TrainConfig(epochs=config.epochs, progress=False),
            hidden=config.hidden,
            window=config.window,
            top_k=config.top_k,
            # The first demo model must serve even if it does not beat the baselines on tiny data;
            # the evaluation is still in workdir/report for whoever wants to read it.
            force=True,
        )
    )
    if outcome is None:
        raise RuntimeError("the demo trains in one process; it was started as a torchrun rank other than 0")
    logger.info(
        "trained demo model %s in %.0fs (report: %s)", outcome.version, time.monotonic() - started, workdir / "report"
    )
    version = ModelRegistry(registry_dir).current_version()
    if version is None:
        raise RuntimeError(f"training finished but no model was promoted in {registry_dir}: {outcome.promotion}")
    return version
