"""``demandstream models``: list, verify, promote and roll back registry versions.

A :class:`RegistryError` (a corrupt, missing or unknown version) is not caught here: the
top-level group (``tools/cli.py`` with ``tools/errors.py``) turns every ``DemandstreamError``
into one ``Error:`` line, or shows its traceback under ``demandstream --debug``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stream.config import get_settings
from stream.registry.exceptions import RegistryError
from stream.registry.model import LoadedModel
from stream.registry.registry import ModelRegistry, how_to_get_a_model

_registry_option = click.option(
    "--registry", type=click.Path(path_type=Path), default=None, help="Registry directory (default: settings)."
)


def _open(registry: Path | None) -> ModelRegistry:
    """The registry at ``--registry`` (or the settings'), refusing a path that holds none."""
    root = registry or get_settings().model_registry
    if root.exists() and not root.is_dir():
        raise RegistryError(f"{root} is a file, not a model registry directory: pass --registry DIR")
    if not root.is_dir():
        raise RegistryError(f"no model registry at {root}: {how_to_get_a_model(root)}")
    return ModelRegistry(root)


@click.group()
def models() -> None:
    """Inspect and manage the model registry."""


@models.command("list")
@_registry_option
def list_versions(registry: Path | None) -> None:
    """Versions, oldest first; the serving one is marked '*', shadows 's'; with each its test
    MRR@10 and its intent verdict (calibrated or not, AUC against the best simple rule)."""
    reg = _open(registry)
    current = reg.current_version()
    versions = reg.versions()
    if not versions:
        raise RegistryError(f"the model registry {reg.root} holds no models yet: {how_to_get_a_model(reg.root)}")
    shadows = set(reg.shadow_versions())
    for version in versions:
        try:
            metrics = reg.manifest(version).metrics
            test = metrics.get("test", {}).get("lstm", {})
            detail = f"MRR@10 {test.get('mrr@10', float('nan')):.4f}" if test else ""
            detail = "  ".join(d for d in (detail, intent_verdict(metrics.get("intent", {}))) if d)
        except RegistryError as exc:
            detail = f"unreadable: {exc}"
        mark = "*" if version == current else ("s" if version in shadows else " ")
        click.echo(f"{mark} {version}  {detail}")


def intent_verdict(intent: dict[str, Any]) -> str:
    """One phrase from the training run's intent report: calibrated or not (the contract's
    promise), and whether it ranks buyers better than the best simple rule."""
    own = intent.get("methods", {}).get("lstm")
    if not own:
        return ""
    best = intent.get("best_baseline")
    calibrated = "calibrated" if intent.get("model_calibrated") else "NOT calibrated"
    text = f"intent {calibrated} (ECE {own['ece']:.3f}), AUC {own['roc_auc']:.3f}"
    if best:
        rival = intent["methods"][best]["roc_auc"]
        text += f" {'>' if intent.get('model_beats_best_baseline') else '<='} {best} {rival:.3f}"
    return text


@models.command()
@_registry_option
@click.argument("version", required=False)
def verify(registry: Path | None, version: str | None) -> None:
    """Verify hashes and the ONNX interface of VERSION (default: the serving one)."""
    reg = _open(registry)
    version = version or reg.current_version()
    if version is None:
        raise RegistryError(f"the model registry {reg.root} has no serving model: {how_to_get_a_model(reg.root)}")
    LoadedModel.load(reg, version)  # a RegistryError becomes one line at the top-level group (tools/cli.py)
    click.echo(f"{version}: ok")


@models.command()
@_registry_option
@click.argument("version")
@click.option("--force", is_flag=True, help="Serve it even below its own baselines or for another catalogue.")
@click.option(
    "--min-live-events",
    type=click.IntRange(min=1),
    default=None,
    help="Also require VERSION's live (shadow) MRR@10 and Recall@10 to be at least the serving model's on "
    "the same sampled users, over at least this many judged events (`demandstream evaluate`).",
)
def promote(registry: Path | None, version: str, force: bool, min_live_events: int | None) -> None:
    """Serve VERSION (after verifying it and checking it against its baselines and the serving
    model's catalogue); workers pick it up without a restart."""
    reg = _open(registry)
    LoadedModel.load(reg, version)
    if not force:
        from training.promotion import check_live_promotion, check_manifest_promotion  # imported on use

        refusal = check_manifest_promotion(reg, version)
        if min_live_events is not None:
            refusal = "; ".join(r for r in (refusal, check_live_promotion(reg, version, min_live_events)) if r)
        if refusal:
            raise click.ClickException(f"not promoted: {refusal}; use --force to serve it anyway")
    reg.promote(version)
    click.echo(f"serving {version}")


@models.command()
@_registry_option
@click.argument("version")
@click.option("--off", is_flag=True, help="Stop running VERSION in shadow.")
def shadow(registry: Path | None, version: str, off: bool) -> None:
    """Run VERSION in shadow: the evaluator steps it for a sample of users and reports its live
    metrics (DEMANDSTREAM_EVALUATION_SHADOW_SAMPLE); nothing of it is published."""
    versions = _open(registry).set_shadow(version, on=not off)
    click.echo(f"shadow versions: {', '.join(versions) or 'none'}")


NOT_PROMOTED, WAITING = 3, 4  # exit codes of promote-shadow (0 promoted, 1 error)


@models.command("promote-shadow")
@_registry_option
@click.option("--min-live-events", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Judged live events a shadow needs before it can be compared.")  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep the promoted version marked as a shadow.")
@click.option("--waiting-ok", is_flag=True, help="Exit 0, not 4, when no shadow has enough events yet.")
def promote_shadow(registry: Path | None, min_live_events: int, keep: bool, waiting_ok: bool) -> None:
    """Serve the newest shadow whose live MRR@10 and Recall@10 are at least the serving model's
    over at least --min-live-events judged events: exit 0 promoted, 3 refused, 4 not enough events
    yet (or no shadow), 1 error. The second step of the retraining loop (`demandstream retrain`)."""
    from training.promotion import check_live_promotion, check_manifest_promotion  # imported on use

    reg = _open(registry)
    live, waiting, refused = reg.live_metrics(), [], []
    for version in reversed(reg.shadow_versions()):  # newest mark first
        events = live.get(version, {}).get("events", 0)
        if events < min_live_events:
            waiting.append(f"{version} has {events:.0f} of {min_live_events} live events")
            continue
        LoadedModel.load(reg, version)
        checks = (check_manifest_promotion(reg, version), check_live_promotion(reg, version, min_live_events))
        refusal = "; ".join(r for r in checks if r)
        if refusal:
            refused.append(refusal)
            continue
        reg.promote(version, reason="promote-shadow")
        if not keep:
            reg.set_shadow(version, on=False)
        click.echo(f"serving {version}")
        return
    for line in refused:
        click.echo(f"not promoted: {line}", err=True)
    for line in waiting:
        click.echo(f"waiting: {line}", err=True)
    if refused:
        raise click.exceptions.Exit(NOT_PROMOTED)
    if not waiting:
        click.echo("no shadow versions to promote", err=True)
    raise click.exceptions.Exit(0 if waiting_ok else WAITING)


@models.command()
@_registry_option
def rollback(registry: Path | None) -> None:
    """Serve the version that served before the current one."""
    version = _open(registry).rollback()
    click.echo(f"rolled back to {version}")
