"""demandstream online engine: contracts, featurizer, Redis window store, ONNX model, worker.

Nothing here does work at import time; clients connect lazily when first used.
"""

__version__ = "0.1.0"
