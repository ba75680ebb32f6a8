"""Time ``demandstream train`` on the Taobao head (100k rows) with its default settings.

Runs the real CLI command in-process and reads back what the trainer itself records in
``metrics.json`` (``resources``: wall time and peak RSS per stage, events/s per epoch), plus the
process's CPU time (user + system), which a busy shared machine does not inflate the way it
inflates wall time. Prints a table and writes bench/results/train_bench[_item].json. Takes minutes
on 2 cores: run it on purpose, not in the test suite::

    .venv/bin/python -m bench.train_bench [--target category|item] [--data PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_results

logger = logging.getLogger(__name__)
_SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_DATA = _SHARED / "data/taobao_userbehavior_head100k/UserBehavior_head100k.csv"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(data: Path, workdir: Path, target: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    import torch

    from training.cli import train

    registry, out = workdir / "models", workdir / "report"
    args = ["--data", str(data), "--format", "taobao", "--target", target, "--registry", str(registry),
            "--out", str(out), "--version", "bench", "--no-progress"]  # fmt: skip
    started, cpu0 = time.monotonic(), _cpu_s()
    train.main(args, standalone_mode=False)
    total, cpu = time.monotonic() - started, _cpu_s() - cpu0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    methods = {name: m["metrics"] for name, m in metrics["methods"].items()}
    best = max((n for n in methods if n != "lstm"), key=lambda n: float(methods[n]["mrr@20"] or 0))
    resources = metrics["resources"]
    results = {
        "data": str(data),
        "command": f"demandstream train --data <data> --format taobao --target {target} (defaults)",
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "wall_s": round(total, 1),
        "cpu_s": round(cpu, 1),
        "resources": resources,
        "training_curve": metrics["training_curve"],
        "data_summary": metrics["data_summary"],
        "test": methods,
        "best_baseline_by_mrr20": best,
    }
    lstm = methods["lstm"]
    rows = [(name, f"{stage['seconds']:.1f} s (peak RSS {stage['peak_rss_mb']:.0f} MB)")
            for name, stage in resources["stages"].items()]  # fmt: skip
    rows += [(f"epoch {e['epoch']}", f"{e['seconds']:.1f} s, {e['events_per_s']:.0f} events/s")
             for e in metrics["training_curve"]]  # fmt: skip
    rows += [
        ("total wall / CPU", f"{total:.1f} s / {cpu:.1f} s"),
        ("peak RSS", f"{resources['peak_rss_mb']:.0f} MB"),
    ]
    for name in ("lstm", *sorted(n for n in methods if n != "lstm")):
        values = " / ".join(f"{methods[name][k]:.4f}" for k in ("mrr@10", "recall@10", "mrr@20", "recall@20"))
        rows.append((f"{name} MRR@10/R@10/MRR@20/R@20", values))
    rows.append((f"lstm vs {best} MRR@20", f"{lstm['mrr@20'] - methods[best]['mrr@20']:+.4f}"))
    return results, rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--target", choices=["category", "item"], default="category")
    parser.add_argument("--workdir", type=Path, default=None, help="Scratch directory (default: a temporary one).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="train-bench-", dir=args.workdir) as tmp:
        results, rows = run(args.data, Path(tmp), args.target)
    name = "train_bench" if args.target == "category" else f"train_bench_{args.target}"
    path = write_results(name, results, rows)  # logs the table
    logger.info("wrote %s", path)


if __name__ == "__main__":
    cli()
