"""Export a trained network as the incremental ONNX serving graph, with a parity check."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from stream.contracts import Event
from stream.features import Vocabulary
from stream.features.encode import EventEncoder
from stream.registry import LoadedModel, Manifest, ModelRegistry
from stream.registry.manifest import CATEGORY_VOCAB, ITEM_VOCAB, MODEL_FILE, serving_inputs, serving_outputs
from stream.registry.registry import sha256_file
from training.exceptions import ExportError
from training.model import DemandLSTM, IncrementalStep
from training.onnx_eval import step_through_histories
from training.sequences import encode_history
from training.split import TimeSplit

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4
LENGTHS = "lengths"  # the input the export adds (see _add_sequence_lengths)


def export_onnx(model: DemandLSTM, path: Path, top_k: int, candidates: bool | None = None) -> None:
    """Write the serving graph with dynamic user, step and event axes.

    ``candidates``: score only the experts' candidates (``training/candidates.py``) instead of a
    dense vocabulary vector; ``None`` chooses by vocabulary size. Both graphs have the same inputs
    and outputs, so the worker serves either.
    """
    spec, hidden = model.spec, model.config.hidden
    graph = IncrementalStep(model, top_k, candidates).eval()
    users, steps, events = 2, 3, 4
    example = (
        torch.zeros((users, steps, spec.step_width), dtype=torch.int64),
        torch.zeros((1, users, hidden)),
        torch.zeros((1, users, hidden)),
        torch.tensor([0, 1, 3, 4]),
        torch.ones((events, spec.window), dtype=torch.int64) * 2,
        torch.ones((events, spec.window), dtype=torch.int64),
        torch.ones((events, spec.window), dtype=torch.int64),
    )
    inputs = [t.name for t in serving_inputs(spec, hidden) if t.name != LENGTHS]
    outputs = [t.name for t in serving_outputs(top_k, hidden)]
    axes: dict[str, dict[int, str]] = {name: {0: "events"} for name in [*inputs, *outputs]}
    axes["steps"] = {0: "users", 1: "steps"}
    for name in ("h0", "c0", "h1", "c1"):
        axes[name] = {1: "users"}
    # The graph looks pointer keys up; the torch reference used for the parity check computes them.
    model.fuse_for_serving()
    try:
        with torch.no_grad():
            torch.onnx.export(
                graph, example, str(path), input_names=inputs, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )  # fmt: skip
    finally:
        model.unfuse_for_serving()
    _add_sequence_lengths(path, [t.name for t in serving_inputs(spec, hidden)])


def _add_sequence_lengths(path: Path, input_order: list[str]) -> None:
    """Feed a ``lengths`` input to every LSTM node as its ``sequence_lens``.

    torch exports ``nn.LSTM`` without sequence lengths, so padded steps would move ``(h, c)``;
    with them onnxruntime returns each row's state after its own last step, which is what lets
    users with different numbers of new events share one call. Checked by the parity test.
    The graph's inputs are then put in ``input_order`` (the serving interface's).
    """
    proto = onnx.load(str(path))
    lstms = [node for node in proto.graph.node if node.op_type == "LSTM"]
    if not lstms:
        raise ExportError("exported graph has no LSTM node to give sequence lengths to")
    cast = onnx.helper.make_node("Cast", [LENGTHS], [f"{LENGTHS}_int32"], to=onnx.TensorProto.INT32)
    for node in lstms:
        while len(node.input) < 5:
            node.input.append("")
        node.input[4] = f"{LENGTHS}_int32"
    proto.graph.node.insert(0, cast)
    by_name = {tensor.name: tensor for tensor in proto.graph.input}
    by_name[LENGTHS] = onnx.helper.make_tensor_value_info(LENGTHS, onnx.TensorProto.INT64, ["users"])
    del proto.graph.input[:]
    proto.graph.input.extend(by_name[name] for name in input_order)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


@torch.no_grad()
def torch_reference(
    model: DemandLSTM, encoder: EventEncoder, events: Sequence[Event], top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k scores ``(T, k)`` and intent ``(T,)`` of the torch model over one whole history."""
    model.eval()
    hist = encode_history("parity", events, encoder, TimeSplit(0, 0))
    tensors = [torch.from_numpy(a)[None] for a in (hist.steps, hist.win_cat, hist.win_type, hist.win_age)]
    h, _ = model.hidden(tensors[0])
    probs, intent = model.scores(h[0], tensors[1][0], tensors[2][0], tensors[3][0])
    return torch.topk(probs, top_k, dim=-1).values.numpy(), intent.numpy()


def check_parity(model: DemandLSTM, loaded: LoadedModel, histories: Sequence[Sequence[Event]]) -> float:
    """Max abs difference between torch (whole sequence) and ONNX (stepped) scores and intent."""
    stepped = step_through_histories(loaded, histories)
    worst = 0.0
    for events, (scores, _cats, intent) in zip(histories, stepped, strict=True):
        ref_scores, ref_intent = torch_reference(model, loaded.encoder, events, loaded.manifest.top_k)
        worst = max(
            worst, float(np.abs(ref_scores - scores).max(initial=0)), float(np.abs(ref_intent - intent).max(initial=0))
        )
    return worst


def build_version(
    model: DemandLSTM,
    categories: Vocabulary,
    items: Vocabulary,
    *,
    version: str,
    top_k: int,
    parity_histories: Sequence[Sequence[Event]],
    extra: dict[str, Any],
    staging: Path,
    candidates: bool | None = None,
) -> Manifest:
    """Write model.onnx, vocabularies and manifest into ``staging``; fail unless parity holds
    (``candidates``: see :func:`export_onnx`)."""
    export_onnx(model, staging / MODEL_FILE, top_k, candidates)
    categories.save(staging / CATEGORY_VOCAB)
    items.save(staging / ITEM_VOCAB)
    spec, hidden = model.spec, model.config.hidden
    manifest = Manifest(
        version=version,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        files={name: sha256_file(staging / name) for name in (MODEL_FILE, CATEGORY_VOCAB, ITEM_VOCAB)},
        inputs=serving_inputs(spec, hidden),
        outputs=serving_outputs(top_k, hidden),
        feature_spec=spec,
        hidden=hidden,
        top_k=top_k,
        n_categories=len(categories),
        n_items=len(items),
        model_config=model.config.to_dict(),
        **extra,
    )
    (staging / "manifest.json").write_bytes(manifest.to_json())
    loaded = LoadedModel.from_directory(staging, manifest)
    diff = check_parity(model, loaded, parity_histories)
    log.info("ONNX parity over %d histories: max abs diff %.2e", len(parity_histories), diff)
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX parity failed: max abs difference {diff:.3e} > {PARITY_TOLERANCE}")
    return manifest


def export_to_registry(
    registry: ModelRegistry, model: DemandLSTM, categories: Vocabulary, items: Vocabulary, **kwargs: Any
) -> Manifest:
    """Build a version in a temporary directory and publish it (not promoted)."""
    with tempfile.TemporaryDirectory(prefix="demandstream-export-") as tmp:
        manifest = build_version(model, categories, items, staging=Path(tmp), **kwargs)
        registry.publish(Path(tmp), manifest.version)
    return manifest
