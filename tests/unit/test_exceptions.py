"""One exception root: every error class of every package's exceptions module is a DemandstreamError."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from stream.exceptions import DemandstreamError

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_error_derives_from_the_root() -> None:
    modules = sorted(
        path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
        for package in ("stream", "training", "insights", "tools")
        for path in (ROOT / package).rglob("exceptions.py")
    )
    assert len(modules) >= 8, modules
    errors = [
        cls
        for name in modules
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == name
    ]
    assert len(errors) >= 20
    assert [cls for cls in errors if not issubclass(cls, DemandstreamError)] == []
