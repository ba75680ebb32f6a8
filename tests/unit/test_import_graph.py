"""The engine stands alone: nothing in ``stream`` imports the trainer, the insights or the tools.

Every import statement counts, also those inside functions or under ``TYPE_CHECKING``: the worker
image ships without ``training`` and a lazy import would only fail there, at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
FORBIDDEN_FROM_ENGINE = ("training", "insights", "tools")


def imported_modules(source: str) -> set[str]:
    """Every module an import statement in ``source`` names (relative imports excluded)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _top_level(module: str) -> str:
    return module.split(".")[0]


def test_the_walk_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from training.data import BadRows\n"
        "def f():\n    import tools.cli\n    from insights import report\n"
    )
    assert {"training.data", "tools.cli", "insights"} <= imported_modules(source)


def test_stream_imports_no_trainer_insights_or_tools() -> None:
    modules = sorted((ROOT / "stream").rglob("*.py"))
    assert len(modules) > 20  # the walk does find the engine's modules
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in imported_modules(path.read_text(encoding="utf-8"))
        if _top_level(name) in FORBIDDEN_FROM_ENGINE
    }
    assert not offending, sorted(offending)


def test_training_and_insights_do_not_import_the_tools() -> None:
    # The tools sit above every other package: an import the other way would make a cycle.
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for package in ("training", "insights")
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path.read_text(encoding="utf-8"))
        if _top_level(name) == "tools"
    }
    assert not offending, sorted(offending)
