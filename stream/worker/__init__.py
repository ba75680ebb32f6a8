"""The stream worker: consumes events, keeps per-user windows and model state, predicts demand."""

from stream.worker.exceptions import CodecError, NoModelError, WorkerError
from stream.worker.service import Worker

__all__ = ["CodecError", "NoModelError", "Worker", "WorkerError"]
