"""Save the fitted blend baseline for the online evaluator (``stream/evaluation/blend.py``).

The blend is the best offline baseline; to compare the model with it live, the evaluator needs its
fitted parts: the tuned parameters, the training popularity and the transition matrix (CSR arrays,
so the stream reads them with numpy alone).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from stream.evaluation.blend import baseline_path
from stream.features import Vocabulary
from training.baselines import FittedBaselines

log = logging.getLogger(__name__)


def save_live_baseline(registry_root: Path, version: str, fitted: FittedBaselines, targets: Vocabulary) -> Path:
    """Write ``<registry>/baselines/<version>.npz`` (replaced atomically) and return its path."""
    path = baseline_path(registry_root, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    transitions = sp.csr_matrix(fitted.transitions)
    tokens = ["", ""] + [targets.token(i) for i in range(2, len(targets))]
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(
        tmp, tokens=np.array(tokens, dtype=np.str_), popularity=np.asarray(fitted.popularity, dtype=np.float64),
        indptr=transitions.indptr, indices=transitions.indices, data=transitions.data,
        params=np.array(json.dumps(fitted.params())),
    )  # fmt: skip
    tmp.replace(path)
    log.info("saved the blend baseline of %s to %s", version, path)
    return path
