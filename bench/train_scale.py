"""Trainer memory and throughput against data size: load, encode, baselines and a bounded number
of training steps on simulated data of each size, one child process per size (so each peak RSS is
that size's own). Data comes from ``demandstream simulate --bulk`` (Parquet), users and items
scaled with the event count (10M events: 1M users, 200k items). Prints per size the peak RSS,
its growth per event over the smallest size, and events/s per stage; writes
bench/results/train_scale.json. Takes minutes per million events on 2 cores::

    .venv/bin/python -m bench.train_scale --sizes 100000 300000 1000000 --steps 20 [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_results

logger = logging.getLogger(__name__)


def generate(path: Path, events: int) -> float:
    """Write ``events`` simulated events to ``path``; seconds taken."""
    users, items = max(100, events // 10), max(1000, min(200_000, events // 50))
    started = time.monotonic()
    cli = str(Path(sys.executable).parent / "demandstream")
    subprocess.run(
        [cli, "simulate", "--bulk", "--count", str(events), "--users", str(users),
         "--items", str(items), "--output", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.monotonic() - started


def measure(path: Path, steps: int) -> dict[str, Any]:
    """In this (child) process: the trainer's stages on ``path``, timed, with their peak RSS."""
    import itertools

    import numpy as np
    import torch

    from training.model import DemandLSTM, ModelConfig
    from training.pipeline import TrainOptions, baselines_stage, encode_stage, load_stage
    from training.priors import SparsePrior
    from training.resources import StageClock
    from training.sequences import iterate_batches
    from training.train import TrainConfig, _loss, seed_everything

    options = TrainOptions(data=str(path), data_format="parquet", registry=path.parent, out_dir=path.parent,
                           target="item", train=TrainConfig(progress=False))  # fmt: skip
    clock = StageClock()
    with clock.stage("load"):
        loaded = load_stage(options)
    with clock.stage("encode"):
        encoded = encode_stage(options, loaded)
    with clock.stage("baselines"):
        baselines = baselines_stage(encoded)
    with clock.stage("train_steps"):
        seed_everything(7, 2)
        config = ModelConfig(len(encoded.categories), len(encoded.items), target="item")
        fitted = baselines.fitted
        prior = SparsePrior.from_counts(fitted.transition_counts, fitted.popularity, config.prior_top_m)
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
    stages = clock.to_dict(events)
    return {"events": events, "trained_positions": trained, "resources": stages}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.stdout.write(json.dumps(measure(args.child, args.steps)) + "\n")  # read by the parent
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="train_scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"steps": args.steps, "sizes": {}}
    rows: list[tuple[str, str]] = []
    for size in args.sizes:
        path = workdir / f"events-{size}.parquet"
        written = generate(path, size) if not path.exists() else 0.0
        out = subprocess.run([sys.executable, "-m", "bench.train_scale", "--child", str(path), "--steps",
                              str(args.steps)], check=True, capture_output=True, text=True)  # fmt: skip
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        measured["generate_seconds"] = round(written, 1)
        results["sizes"][str(size)] = measured
        res = measured["resources"]
        # events/s: of the file for the data stages, of trained positions for the training steps
        counts = {name: measured["events"] for name in res["stages"]} | {"train_steps": measured["trained_positions"]}
        per_stage = ", ".join(
            f"{name} {s['seconds']:.1f}s ({counts[name] / max(s['seconds'], 1e-9):,.0f} ev/s)"
            for name, s in res["stages"].items()
        )
        rows.append((f"{size:,} events", f"peak RSS {res['peak_rss_mb']:,.0f} MB; {per_stage}"))
    sizes = sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))
    if len(sizes) > 1:
        (n0, r0), (n1, r1) = sizes[0], sizes[-1]
        grow = (r1["resources"]["peak_rss_mb"] - r0["resources"]["peak_rss_mb"]) * 1e6 / (int(n1) - int(n0))
        results["bytes_per_event_growth"] = round(grow, 1)
        rows.append(("peak RSS growth", f"{grow:,.0f} B/event ({n0} -> {n1})"))
    write_results("train_scale", results, rows)


if __name__ == "__main__":
    main()
