"""A verified, loaded model: onnxruntime session + featurizer, never anything unpickled."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream.features import EventEncoder, Vocabulary
from stream.features.exceptions import VocabularyFormatError
from stream.registry.exceptions import ModelVerificationError
from stream.registry.manifest import (
    CATEGORY_VOCAB,
    FORMAT_VERSION,
    ITEM_VOCAB,
    MODEL_FILE,
    Manifest,
    TensorSpec,
    serving_inputs,
    serving_outputs,
)
from stream.registry.registry import ModelRegistry

log = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(int64)": "int64", "tensor(float)": "float32"}


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One batched model call: top-k category indices/scores, intent and the new LSTM state."""

    scores: np.ndarray  # (N, k) float32, one row per predicted step
    categories: np.ndarray  # (N, k) int64 vocabulary indices
    intent: np.ndarray  # (N,) float32
    h: np.ndarray  # (1, U, H) float32, one per user row
    c: np.ndarray  # (1, U, H) float32


def _check_io(
    kind: str, declared: tuple[TensorSpec, ...], expected: tuple[TensorSpec, ...], actual: list[ort.NodeArg]
) -> None:
    if declared != expected:
        raise ModelVerificationError(f"manifest {kind} {declared} differ from the serving interface {expected}")
    got = [(a.name, _ORT_TYPES.get(a.type, a.type), len(a.shape)) for a in actual]
    want = [(t.name, t.dtype, len(t.shape)) for t in expected]
    if got != want:
        raise ModelVerificationError(f"ONNX graph {kind} {got} do not match the feature spec's {want}")
    for arg, spec in zip(actual, expected, strict=True):
        for have, need in zip(arg.shape, spec.shape, strict=True):
            if isinstance(need, int) and isinstance(have, int) and have != need:
                raise ModelVerificationError(f"ONNX {kind} {arg.name} has shape {arg.shape}, expected {spec.shape}")


class LoadedModel:
    """Serves one registry version. Construct with :meth:`load`, which verifies before loading."""

    def __init__(
        self, manifest: Manifest, session: ort.InferenceSession, categories: Vocabulary, items: Vocabulary
    ) -> None:
        self.manifest = manifest
        self.version = manifest.version
        self.session = session
        self.categories = categories
        self.encoder = EventEncoder(manifest.feature_spec, categories, items)
        self.hidden = manifest.hidden
        # An item-target model ranks items; its "categories" output then holds item ids.
        self.targets = items if manifest.feature_spec.target == "item" else categories
        self._target_ids = np.asarray(["", "", *self.targets.tokens], dtype=object)

    @classmethod
    def load(cls, registry: ModelRegistry, version: str, *, threads: int = 1) -> LoadedModel:
        """Verify hashes, vocabularies and the graph's interface, then open an inference session."""
        manifest = registry.verify_files(version)
        directory = registry.version_dir(version)
        return cls.from_directory(directory, manifest, threads=threads)

    @classmethod
    def from_directory(cls, directory: Path, manifest: Manifest, *, threads: int = 1) -> LoadedModel:
        try:
            categories = Vocabulary.load(directory / CATEGORY_VOCAB)
            items = Vocabulary.load(directory / ITEM_VOCAB)
        except VocabularyFormatError as exc:
            raise ModelVerificationError(f"{directory.name}: {exc}") from exc
        if len(categories) != manifest.n_categories or len(items) != manifest.n_items:
            raise ModelVerificationError(
                f"vocabulary sizes {len(categories)}/{len(items)} differ from the manifest's "
                f"{manifest.n_categories}/{manifest.n_items}"
            )
        if manifest.format_version != FORMAT_VERSION:
            raise ModelVerificationError(
                f"{directory.name}: manifest format {manifest.format_version}, this worker serves format "
                f"{FORMAT_VERSION} (one call per micro-batch); export the model again with this version's trainer"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt graphs
            raise ModelVerificationError(f"{directory.name}: ONNX graph does not load ({exc})") from exc
        spec = manifest.feature_spec
        _check_io("inputs", manifest.inputs, serving_inputs(spec, manifest.hidden), session.get_inputs())
        _check_io("outputs", manifest.outputs, serving_outputs(manifest.top_k, manifest.hidden), session.get_outputs())
        log.info("loaded model %s (%d categories, window %d)", manifest.version, len(categories), spec.window)
        return cls(manifest, session, categories, items)

    def zero_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (1, batch, self.hidden)
        return np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)

    def step(
        self,
        steps: np.ndarray,
        lengths: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray,
        positions: np.ndarray,
        win_cat: np.ndarray,
        win_type: np.ndarray,
        win_age: np.ndarray,
    ) -> StepOutput:
        """One batched call over ``U`` users and ``N`` predicted steps.

        ``steps`` is ``(U, S, step_width)``, right-padded, with ``lengths`` ``(U,)`` valid steps
        per row; ``positions`` ``(N,)`` are flat ``row * S + step`` indices of the steps to predict
        at, and the window arrays ``(N, W)`` are those steps' pointer inputs. Outputs are ``(N, ...)``
        and each row's ``(h, c)`` after its last valid step.
        """
        scores, categories, intent, h1, c1 = self.session.run(
            None,
            {
                "steps": steps, "lengths": lengths, "h0": h0, "c0": c0, "positions": positions,
                "win_cat": win_cat, "win_type": win_type, "win_age": win_age,
            },
        )  # fmt: skip
        return StepOutput(scores, categories, intent, h1, c1)

    def category_ids(self, indices: np.ndarray) -> np.ndarray:
        """Output indices -> the contract's id strings (same shape; item ids for item models)."""
        return self._target_ids[indices]  # type: ignore[no-any-return]
