"""The serving graph at item-level vocabulary sizes: ONNX file size, load time and µs/event of one
incremental step (batch of 256 users, one new event each), exported through the trainer's real
export with its parity check (<= 1e-4 or the export fails).

    .venv/bin/python -m bench.vocab_bench [--sizes 2500 50000 200000] [--reps 20]

The prior is random (``prior_top_m`` entries per row, the trainer's default), so the graph has the
shape and size a trained one of that vocabulary has. Writes bench/results/vocab_bench.json.
"""

from __future__ import annotations

import argparse
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


def _export(root: Path, n_items: int) -> Path:
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
                       parity_histories=[p for p in parity if p], extra={})  # fmt: skip
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


def measure(n_items: int, reps: int) -> dict[str, Any]:
    from stream.features import FeatureSpec

    spec = FeatureSpec(window=100, target="item")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = _export(Path(tmp), n_items)
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        load_s = time.perf_counter() - started
        feeds = _feeds(n_items + 2, spec.step_width, spec.window)
        session.run(None, feeds)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - t0)
        return {
            "targets": n_items + 2,
            "onnx_mb": round(path.stat().st_size / 1e6, 2),
            "export_and_parity_s": round(export_s, 2),
            "load_s": round(load_s, 3),
            "us_per_event_median": round(float(np.median(times)) / BATCH * 1e6, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_500, 50_000, 200_000])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {str(n): measure(n, args.reps) for n in args.sizes}
    rows = [
        (f"{r['targets']} targets", f"{r['onnx_mb']} MB, load {r['load_s']} s, {r['us_per_event_median']} µs/event "
                                    f"(batch {BATCH}), export+parity {r['export_and_parity_s']} s")
        for r in results.values()
    ]  # fmt: skip
    write_results("vocab_bench", {"batch": BATCH, "sizes": results}, rows)


if __name__ == "__main__":
    main()
