"""`demandstream demo` as a user runs it: a real subprocess starting its own broker, Redis and worker.

The demo's model is published beforehand (tests/support/models.py) so these runs take seconds; the
path that trains a model when the registry is empty has its own (slow) test.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from support.models import publish_model

from stream.registry import ModelRegistry
from stream.registry.manifest import FORMAT_VERSION, MANIFEST_NAME
from tools.demo.model import DemoTraining, ensure_demo_model
from tools.devinfra.processes import pid_alive

DEMANDSTREAM = Path(sys.executable).parent / "demandstream"
INFRA_LINE = re.compile(r"tansu pid (\d+) at \S+, redis-server pid (\d+) at")
WAIT_S = 120.0


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    publish_model(tmp_path / "models", "v1", seed=1)
    return tmp_path


def demo_command(workdir: Path, *args: str) -> list[str]:
    return [str(DEMANDSTREAM), "demo", "--workdir", str(workdir), "--rate", "200", "--users", "40",
            "--interval", "0.5", *args]  # fmt: skip


def infra_pids(stderr: str) -> list[int]:
    match = INFRA_LINE.search(stderr)
    assert match, f"the demo did not report its servers:\n{stderr[-3000:]}"
    return [int(match.group(1)), int(match.group(2))]


def assert_nothing_left(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)  # a child reaped a moment after its parent returned
    assert not [pid for pid in pids if pid_alive(pid)], "tansu or redis-server outlived the demo"


def test_demo_runs_for_its_duration_shows_predictions_and_leaves_nothing_running(workdir: Path) -> None:
    done = subprocess.run(demo_command(workdir, "--duration", "6"), capture_output=True, text=True, timeout=WAIT_S)

    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    # Plain periodic lines (stdout is not a terminal): counters, then users' demand.
    assert re.search(r"model v1 \| sent \d+ .*\| predictions [1-9]\d* ", out), out[-2000:]
    assert re.search(r"^  user \S+: .+ \d\.\d\d, .+\| purchase intent \d\.\d\d \| history \d+$", out, re.M), out
    summary = out[out.index("demo summary") :]
    sent = int(re.search(r"events sent: (\d+) valid", summary).group(1))  # type: ignore[union-attr]
    predicted = int(re.search(r"predictions: (\d+)", summary).group(1))  # type: ignore[union-attr]
    assert sent > 0 and predicted > 0
    assert predicted <= sent
    assert re.search(r"dead letters: [1-9]", summary), summary  # the default 2% malformed reached the DLQ
    assert "end-to-end latency" in summary
    assert_nothing_left(infra_pids(done.stderr))


def test_ctrl_c_stops_the_demo_cleanly_after_live_predictions(workdir: Path) -> None:
    proc = subprocess.Popen(demo_command(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        selector = selectors.DefaultSelector()
        assert proc.stdout is not None
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + WAIT_S
        while not re.search(r"^  user \S+: ", seen, re.M):
            assert time.monotonic() < deadline and proc.poll() is None, f"no prediction shown:\n{seen[-2000:]}"
            if selector.select(timeout=0.5):
                seen += proc.stdout.readline()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "demo summary" in out
    assert_nothing_left(infra_pids(err))


@pytest.mark.slow
def test_an_empty_demo_registry_gets_a_trained_promoted_model_that_is_then_reused(tmp_path: Path) -> None:
    config = DemoTraining(users=30, events=2_500, epochs=1)
    version = ensure_demo_model(tmp_path, config=config)

    registry = ModelRegistry(tmp_path / "models")
    assert registry.current_version() == version
    registry.verify_files(version)  # hashes of the exported files match the manifest
    assert (tmp_path / "train.jsonl").read_bytes().count(b"\n") == 2_500
    assert ensure_demo_model(tmp_path, config=config) == version  # reused, not retrained
    assert registry.versions() == [version]

    # A model of an older serving format (a workdir from an earlier release) is replaced.
    manifest_path = registry.version_dir(version) / MANIFEST_NAME
    manifest_path.write_bytes(msgspec.structs.replace(registry.manifest(version), format_version=1).to_json())
    newer = ensure_demo_model(tmp_path, config=config)
    assert newer != version and registry.current_version() == newer
    assert registry.manifest(newer).format_version == FORMAT_VERSION
