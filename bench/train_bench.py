"""Time ``demandstream train`` on the Taobao head (100k rows) with its default settings.

Runs the real CLI command in-process, with timers wrapped around the pipeline's stages, prints a
table (load+clean, baselines, training per epoch, export+parity, total) and writes
bench/results/train_bench.json. Takes minutes on 2 cores: run it on purpose, not in the test suite::

    .venv/bin/python -m bench.train_bench [--data PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.common import write_results

logger = logging.getLogger(__name__)
_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_DATA = _SHARED / "data/taobao_userbehavior_head100k/UserBehavior_head100k.csv"

F = TypeVar("F", bound=Callable[..., Any])


class Stages:
    """Start/end monotonic times of named calls, plus what some of them returned."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self.returned: dict[str, Any] = {}

    def wrap(self, name: str, fn: F) -> F:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            result = fn(*args, **kwargs)
            self.spans[name] = (start, time.monotonic())
            self.returned[name] = result
            return result

        return timed  # type: ignore[return-value]

    def seconds(self, name: str) -> float:
        start, end = self.spans[name]
        return end - start

    def between(self, first: str, second: str) -> float:
        """From the end of ``first`` to the start of ``second``."""
        return self.spans[second][0] - self.spans[first][1]


def run(data: Path, workdir: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    import torch

    import training.pipeline as pipeline
    from training.cli import train

    stages = Stages()
    # the pipeline module's own names: the CLI runs exactly these, timed
    for name in ("clean_events", "fit_baselines", "fit", "export_to_registry", "decide_promotion"):
        setattr(pipeline, name, stages.wrap(name, getattr(pipeline, name)))

    registry = workdir / "models"
    args = ["--data", str(data), "--format", "taobao", "--registry", str(registry), "--version", "bench"]
    args.append("--no-progress")
    started = time.monotonic()
    train.main(args, standalone_mode=False)
    total = time.monotonic() - started

    result = stages.returned["fit"]
    epochs = [{"epoch": r.epoch, "seconds": round(r.seconds, 2), "train_loss": round(r.train_loss, 4),
               "valid_mrr10": round(r.valid_mrr10, 4)} for r in result.curve]  # fmt: skip
    from stream.registry import ModelRegistry

    manifest = ModelRegistry(registry).manifest("bench")
    test = manifest.metrics["test"]
    best = max((n for n in test if n != "lstm"), key=lambda n: float(test[n]["mrr@10"] or 0))
    timings = {
        "load_clean_s": stages.seconds("clean_events"),
        "vocab_encode_baselines_s": stages.between("clean_events", "fit"),
        "fit_baselines_s": stages.seconds("fit_baselines"),
        "training_s": stages.seconds("fit"),
        "evaluate_report_s": stages.between("fit", "export_to_registry"),
        "export_parity_s": stages.seconds("export_to_registry"),
        "promotion_gate_s": stages.seconds("decide_promotion"),
        "total_s": total,
    }
    results = {
        "data": str(data),
        "command": "demandstream train --data <data> --format taobao (defaults)",
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "epochs": epochs,
        "best_epoch": result.best_epoch,
        "events": manifest.data_summary.get("events"),
        "users": manifest.data_summary.get("users"),
        "test": {"lstm": test["lstm"], best: test[best]},
        "best_baseline": best,
    }
    per_epoch = ", ".join(f"{e['seconds']:.1f}" for e in epochs)
    lstm = test["lstm"]
    rows = [
        ("load + clean", f"{timings['load_clean_s']:.1f} s"),
        ("vocab + encode + baselines", f"{timings['vocab_encode_baselines_s']:.1f} s"),
        ("  of which fit_baselines", f"{timings['fit_baselines_s']:.1f} s"),
        (f"training ({len(epochs)} epochs)", f"{timings['training_s']:.1f} s"),
        ("training per epoch (incl. valid)", f"{per_epoch} s"),
        ("evaluate + report", f"{timings['evaluate_report_s']:.1f} s"),
        ("export + parity", f"{timings['export_parity_s']:.1f} s"),
        ("promotion gate", f"{timings['promotion_gate_s']:.1f} s"),
        ("total", f"{total:.1f} s"),
        ("lstm MRR@10 / Recall@10", f"{lstm['mrr@10']:.4f} / {lstm['recall@10']:.4f}"),
        (f"{best} MRR@10 / Recall@10", f"{test[best]['mrr@10']:.4f} / {test[best]['recall@10']:.4f}"),
    ]
    return results, rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=None, help="Scratch directory (default: a temporary one).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="train-bench-", dir=args.workdir) as tmp:
        results, rows = run(args.data, Path(tmp))
    path = write_results("train_bench", results, rows)  # logs the table
    logger.info("wrote %s", path)


if __name__ == "__main__":
    cli()
