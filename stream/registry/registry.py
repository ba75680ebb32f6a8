"""A directory-tree model registry.

Layout (an object store would mirror it key for key)::

    <root>/versions/<version>/{model.onnx, categories.json, items.json, manifest.json}
    <root>/CURRENT            # the serving version's name; replaced atomically (write + rename)
    <root>/history.jsonl      # one line per promotion/rollback, for `models list` and rollbacks
    <root>/SHADOW             # versions run in shadow (one per line); replaced atomically
    <root>/live.json          # the evaluator's latest online metrics per version; replaced atomically

A version directory is immutable once published: publishing writes a temporary directory and
renames it into place, so readers never see half a version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from stream.registry.exceptions import ModelVerificationError, RegistryError
from stream.registry.manifest import MANIFEST_NAME, Manifest

log = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CURRENT = "CURRENT"
HISTORY = "history.jsonl"
SHADOW = "SHADOW"
LIVE_METRICS = "live.json"


def validate_version_name(version: str) -> str:
    """Refuse anything that is not a plain name (no separators, no ``..``).

    >>> validate_version_name("v20261128-0930-abc")
    'v20261128-0930-abc'
    >>> validate_version_name("../../etc")
    Traceback (most recent call last):
    ...
    stream.registry.exceptions.RegistryError: invalid model version name '../../etc'
    """
    if not _VERSION_RE.match(version) or ".." in version:
        raise RegistryError(f"invalid model version name {version!r}")
    return version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def how_to_get_a_model(root: Path) -> str:
    """What a user without a model can do (said by ``models`` and by a worker waiting for one)."""
    return (
        f"train one with `demandstream train --data FILE --format jsonl|taobao|diginetica --registry {root}`, "
        "or serve the demo's (created by scripts/demo.sh) with DEMANDSTREAM_MODEL_REGISTRY=var/demo/models"
    )


class ModelRegistry:
    """Versions on disk plus the atomically updated ``CURRENT`` pointer."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def version_dir(self, version: str) -> Path:
        return self.versions_dir / validate_version_name(version)

    def versions(self) -> list[str]:
        """Published versions, oldest first (by manifest creation time)."""
        if not self.versions_dir.is_dir():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(names, key=lambda v: (self._created_at(v), v))

    def _created_at(self, version: str) -> str:
        try:
            return Manifest.from_json((self.version_dir(version) / MANIFEST_NAME).read_bytes()).created_at
        except Exception:  # an unreadable manifest sorts first; verify() reports it properly
            return ""

    def current_version(self) -> str | None:
        try:
            name = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return validate_version_name(name) if name else None

    def manifest(self, version: str) -> Manifest:
        path = self.version_dir(version) / MANIFEST_NAME
        try:
            return Manifest.from_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise RegistryError(f"no such model version {version!r} in {self.root}") from exc
        except Exception as exc:
            raise ModelVerificationError(f"{path}: unreadable manifest ({exc})") from exc

    def verify_files(self, version: str) -> Manifest:
        """Check the manifest and the sha256 of every file it lists (no extra, none missing)."""
        manifest = self.manifest(version)
        directory = self.version_dir(version)
        if manifest.version != version:
            raise ModelVerificationError(f"manifest names version {manifest.version!r}, directory is {version!r}")
        present = {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST_NAME}
        if present != set(manifest.files):
            raise ModelVerificationError(
                f"{version}: files {sorted(present)} do not match the manifest's {sorted(manifest.files)}"
            )
        for name, expected in manifest.files.items():
            actual = sha256_file(directory / name)
            if actual != expected:
                raise ModelVerificationError(f"{version}/{name}: sha256 {actual[:12]}… != manifest {expected[:12]}…")
        return manifest

    def publish(self, staging: Path, version: str) -> Path:
        """Move a fully written staging directory into the registry as ``version`` (atomic rename)."""
        target = self.version_dir(version)
        if target.exists():
            raise RegistryError(f"model version {version!r} already exists")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=f".{version}."))
        try:
            for item in staging.iterdir():
                shutil.copy2(item, tmp / item.name)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("published model %s", version)
        return target

    def promote(self, version: str, *, reason: str = "promote") -> None:
        """Point ``CURRENT`` at a verified version."""
        self.verify_files(version)
        previous = self.current_version()
        _atomic_write(self.root / CURRENT, (version + "\n").encode())
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "action": reason,
                 "version": version, "previous": previous}  # fmt: skip
        with (self.root / HISTORY).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        log.info("%s: CURRENT %s -> %s", reason, previous, version)

    def history(self) -> list[dict[str, str | None]]:
        try:
            lines = (self.root / HISTORY).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def rollback(self) -> str:
        """Point ``CURRENT`` back at the version served before the current one."""
        current = self.current_version()
        # Follow the promotion that installed the current version; rollback entries are skipped so
        # that repeated rollbacks keep walking back (v3 -> v2 -> v1) instead of flipping.
        for entry in reversed(self.history()):
            if entry["action"] == "promote" and entry["version"] == current and entry["previous"]:
                target = str(entry["previous"])
                self.promote(target, reason="rollback")
                return target
        raise RegistryError("nothing to roll back to")

    def shadow_versions(self) -> list[str]:
        """Versions marked to run in shadow: evaluated live on a sample of users, never published."""
        try:
            lines = (self.root / SHADOW).read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return []
        return [validate_version_name(v) for v in lines]

    def set_shadow(self, version: str, *, on: bool = True) -> list[str]:
        """Mark (or unmark) a verified version as a shadow; returns the shadow list."""
        if on:
            self.verify_files(version)
        versions = [v for v in self.shadow_versions() if v != version] + ([version] if on else [])
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / SHADOW, "".join(f"{v}\n" for v in versions).encode())
        log.info("shadow versions: %s", versions)
        return versions

    def write_live_metrics(self, metrics: dict[str, dict[str, float]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / LIVE_METRICS, json.dumps(metrics, sort_keys=True).encode())

    def live_metrics(self) -> dict[str, dict[str, float]]:
        """The evaluator's latest window per version (empty before it ran)."""
        try:
            return json.loads((self.root / LIVE_METRICS).read_bytes())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}
