"""ONNX serving graph in isolation: µs/event of one incremental step per batch size and session
options, and where the time goes inside the graph (onnxruntime's per-node profile).

    .venv/bin/python -m bench.model_bench [--hidden 96] [--reps 40]

The model is the default size the worker benchmark serves (bench.common.export_model: the
trainer's window, hidden size and prior truncation, ~2,500 categories). Side by side in one run:
the default graph against the same model with dense (V, V) prior rows, and one incremental step
against a whole-window recompute (model time only). Logs a table and writes
bench/results/model_bench.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.common import HIDDEN, N_CATEGORIES, export_model, write_results
from stream.features import FeatureSpec
from stream.worker.stepper import group_rows

logger = logging.getLogger("bench.model_bench")
BATCH = 256


def _feeds(
    batch: int, hidden: int, spec: FeatureSpec, seed: int = 0, users: int | None = None
) -> dict[str, np.ndarray]:
    """``batch`` events, one step each for ``users`` rows (default: one user per event); with
    fewer users, events fall on users at random, as in a live micro-batch."""
    rng = np.random.default_rng(seed)
    v = N_CATEGORIES + 2
    users = users or batch
    lengths = np.ones(users, dtype=np.int64) + np.bincount(rng.integers(0, users, batch - users), minlength=users)
    width = int(lengths.max())
    positions = np.concatenate([row * width + np.arange(n) for row, n in enumerate(lengths)])
    return {
        "steps": rng.integers(1, 5, size=(users, width, spec.step_width)).astype(np.int64),
        "lengths": lengths,
        "h0": rng.standard_normal((1, users, hidden)).astype(np.float32),
        "c0": rng.standard_normal((1, users, hidden)).astype(np.float32),
        "positions": positions,
        "win_cat": rng.integers(2, v, size=(batch, spec.window)).astype(np.int64),
        "win_type": rng.integers(1, 7, size=(batch, spec.window)).astype(np.int64),
        "win_age": rng.integers(1, 12, size=(batch, spec.window)).astype(np.int64),
    }


def _ragged_feeds(lengths: np.ndarray, hidden: int, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Rows of the given lengths, one prediction each at its last step (a rebuild's shape)."""
    feeds = _feeds(len(lengths), hidden, spec)
    width = int(lengths.max())
    steps = np.repeat(feeds["steps"], width, axis=1)
    last = np.arange(len(lengths)) * width + lengths - 1
    return {**feeds, "steps": steps, "lengths": lengths, "positions": last}


def _grouped_us(session: Any, lengths: np.ndarray, hidden: int, spec: FeatureSpec, reps: int) -> float:
    """µs per row of the rows run as the worker groups them (stepper.group_rows), one call each."""
    calls = [_ragged_feeds(lengths[group], hidden, spec) for group in group_rows(lengths)]
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        for feeds in calls:
            session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return 1e6 * float(np.median(times)) / len(lengths)


def _session(path: Path, threads: int, level: ort.GraphOptimizationLevel, profile: str | None = None) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _us_per_event(session: Any, feeds: dict[str, np.ndarray], reps: int) -> float:
    for _ in range(5):
        session.run(None, feeds)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return 1e6 * float(np.median(times)) / len(feeds["win_cat"])


def _recompute_feeds(feeds: dict[str, np.ndarray], spec: FeatureSpec, hidden: int) -> dict[str, np.ndarray]:
    """The same batch as a whole-window recompute: every user's ``window`` steps from a zero state."""
    batch = len(feeds["win_cat"])
    steps = np.repeat(feeds["steps"], spec.window, axis=1)
    zeros = np.zeros((1, batch, hidden), dtype=np.float32)
    lengths = np.full(batch, spec.window, dtype=np.int64)
    last = np.arange(batch) * spec.window + spec.window - 1
    return {**feeds, "steps": steps, "lengths": lengths, "h0": zeros, "c0": zeros, "positions": last}


def main(hidden: int, reps: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ds-model-bench-"))
    export_model(workdir / "models", hidden=hidden)
    export_model(workdir / "dense", hidden=hidden, prior_top_m=N_CATEGORIES + 2)
    path = next((workdir / "models").rglob("model.onnx"))
    dense_path = next((workdir / "dense").rglob("model.onnx"))
    spec = FeatureSpec(window=100)
    full = _feeds(BATCH, hidden, spec)
    basic, every = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Side by side, alternating so that load changes hit both alike.
    sparse_us, dense_us, recompute_us = [], [], []
    sparse_session, dense_session = _session(path, 1, every), _session(dense_path, 1, every)
    recompute = _recompute_feeds(full, spec, hidden)
    for _ in range(3):
        sparse_us.append(_us_per_event(sparse_session, full, reps))
        dense_us.append(_us_per_event(dense_session, full, reps))
        recompute_us.append(_us_per_event(sparse_session, recompute, max(5, reps // 4)))
    incremental = float(np.median(sparse_us))
    comparison = {
        "sparse_priors_us": incremental,
        "dense_priors_us": float(np.median(dense_us)),
        "recompute_window_us": float(np.median(recompute_us)),
        "recompute_over_incremental": float(np.median(recompute_us)) / incremental,
    }
    options: dict[str, float] = {}
    for threads in (1, 2):
        for name, level in (("basic", basic), ("all", every)):
            options[f"threads={threads} opt={name}"] = _us_per_event(_session(path, threads, level), full, reps)
    by_batch = {b: _us_per_event(_session(path, 1, every), _feeds(b, hidden, spec), reps) for b in (1, 16, 64, BATCH)}
    # The worker's case: a micro-batch where some users have several events, as one call.
    shared = {u: _us_per_event(sparse_session, _feeds(BATCH, hidden, spec, users=u), reps) for u in (190, 100)}
    # One rebuilt window among one-step rows: padded into one call, or grouped by length.
    ragged = np.ones(200, dtype=np.int64)
    ragged[0] = spec.window
    ragged_one = _us_per_event(sparse_session, _ragged_feeds(ragged, hidden, spec), reps)
    ragged_grouped = _grouped_us(sparse_session, ragged, hidden, spec, reps)
    session = _session(path, 1, every, profile=str(workdir / "ortprof"))
    runs = 20
    for _ in range(runs):
        session.run(None, full)
    trace = json.loads(Path(session.end_profiling()).read_text())
    by_node: dict[str, float] = {}
    by_op: dict[str, float] = {}
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            us = event["dur"] / runs / BATCH
            node = event["name"].removesuffix("_kernel_time")
            op = event["args"].get("op_name", "?")
            by_node[f"{op} {node}"] = by_node.get(f"{op} {node}", 0.0) + us
            by_op[op] = by_op.get(op, 0.0) + us
    total = sum(by_op.values())
    top_ops = sorted(by_op.items(), key=lambda kv: -kv[1])[:10]
    top_nodes = sorted(by_node.items(), key=lambda kv: -kv[1])[:10]
    results = {"hidden": hidden, "categories": N_CATEGORIES + 2, "window": spec.window, "batch": BATCH,
               "side_by_side": comparison,
               "us_per_event_by_options": options, "us_per_event_by_batch": by_batch,
               "us_per_event_by_users_at_batch": shared,
               "ragged_rows_us_per_row": {"one_call": ragged_one, "grouped": ragged_grouped},
               "kernel_us_per_event": total, "by_op": dict(top_ops), "by_node": dict(top_nodes),
               "model_bytes": path.stat().st_size, "load_average": os.getloadavg()}  # fmt: skip
    rows = [
        (f"B={BATCH} step, sparse priors (default)", f"{comparison['sparse_priors_us']:.1f} µs/event"),
        (f"B={BATCH} step, dense (V, V) priors", f"{comparison['dense_priors_us']:.1f} µs/event"),
        (f"B={BATCH} recompute {spec.window} steps", f"{comparison['recompute_window_us']:.1f} µs/event"),
        ("recompute / incremental (model time)", f"{comparison['recompute_over_incremental']:.1f}x"),
        *[(f"B={BATCH} {name}", f"{us:.1f} µs/event") for name, us in options.items()],
        *[(f"B={b} threads=1 opt=all", f"{us:.1f} µs/event") for b, us in by_batch.items()],
        *[(f"B={BATCH} events of {u} users, one call", f"{us:.1f} µs/event") for u, us in shared.items()],
        (f"ragged rows (199 x 1 step + 1 x {spec.window}), one call", f"{ragged_one:.1f} µs/row"),
        (f"ragged rows, grouped by length ({len(group_rows(ragged))} calls)", f"{ragged_grouped:.1f} µs/row"),
        ("kernel time (profile), B=256", f"{total:.1f} µs/event"),
        *[(f"  op {op}", f"{us:.1f} µs/event ({100 * us / total:.0f}%)") for op, us in top_ops],
        *[(f"  node {node}", f"{us:.1f} µs/event") for node, us in top_nodes],
        ("load average (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]
    logger.info("wrote %s", write_results("model_bench", results, rows))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(args.hidden, args.reps)


if __name__ == "__main__":
    cli()
