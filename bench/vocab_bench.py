"""The serving graph at item-level vocabulary sizes: ONNX file size, load time and µs/event of one
incremental step (batch of 256 users, one new event each), exported through the trainer's real
export with its parity check (<= 1e-4 or the export fails), for both graph kinds: the dense
scatter + top-k and the candidate top-k (``training/candidates.py``), timed in alternating rounds
on the same feeds, with the largest difference of their outputs. ``--profile`` adds onnxruntime's
op-by-op profile (µs per event by op type) of each graph.

    nice -n 10 .venv/bin/python -m bench.vocab_bench [--sizes 2500 10000 50000] [--reps 10] [--rounds 5] [--profile]

The prior is random (``prior_top_m`` entries per row, the trainer's default), so the graph has the
shape and size a trained one of that vocabulary has. Writes bench/results/vocab_bench.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import scipy.sparse as sp

from bench.common import HIDDEN, N_CATEGORIES, shopper_events, write_results

logger = logging.getLogger("bench.vocab_bench")
BATCH = 256


def _export(root: Path, n_items: int, candidates: bool) -> Path:
    import torch

    from stream.features import FeatureSpec, Vocabulary
    from stream.registry import ModelRegistry
    from training.export import export_to_registry
    from training.model import DemandLSTM, ModelConfig
    from training.priors import SparsePrior

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = ModelConfig(N_CATEGORIES + 2, n_items + 2, target="item")
    v, m = config.n_targets, config.prior_top_m
    rows = np.repeat(np.arange(2, v), m)
    counts = sp.csr_matrix((rng.random(len(rows)), (rows, rng.integers(2, v, len(rows)))), shape=(v, v))
    prior = SparsePrior.from_counts(counts, rng.random(v), m)
    model = DemandLSTM(FeatureSpec(window=100, target="item"), config, prior)
    categories = Vocabulary([f"c{i}" for i in range(N_CATEGORIES)])
    items = Vocabulary([f"i{i}" for i in range(n_items)])
    history = shopper_events(60, users=3, seed=5)
    parity = [[e for e in history if e.user_id == u] for u in ("user0", "user1", "user2")]
    registry = ModelRegistry(root)
    export_to_registry(registry, model, categories, items, version="v", top_k=20,
                       parity_histories=[p for p in parity if p], extra={}, candidates=candidates)  # fmt: skip
    return root / "versions" / "v" / "model.onnx"


def _feeds(v: int, step_width: int, window: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "steps": rng.integers(1, 5, size=(BATCH, 1, step_width)).astype(np.int64),
        "lengths": np.ones(BATCH, dtype=np.int64),
        "h0": rng.standard_normal((1, BATCH, HIDDEN)).astype(np.float32),
        "c0": rng.standard_normal((1, BATCH, HIDDEN)).astype(np.float32),
        "positions": np.arange(BATCH, dtype=np.int64),
        "win_cat": rng.integers(2, v, size=(BATCH, window)).astype(np.int64),
        "win_type": rng.integers(1, 7, size=(BATCH, window)).astype(np.int64),
        "win_age": rng.integers(1, 12, size=(BATCH, window)).astype(np.int64),
    }


def _session(path: Path, profile_prefix: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_profile(path: Path, feeds: dict[str, np.ndarray], reps: int, prefix: str) -> dict[str, float]:
    """µs per event by op type over ``reps`` runs (onnxruntime's own profiler, top 12)."""
    session = _session(path, prefix)
    for _ in range(reps):
        session.run(None, feeds)
    trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    by_op: dict[str, float] = {}
    for entry in trace:
        op = entry.get("args", {}).get("op_name")
        if entry.get("cat") == "Node" and op and entry["name"].endswith("_kernel_time"):
            by_op[op] = by_op.get(op, 0.0) + entry["dur"]
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:12]
    return {op: round(us / reps / BATCH, 2) for op, us in top}


def measure(n_items: int, reps: int, rounds: int, profile: bool) -> dict[str, Any]:
    from stream.features import FeatureSpec

    spec = FeatureSpec(window=100, target="item")
    out: dict[str, Any] = {"targets": n_items + 2}
    with tempfile.TemporaryDirectory() as tmp:
        sessions, paths = {}, {}
        for kind in ("dense", "candidates"):
            started = time.perf_counter()
            paths[kind] = _export(Path(tmp) / kind, n_items, kind == "candidates")
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            sessions[kind] = _session(paths[kind])
            out[kind] = {
                "onnx_mb": round(paths[kind].stat().st_size / 1e6, 2),
                "export_and_parity_s": round(export_s, 2),
                "load_s": round(time.perf_counter() - started, 3),
            }
        feeds = _feeds(n_items + 2, spec.step_width, spec.window)
        results = {kind: session.run(None, feeds) for kind, session in sessions.items()}
        # Scores of the top-k and intent; indices may differ only among equal scores.
        out["max_abs_diff"] = float(
            max(np.abs(a - b).max() for i, (a, b) in enumerate(zip(*results.values(), strict=True)) if i != 1)
        )
        times: dict[str, list[float]] = {kind: [] for kind in sessions}
        for _ in range(rounds):  # alternating, so load changes hit both kinds alike
            for kind, session in sessions.items():
                for _ in range(reps):
                    t0 = time.perf_counter()
                    session.run(None, feeds)
                    times[kind].append(time.perf_counter() - t0)
        for kind in sessions:
            out[kind]["us_per_event_median"] = round(float(np.median(times[kind])) / BATCH * 1e6, 1)
            if profile:
                out[kind]["op_us_per_event"] = op_profile(paths[kind], feeds, reps, str(Path(tmp) / kind / "prof"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_500, 50_000, 200_000])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {str(n): measure(n, args.reps, args.rounds, args.profile) for n in args.sizes}
    rows = []
    for r in results.values():
        for kind in ("dense", "candidates"):
            k = r[kind]
            rows.append(
                (
                    f"{r['targets']} targets {kind}",
                    f"{k['onnx_mb']} MB, load {k['load_s']} s, "
                    f"{k['us_per_event_median']} µs/event (batch {BATCH}), "
                    f"export+parity {k['export_and_parity_s']} s",
                )
            )
            if "op_us_per_event" in k:
                rows.append((f"{r['targets']} targets {kind} ops", str(k["op_us_per_event"])))
        rows.append((f"{r['targets']} targets max |dense - candidates|", f"{r['max_abs_diff']:.2e}"))  # fmt: skip
    write_results("vocab_bench", {"batch": BATCH, "sizes": results}, rows)


if __name__ == "__main__":
    main()
