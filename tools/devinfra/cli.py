"""``demandstream dev up|down|status``: a local broker and Redis that outlive the command.

``up`` starts both detached, creates the topics named in the settings, records the processes in
``var/dev/state.json`` (git-ignored) and prints shell exports, so ``eval "$(demandstream dev up)"``
points every later command at them. ``down`` stops what the state file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from tools.devinfra.exceptions import DevInfraError, StateFileError
from tools.devinfra.processes import kill_group, pid_alive

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


def default_state_dir() -> Path:
    """``var/dev`` at the repository root (``/var/`` is git-ignored)."""
    return Path(__file__).resolve().parents[2] / "var" / "dev"


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One detached server started by ``dev up``."""

    name: str
    pid: int
    port: int
    binary: str


@dataclass(frozen=True, slots=True)
class DevState:
    kafka: ServiceRecord
    redis: ServiceRecord

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def exports(self) -> str:
        """Shell lines that point demandstream at these servers."""
        return (
            f"export DEMANDSTREAM_KAFKA_BOOTSTRAP={self.kafka_bootstrap}\n"
            f"export DEMANDSTREAM_REDIS_URL={self.redis_url}"
        )

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(state_dir / STATE_FILE)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, state_dir: Path) -> DevState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(kafka=ServiceRecord(**raw["kafka"]), redis=ServiceRecord(**raw["redis"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"unreadable state file {path}: {exc}") from exc


def service_alive(record: ServiceRecord) -> bool:
    """Alive and still the binary we started (guards against a recycled pid)."""
    if not pid_alive(record.pid):
        return False
    # The executable, not the command line: redis-server rewrites its process title.
    try:
        executable = Path(f"/proc/{record.pid}/exe").resolve(strict=True)
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return executable == Path(record.binary).resolve()


def stop_service(record: ServiceRecord) -> bool:
    """Stop one recorded server's process group; False when it was not running."""
    if not service_alive(record):
        return False
    kill_group(record.pid)
    return True


def _start_services(state_dir: Path, kafka_port: int, redis_port: int) -> DevState:
    from stream.config import get_settings
    from tools.devinfra.broker import TansuBroker, create_topics
    from tools.devinfra.redis_server import RedisServer

    settings = get_settings()
    broker = TansuBroker(kafka_port or None, workdir=state_dir, detached=True)
    redis_server = RedisServer(redis_port or None, workdir=state_dir, detached=True)
    try:
        asyncio.run(broker.start())
        redis_server.start()
        topics = (
            settings.topic_events,
            settings.topic_predictions,
            settings.topic_dlq,
        )
        asyncio.run(
            create_topics(
                broker.bootstrap,
                dict.fromkeys(topics, settings.topic_partitions),
                replication=settings.topic_replication,
            )
        )
    except BaseException:
        broker.stop()
        redis_server.stop()
        raise
    assert broker.process.pid is not None and redis_server.process is not None
    assert redis_server.process.pid is not None
    return DevState(
        kafka=ServiceRecord("tansu", broker.process.pid, broker.port, broker.process.argv[0]),
        redis=ServiceRecord(
            "redis-server", redis_server.process.pid, redis_server.port, str(redis_server.binary)
        ),
    )


_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_state_dir,
    show_default="var/dev in the repository",
    help="Where the state file and server logs live.",
)


@click.group()
def dev() -> None:
    """Start/stop a local tansu broker and a private Redis (no Docker needed)."""


@dev.command()
@_state_dir_option
@click.option("--kafka-port", type=int, default=0, help="Broker port (0 = a free one).")
@click.option("--redis-port", type=int, default=0, help="Redis port (0 = a free one).")
def up(state_dir: Path, kafka_port: int, redis_port: int) -> None:
    """Start both servers (if not running), create the topics, print shell exports."""
    state = DevState.load(state_dir)
    if state is not None and service_alive(state.kafka) and service_alive(state.redis):
        logger.info("already running (state in %s)", state_dir)
        click.echo(state.exports())
        return
    if state is not None:  # half-alive from an earlier run: clear it before starting afresh
        stop_service(state.kafka)
        stop_service(state.redis)
    try:
        state = _start_services(state_dir, kafka_port, redis_port)
    except DevInfraError as exc:
        raise click.ClickException(str(exc)) from exc
    state.save(state_dir)
    logger.info(
        "broker %s, redis %s; stop with: demandstream dev down",
        state.kafka_bootstrap,
        state.redis_url,
    )
    click.echo(state.exports())


@dev.command()
@_state_dir_option
def down(state_dir: Path) -> None:
    """Stop the servers started by ``dev up``."""
    try:
        state = DevState.load(state_dir)
    except StateFileError as exc:
        raise click.ClickException(str(exc)) from exc
    if state is None:
        click.echo("nothing running")
        return
    for record in (state.kafka, state.redis):
        outcome = "stopped" if stop_service(record) else "was not running"
        click.echo(f"{record.name} (pid {record.pid}): {outcome}")
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()


@dev.command()
@_state_dir_option
def status(state_dir: Path) -> None:
    """Show whether the servers are running; exit 1 when any is not."""
    try:
        state = DevState.load(state_dir)
    except StateFileError as exc:
        raise click.ClickException(str(exc)) from exc
    if state is None:
        click.echo("not running (no state file)")
        sys.exit(1)
    alive = {record.name: service_alive(record) for record in (state.kafka, state.redis)}
    click.echo(f"tansu        {state.kafka_bootstrap:<28} {'up' if alive['tansu'] else 'down'}")
    click.echo(f"redis-server {state.redis_url:<28} {'up' if alive['redis-server'] else 'down'}")
    if not all(alive.values()):
        sys.exit(1)
