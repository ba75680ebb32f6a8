"""``demandstream models``: list, verify, promote and roll back registry versions."""

from __future__ import annotations

from pathlib import Path

import click

from stream.config import get_settings
from stream.registry.exceptions import RegistryError
from stream.registry.model import LoadedModel
from stream.registry.registry import ModelRegistry

_registry_option = click.option(
    "--registry", type=click.Path(path_type=Path), default=None, help="Registry directory (default: settings)."
)


def _open(registry: Path | None) -> ModelRegistry:
    return ModelRegistry(registry or get_settings().model_registry)


@click.group()
def models() -> None:
    """Inspect and manage the model registry."""


@models.command("list")
@_registry_option
def list_versions(registry: Path | None) -> None:
    """Versions, oldest first; the serving one is marked with '*'."""
    reg = _open(registry)
    current = reg.current_version()
    for version in reg.versions():
        try:
            test = reg.manifest(version).metrics.get("test", {}).get("lstm", {})
            detail = f"MRR@10 {test.get('mrr@10', float('nan')):.4f}" if test else ""
        except RegistryError as exc:
            detail = f"unreadable: {exc}"
        click.echo(f"{'*' if version == current else ' '} {version}  {detail}")


@models.command()
@_registry_option
@click.argument("version", required=False)
def verify(registry: Path | None, version: str | None) -> None:
    """Verify hashes and the ONNX interface of VERSION (default: the serving one)."""
    reg = _open(registry)
    version = version or reg.current_version()
    if version is None:
        raise click.ClickException("the registry has no current model")
    try:
        LoadedModel.load(reg, version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{version}: ok")


@models.command()
@_registry_option
@click.argument("version")
@click.option("--force", is_flag=True, help="Serve it even below its own baselines or for another catalogue.")
def promote(registry: Path | None, version: str, force: bool) -> None:
    """Serve VERSION (after verifying it and checking it against its baselines and the serving
    model's catalogue); workers pick it up without a restart."""
    reg = _open(registry)
    try:
        LoadedModel.load(reg, version)
        if not force:
            from training.promotion import check_manifest_promotion  # the gate's rules, imported on use

            refusal = check_manifest_promotion(reg, version)
            if refusal:
                raise click.ClickException(f"not promoted: {refusal}; use --force to serve it anyway")
        reg.promote(version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"serving {version}")


@models.command()
@_registry_option
def rollback(registry: Path | None) -> None:
    """Serve the version that served before the current one."""
    try:
        version = _open(registry).rollback()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"rolled back to {version}")
