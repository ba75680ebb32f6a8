"""``demandstream retrain``: the offline retraining job of the design, as a shadow.

It reads the events topic, keeps the last ``--days`` days of event time (counted back from the
newest event, not from the wall clock, so a replayed backlog retrains on its own last days), trains
with the usual pipeline without promoting, and, when the gate would pass the model, marks it as a
shadow: the evaluator then runs it beside the serving model, and ``models promote-shadow`` (the
second, hourly step) serves it once its live numbers hold.

Exit codes (what the CronJob's history shows): 0 shadow registered, 3 refused by the gate
(the version stays in the registry, unserved and not shadowed), 1 error.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import click
import msgspec

from stream.config import get_settings
from stream.contracts import Event
from stream.paths import check_writable_dir
from training.hyperparams import DEFAULTS

log = logging.getLogger(__name__)

REFUSED = 3
_DAY_MS = 86_400_000


def write_last_days(events: Iterable[Event], days: float, out: Path) -> tuple[int, int]:
    """Write the events of the last ``days`` days (of event time) to ``out`` as contract JSON lines;
    returns (events read, events kept). Two passes over a spill file keep memory flat."""
    encoder = msgspec.json.Encoder()
    spill = out.with_suffix(".all.jsonl")
    newest, read = 0, 0
    with spill.open("wb") as f:
        for event in events:
            f.write(encoder.encode(event) + b"\n")
            newest = max(newest, event.ts)
            read += 1
    cutoff = newest - int(days * _DAY_MS)
    decoder = msgspec.json.Decoder(Event)
    kept = 0
    with spill.open("rb") as src, out.open("wb") as dst:
        for line in src:
            if decoder.decode(line).ts > cutoff:
                dst.write(line)
                kept += 1
    spill.unlink()
    return read, kept


@click.command()
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Train on the last N days of event time in the events topic.")  # fmt: skip
@click.option("--topic", default=None, help="Topic to read (default: the events topic of the settings).")
@click.option("--registry", type=click.Path(path_type=Path), default=None, help="Model registry (default: settings).")
@click.option("--version", default=None, help="Version name (default: r<timestamp>).")
@click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True)
@click.option("--hidden", type=int, default=DEFAULTS.hidden, show_default=True)
@click.option("--window", type=int, default=DEFAULTS.window, show_default=True, help="Events the pointer reads.")
@click.option("--force", is_flag=True, help="Register the shadow even if the gate refuses it.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def retrain(
    days: float, topic: str | None, registry: Path | None, version: str | None, epochs: int, hidden: int,
    window: int, force: bool, no_progress: bool,
) -> None:  # fmt: skip
    """Retrain on the last N days of the events topic and register the result as a shadow
    (exit 0); 3 if the gate refuses it, 1 on an error."""
    settings = get_settings()
    registry = registry or settings.model_registry
    version = version or time.strftime("r%Y%m%d-%H%M%S", time.gmtime())
    check_writable_dir(registry, "model registry")
    out_dir = check_writable_dir(registry / "reports" / version, "report folder")

    from stream.registry import ModelRegistry
    from training.data.kafka import iter_kafka
    from training.pipeline import TrainOptions, run_training  # torch: only once the paths are fine
    from training.train import TrainConfig

    with tempfile.TemporaryDirectory(prefix="demandstream-retrain-") as tmp:
        data = Path(tmp) / "events.jsonl"
        read, kept = write_last_days(iter_kafka(settings, topic), days, data)
        click.echo(f"read {read} events from {topic or settings.topic_events}; {kept} in the last {days:g} days")
        if kept == 0:
            raise click.ClickException("no events to train on")
        options = TrainOptions(
            data=str(data), data_format="jsonl", registry=registry, out_dir=out_dir, window=window,
            hidden=hidden, version=version, promote=False, force=force,
            train=TrainConfig(epochs=epochs, progress=not no_progress),
        )  # fmt: skip
        outcome = run_training(options)
    if outcome is None:
        return  # a torchrun rank other than 0
    lstm = outcome.metrics["lstm"]
    click.echo(f"model {version}: MRR@10 {lstm['mrr@10']:.4f} Recall@10 {lstm['recall@10']:.4f}")
    if not (outcome.promotion.promote or force):
        click.echo(f"not registered as a shadow: {outcome.promotion.reason}", err=True)
        raise click.exceptions.Exit(REFUSED)
    shadows = ModelRegistry(registry).set_shadow(version)
    click.echo(f"shadow versions: {', '.join(shadows)} ({outcome.promotion.reason})")
