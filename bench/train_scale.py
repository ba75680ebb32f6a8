"""Trainer memory and throughput against data size: load, encode, baselines and a bounded number
of training steps on simulated data of each size and format, one child process per run (so each
peak RSS is that run's own). Data comes from ``demandstream simulate --bulk`` (JSON lines or
Parquet), users and items scaled with the event count (10M events: >= 1M users, >= 200k items). Prints
per run the wall time and events/s of each stage, the peak RSS, the bytes per event of the
columnar table and of the encoded arrays, and the peak RSS growth per event between sizes;
writes bench/results/train_scale.json. Minutes per million events on 2 cores::

    .venv/bin/python -m bench.train_scale --sizes 1000000 3000000 --formats parquet jsonl --steps 20 \\
        [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_results

logger = logging.getLogger(__name__)
SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}


def generate(path: Path, events: int) -> float:
    """Write ``events`` simulated events to ``path``; seconds taken."""
    # A little over 1 user per 10 events and 1 item per 40 (at most 250k): not every simulated user or
    # item draws an event, and 10M events must still hold >= 1M users and >= 200k items.
    users, items = max(100, events * 11 // 100), max(1000, min(250_000, events // 40))
    # The bulk simulation spans 9 days from its start: start 10 days ago, so no event is in the future
    # (the JSON-lines decoder, like the stream's, refuses those).
    start_ms = int(time.time() * 1000) - 10 * 86_400_000
    started = time.monotonic()
    cli = str(Path(sys.executable).parent / "demandstream")
    subprocess.run(
        [cli, "simulate", "--bulk", "--count", str(events), "--users", str(users),
         "--items", str(items), "--start-ms", str(start_ms), "--output", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.monotonic() - started


def measure(path: Path, data_format: str, steps: int, rank_queries: int) -> dict[str, Any]:
    """In this (child) process: the trainer's stages on ``path``, timed, with their peak RSS.

    The baselines are fitted (and tuned) as in training, then rank an evenly spaced sample of at
    most ``rank_queries`` test events: ranking all of them costs test events x items (a bounded
    sample, like the bounded training steps; the full report ranks all).
    """
    import itertools

    import numpy as np
    import torch

    from training.baselines import fit_baselines
    from training.histories import attach_leave_user_out, iterate_batches
    from training.model import DemandLSTM, ModelConfig
    from training.pipeline import TrainOptions, encode_stage, load_stage
    from training.priors import SparsePrior, counted_transitions
    from training.resources import StageClock, peak_rss_mb
    from training.train import TrainConfig, _loss, seed_everything

    options = TrainOptions(data=str(path), data_format=data_format, registry=path.parent,  # type: ignore[arg-type]
                           out_dir=path.parent, target="item", train=TrainConfig(progress=False))  # fmt: skip
    at_start = peak_rss_mb()  # the interpreter, numpy, torch and the trainer's modules
    clock = StageClock()
    with clock.stage("load"):
        loaded = load_stage(options)
    columns_nbytes = loaded.cleaned.columns.nbytes
    with clock.stage("encode"):
        encoded = encode_stage(options, loaded)
    with clock.stage("baselines"):
        # --rank-queries 0: only the counts the model's prior needs (no tuning, no kNN, no ranking)
        fitted, data = fit_baselines(encoded.data, tune=rank_queries > 0), encoded.data
        queries = encoded.test_queries
        if len(queries) > rank_queries:
            queries = queries[np.linspace(0, len(queries) - 1, rank_queries).astype(np.int64)]
        if len(queries):
            fitted.rank(queries)
    with clock.stage("train_steps"):
        seed_everything(7, 2)
        config = ModelConfig(len(encoded.categories), len(encoded.items), target="item")
        prior = SparsePrior.from_counts(fitted.transition_counts, fitted.popularity, config.prior_top_m)
        attach_leave_user_out(encoded.histories, prior, counted_transitions(data.target, data.period, data.starts))
        model = DemandLSTM(encoded.spec, config, prior)
        optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
        rng, trained = np.random.default_rng(7), 0
        for batch in itertools.islice(iterate_batches(encoded.histories, 6000, rng), steps):
            loss = _loss(model, batch, 0.3)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            trained += int((batch.target_period >= 0).sum())
    events = len(encoded.data)
    encoded_nbytes = sum(a.nbytes for a in (data.starts, data.user, data.ts, data.target, data.etype, data.period))
    return {
        "events": events, "users": len(encoded.histories), "items": len(encoded.items) - 2,
        "trained_positions": trained, "ranked_test_events": len(queries), "resources": clock.to_dict(events),
        "rss_at_start_mb": at_start,
        "bytes_per_event": {"columns": round(columns_nbytes / events, 1),
                            "encoded_events": round(encoded_nbytes / events, 1),
                            "histories": round(encoded.histories.nbytes / events, 1)},
    }  # fmt: skip


def _row(size: int, data_format: str, measured: dict[str, Any]) -> tuple[str, str]:
    res = measured["resources"]
    # events/s: of the file for the data stages, of trained positions for the training steps
    counts = {name: measured["events"] for name in res["stages"]} | {"train_steps": measured["trained_positions"]}
    per_stage = ", ".join(
        f"{name} {s['seconds']:.1f}s ({counts[name] / max(s['seconds'], 1e-9):,.0f} ev/s)"
        for name, s in res["stages"].items()
    )
    per_event = ", ".join(f"{k} {v} B" for k, v in measured["bytes_per_event"].items())
    return (f"{size:,} {data_format}", f"peak RSS {res['peak_rss_mb']:,.0f} MB; {per_stage}; arrays/event: {per_event}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--formats", nargs="+", choices=sorted(SUFFIX), default=["parquet"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rank-queries", type=int, default=2_000,
                        help="test events the baselines rank (0: fit the prior's counts only)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--output", default="train_scale", help="results name under bench/results/")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-format", default="parquet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        measured = measure(args.child, args.child_format, args.steps, args.rank_queries)
        sys.stdout.write(json.dumps(measured) + "\n")  # read by the parent
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="train_scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"steps": args.steps, "rank_queries": args.rank_queries,
                               "load_average_at_start": os.getloadavg(), "runs": {}}  # fmt: skip
    rows: list[tuple[str, str]] = []
    for data_format in args.formats:
        for size in args.sizes:
            path = workdir / f"events-{size}{SUFFIX[data_format]}"
            written = generate(path, size) if not path.exists() else 0.0
            out = subprocess.run([sys.executable, "-m", "bench.train_scale", "--child", str(path), "--child-format",
                                  data_format, "--steps", str(args.steps), "--rank-queries", str(args.rank_queries)],
                                 check=True, stdout=subprocess.PIPE, text=True)  # its log goes to our stderr; fmt: skip
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            measured["generate_seconds"] = round(written, 1)
            measured["load_average_after"] = os.getloadavg()
            results["runs"][f"{size}-{data_format}"] = measured
            rows.append(_row(size, data_format, measured))
            logger.info("%s: %s", *rows[-1])
        runs = sorted(((int(k.split("-")[0]), r) for k, r in results["runs"].items() if k.endswith(data_format)),
                      key=lambda kv: kv[0])  # fmt: skip
        if len(runs) > 1:
            (n0, r0), (n1, r1) = runs[0], runs[-1]
            grow = (r1["resources"]["peak_rss_mb"] - r0["resources"]["peak_rss_mb"]) * 1e6 / (n1 - n0)
            results[f"bytes_per_event_growth_{data_format}"] = round(grow, 1)
            rows.append((f"peak RSS growth ({data_format})", f"{grow:,.0f} B/event ({n0:,} -> {n1:,})"))
    write_results(args.output, results, rows)


if __name__ == "__main__":
    main()
