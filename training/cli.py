"""``demandstream train``: the offline job from a data file (or the events topic) to the registry."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from stream.config import get_settings
from stream.paths import check_writable_dir
from training.data.load import DATA_FORMATS
from training.hyperparams import DEFAULTS  # torch-free

log = logging.getLogger(__name__)


@click.command()
@click.option(
    "--data", "data", required=True, help="Data file, or a topic name for --format kafka ('' = events topic)."
)
@click.option("--format", "data_format", type=click.Choice(DATA_FORMATS), required=True, help="Input format.")
@click.option("--target", type=click.Choice(["category", "item"]), default="category", show_default=True)
@click.option("--registry", type=click.Path(path_type=Path), default=None, help="Model registry (default: settings).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where metrics.json and report.md go (default: <registry>/reports/<version>).",
)
@click.option(
    "--split-dates",
    nargs=2,
    default=None,
    metavar="TRAIN_END VALID_END",
    help="ISO date-times ending train and validation.",
)
@click.option(
    "--split-fractions", nargs=2, type=float, default=None, metavar="TRAIN VALID", help="Fractions of the time range."
)
@click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="Peak learning rate (one-cycle).")
@click.option("--hidden", type=int, default=DEFAULTS.hidden, show_default=True)
@click.option("--window", type=int, default=DEFAULTS.window, show_default=True, help="Events the pointer reads.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--version", default=None, help="Version name (default: a timestamp).")
@click.option("--force", is_flag=True, help="Promote even if worse than the serving model.")
@click.option("--no-promote", is_flag=True, help="Publish the version without promoting it.")
@click.option("--strict", is_flag=True, help="Fail on the first malformed row instead of skipping it.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option(
    "--max-bad-rows", type=click.IntRange(min=0), default=1000, show_default=True,
    help="Stop when more malformed rows than this are skipped (each is logged with file and line).",
)  # fmt: skip
def train(
    data: str, data_format: str, target: str, registry: Path | None, out_dir: Path | None,
    split_dates: tuple[str, str] | None, split_fractions: tuple[float, float] | None, epochs: int,
    lr: float, hidden: int, window: int, seed: int, version: str | None, force: bool, no_promote: bool,
    strict: bool, no_progress: bool, max_bad_rows: int,
) -> None:  # fmt: skip
    """Train on behaviour data, compare with baselines, export to the registry, gate promotion."""
    import time

    registry = registry or get_settings().model_registry
    version = version or time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
    # Training takes minutes: a path it cannot read or write must fail now, not at the end.
    if data_format != "kafka" and not Path(data).is_file():
        what = "is a directory, not a file" if Path(data).is_dir() else "does not exist"
        raise click.ClickException(f"--data {data} {what}")
    check_writable_dir(registry, "model registry")
    out_dir = check_writable_dir(out_dir or registry / "reports" / version, "report folder (--out)")

    from training.pipeline import TrainOptions, run_training  # torch: only once the paths are fine
    from training.train import TrainConfig

    options = TrainOptions(
        data=data, data_format=data_format, registry=registry,  # type: ignore[arg-type]
        out_dir=out_dir, target=target,  # type: ignore[arg-type]
        split_dates=split_dates or None, split_fractions=split_fractions or None, window=window,
        hidden=hidden, version=version, promote=not no_promote, force=force, strict=strict, max_bad_rows=max_bad_rows,
        train=TrainConfig(epochs=epochs, lr=lr, seed=seed, progress=not no_progress),
    )  # fmt: skip
    outcome = run_training(options)
    if outcome is None:
        return  # a torchrun rank other than 0: rank 0 reports
    lstm, best = (
        outcome.metrics["lstm"],
        max((m for n, m in outcome.metrics.items() if n != "lstm"), key=lambda m: float(m["mrr@10"] or 0)),
    )
    click.echo(f"model {outcome.version}: MRR@10 {lstm['mrr@10']:.4f} Recall@10 {lstm['recall@10']:.4f} "
               f"(best baseline MRR@10 {best['mrr@10']:.4f} Recall@10 {best['recall@10']:.4f})")  # fmt: skip
    if outcome.intent.get("methods", {}).get("lstm"):
        own, best = outcome.intent["methods"]["lstm"], outcome.intent["best_baseline"]
        rival = outcome.intent["methods"].get(best, {}) if best else {}
        click.echo(f"intent: AUC {own['roc_auc']} Brier {own['brier']} ECE {own['ece']} "
                   f"({'calibrated' if outcome.intent['model_calibrated'] else 'NOT calibrated'}; "
                   f"best baseline {best} AUC {rival.get('roc_auc')} Brier {rival.get('brier')})")  # fmt: skip
    click.echo(f"metrics: {outcome.report.metrics_json}")
    click.echo(f"report:  {outcome.report.report_md}")
    promoted = outcome.promotion.promote and not no_promote
    click.echo(f"promotion: {'promoted' if promoted else 'not promoted'} ({outcome.promotion.reason})")
    click.echo(f"took {outcome.seconds:.0f}s")
