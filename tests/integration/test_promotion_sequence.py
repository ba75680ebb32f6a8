"""The issue's sequence through the real commands: a Taobao model serves, then a model trained on
the demo's simulated shoppers (another catalogue) must not replace it, neither from ``train`` nor
from ``models promote``, unless forced."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.registry import ModelRegistry
from tools.cli import main
from tools.demo.model import DemoTraining, write_training_events

pytestmark = pytest.mark.slow

_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_TAOBAO = _DATA / "taobao_userbehavior_head100k" / "UserBehavior_head100k.csv"


def train(*args: str) -> str:
    result = CliRunner().invoke(
        main, ["train", "--epochs", "1", "--hidden", "16", "--window", "10", "--no-progress", *args]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def test_a_demo_model_never_replaces_the_taobao_model_unless_forced(tmp_path: Path) -> None:
    taobao = tmp_path / "taobao.csv"
    with _TAOBAO.open(encoding="utf-8") as f:
        taobao.write_text("".join(islice(f, 4000)), encoding="utf-8")
    registry = tmp_path / "models"
    # The serving Taobao model is the setup, not under test: forced in whatever its numbers.
    train("--data", str(taobao), "--format", "taobao", "--registry", str(registry), "--version", "tb", "--force")
    demo = tmp_path / "train.jsonl"
    write_training_events(demo, DemoTraining(users=40, events=3000))

    output = train("--data", str(demo), "--format", "jsonl", "--registry", str(registry), "--version", "demo")
    assert "promotion: not promoted (refused:" in output
    assert "serving model tb knows only 0.0% of the categories of demo's test events" in output
    assert "different catalogues" in output
    reg = ModelRegistry(registry)
    assert reg.current_version() == "tb"

    runner = CliRunner()
    refused = runner.invoke(main, ["models", "promote", "demo", "--registry", str(registry)])
    assert refused.exit_code != 0 and "not promoted" in refused.output
    assert "serving model tb knows only 0.0% of the categories" in refused.output
    assert reg.current_version() == "tb"
    forced = runner.invoke(main, ["models", "promote", "demo", "--registry", str(registry), "--force"])
    assert forced.exit_code == 0 and reg.current_version() == "demo"
