"""The serving shortcuts of the demand network: truncated priors scattered sparsely and the joint
pointer key table compute the same distribution as the plain model, and export with them."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from support.models import generated_histories

from stream.features import FeatureSpec, Vocabulary
from training.export import build_version
from training.model import DemandLSTM, ModelConfig
from training.priors import SparsePrior

SPEC = FeatureSpec(window=12, text_tokens=3, text_buckets=256)


def _model(n_categories: int, top_m: int, seed: int = 0) -> DemandLSTM:
    torch.manual_seed(seed)
    transitions = torch.rand(n_categories, n_categories).pow(4).softmax(-1)
    transitions[:, :2] = 0.0
    popularity = torch.rand(n_categories)
    popularity[:2] = 0.0
    config = ModelConfig(n_categories, 50, hidden=16, pointer_dim=8, prior_top_m=top_m)
    prior = SparsePrior.from_rows(transitions.numpy(), (popularity / popularity.sum()).numpy(), top_m)
    model = DemandLSTM(SPEC, config, prior)
    with torch.no_grad():  # a gate that depends on the state, so every expert matters somewhere
        model.gate.weight.normal_(0, 0.5)
        for pointer in (model.short, model.long):
            pointer.query.weight.normal_(0, 0.5)
    return model.eval()


def _inputs(n: int, n_categories: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(n, 16, generator=generator)
    win_cat = torch.randint(0, n_categories, (n, SPEC.window), generator=generator)
    win_cat[:, -3:] = 0  # short windows end in padding
    win_type = torch.randint(1, 5, (n, SPEC.window), generator=generator)
    win_age = torch.randint(0, SPEC.n_age_buckets, (n, SPEC.window), generator=generator)
    return h, win_cat, win_type, win_age


def test_rows_keep_their_top_entries_only() -> None:
    model = _model(300, top_m=16)
    assert tuple(model.prior_idx.shape) == (300, 16)
    assert int((model.pop_val > 0).sum()) == 16


@pytest.mark.parametrize("top_m", [4, 16])
def test_training_reads_the_served_distribution_at_the_target(top_m: int) -> None:
    """target_log_prob (training) is the log of scores() (serving) at the target, fused or not."""
    model = _model(300, top_m=top_m)
    inputs = _inputs(64, 300)
    target = torch.randint(2, 300, (64,), generator=torch.Generator().manual_seed(3))
    target[:8] = inputs[1][:8, 1].clamp(min=2)  # some targets inside the window (pointer mass)
    with torch.no_grad():
        plain, _ = model.scores(*inputs)
        model.fuse_for_serving()
        fused, _ = model.scores(*inputs)
        model.unfuse_for_serving()
        logp = model.target_log_prob(*inputs, target)
    torch.testing.assert_close(fused, plain, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logp, torch.log(plain.gather(-1, target[:, None])[:, 0] + 1e-9), atol=1e-5, rtol=1e-5)
    totals = plain.sum(-1)  # truncated rows keep the mass of their top entries only
    assert bool(((totals > 0) & (totals <= 1 + 1e-5)).all())


def test_without_a_transition_prior_every_row_is_popularity() -> None:
    model = DemandLSTM(SPEC, ModelConfig(300, 50, hidden=16, prior_top_m=16))
    assert tuple(model.prior_idx.shape) == (300, 16)
    assert torch.equal(model.prior_idx[5], model.pop_idx)


def test_export_with_sparse_priors_passes_parity_and_ships_no_dense_prior(tmp_path: Path) -> None:
    histories = generated_histories(users=6, seed=2, max_len=30)
    categories = Vocabulary.build([e.category_id for h in histories for e in h if e.category_id] * 2)
    items = Vocabulary.build([e.item_id for h in histories for e in h if e.item_id] * 2)
    v = len(categories)
    assert v > 8, "the generated catalogue must be wider than the kept prior entries"
    model = _model(v, top_m=4)
    build_version(
        model, categories, items, version="vsparse", top_k=5, parity_histories=histories, extra={}, staging=tmp_path
    )  # raises ExportError unless stepping the ONNX graph reproduces the torch scores within 1e-4
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    constants = [attr.t for node in graph.node if node.op_type == "Constant" for attr in node.attribute]
    shapes = [tuple(tensor.dims) for tensor in [*graph.initializer, *constants]]
    assert (v, v) not in shapes, "the dense (V, V) prior must not be in the serving graph"
    assert (v, 4) in shapes, f"the prior's top entries per row are: {shapes}"
    assert any(node.op_type == "ScatterElements" for node in graph.node)


def test_candidate_top_k_equals_the_dense_top_k() -> None:
    """Scoring the experts' candidates only gives the dense distribution's top-k scores, and each
    returned index carries its dense score."""
    model = _model(300, top_m=16)
    inputs = _inputs(128, 300)
    inputs[1][:4] = 7  # a window of one repeated category: one candidate summed many times
    with torch.no_grad():
        model.fuse_for_serving()
        dense, intent = model.scores(*inputs)
        top, indices, candidate_intent = model.top_candidates(*inputs, 10)
        model.unfuse_for_serving()
    torch.testing.assert_close(top, torch.topk(dense, 10, dim=-1).values, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dense.gather(-1, indices), top, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(candidate_intent, intent)
    assert float(top[:, 0].min()) > 0


@pytest.mark.parametrize("candidates", [False, True])
def test_both_graph_kinds_export_with_parity(tmp_path: Path, candidates: bool) -> None:
    """The candidate graph passes the same export parity as the dense one (raises ExportError if not);
    the graph kind asked for is the one exported (only the candidate graph numbers runs)."""
    histories = generated_histories(users=6, seed=2, max_len=30)
    categories = Vocabulary.build([e.category_id for h in histories for e in h if e.category_id] * 2)
    items = Vocabulary.build([e.item_id for h in histories for e in h if e.item_id] * 2)
    model = _model(len(categories), top_m=4)
    build_version(
        model, categories, items, version="vkind", top_k=5, parity_histories=histories, extra={},
        staging=tmp_path, candidates=candidates,
    )  # fmt: skip
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert ("CumSum" in ops) is candidates
