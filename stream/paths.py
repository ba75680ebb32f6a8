"""Checks of the paths a command will write to, made before any long work starts.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> check_writable_dir(root / "new" / "models", "model registry") == root / "new" / "models"
True
>>> (root / "file").write_text("x")
1
>>> check_writable_dir(root / "file" / "models", "model registry")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
stream.paths.PathNotWritable: model registry .../file/models: .../file is a file, not a directory
"""

from __future__ import annotations

import os
from pathlib import Path

from stream.exceptions import DemandstreamError


class PathNotWritable(DemandstreamError):
    """A directory a command must write to is a file, or sits where nothing can be created."""


def check_writable_dir(path: Path, what: str) -> Path:
    """``path`` if it is (or could be created as) a writable directory; else :class:`PathNotWritable`.

    Creates nothing: the first existing path on the way up must be a directory this process
    can write into.
    """
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f": {existing}"
        raise PathNotWritable(f"{what} {path}{where} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathNotWritable(f"{what} {path}: {existing} is not writable by this user")
    return path
