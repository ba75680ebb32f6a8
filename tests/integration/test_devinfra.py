"""The local infrastructure itself: broker, Redis, the fixtures and ``demandstream dev``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tools.devinfra.broker import TansuBroker, create_topics
from tools.devinfra.processes import pid_alive, port_accepts
from tools.devinfra.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]


def wait_until_dead(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """The pids still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        time.sleep(0.05)
    return alive


async def test_broker_creates_topics_serves_and_stops(tmp_path: Path) -> None:
    broker = TansuBroker(workdir=tmp_path)
    await broker.start()
    pid = broker.process.pid
    assert pid is not None
    try:
        created = await create_topics(broker.bootstrap, {"a.events": 3, "a.dlq": 1})
        assert sorted(created) == ["a.dlq", "a.events"]
        assert await create_topics(broker.bootstrap, {"a.events": 3}) == []  # idempotent
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        await admin.close()
        assert described["a.events"] == 3 and described["a.dlq"] == 1

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await producer.send_and_wait("a.events", b"hello", key=b"u1", partition=2)
        await producer.stop()
        consumer = AIOKafkaConsumer(
            "a.events", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        batches = await consumer.getmany(timeout_ms=5000)
        await consumer.stop()
        assert [m.value for msgs in batches.values() for m in msgs] == [b"hello"]
    finally:
        broker.stop()
    assert wait_until_dead([pid]) == []
    assert not port_accepts(broker.host, broker.port)


def test_redis_server_restarts_empty_on_the_same_port(tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        port, first_pid = server.port, server.process.pid if server.process else None
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port and server.process is not None
        assert server.process.pid != first_pid
        assert client.ping() is True
        assert client.get("k") is None  # nothing persisted
        client.close()
    assert first_pid is not None and wait_until_dead([first_pid]) == []
    assert not port_accepts(server.host, port)


INNER_TEST = '''
import json, os, time
from pathlib import Path

async def test_record(kafka_broker_process, redis_server, topics):
    # Written whole, then renamed: the outer test polls for the file and must never read it half-written.
    tmp = Path(os.environ["PID_FILE"] + ".tmp")
    tmp.write_text(json.dumps([kafka_broker_process.process.pid, redis_server.process.pid]))
    tmp.rename(os.environ["PID_FILE"])
    if os.environ.get("HANG"):
        time.sleep(120)
'''


def _inner_pytest(tmp_path: Path, hang: bool) -> tuple[subprocess.Popen[bytes], Path]:
    """A separate pytest session that uses this repo's conftest fixtures."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    pid_file = tmp_path / "pids.json"
    env = {**os.environ, "PID_FILE": str(pid_file), "HANG": "1" if hang else ""}
    argv = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
        "--basetemp", str(tmp_path / "base"), str(tmp_path / "test_inner.py"),
    ]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return proc, pid_file


def test_fixtures_leave_no_process_after_the_session(tmp_path: Path) -> None:
    proc, pid_file = _inner_pytest(tmp_path, hang=False)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output.decode()
    pids = json.loads(pid_file.read_text())
    assert len(pids) == 2
    assert wait_until_dead(pids) == []


def test_servers_die_with_a_killed_test_run(tmp_path: Path) -> None:
    proc, pid_file = _inner_pytest(tmp_path, hang=True)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.05)
        pids = json.loads(pid_file.read_text())
        assert all(pid_alive(pid) for pid in pids)
    finally:
        proc.send_signal(signal.SIGKILL)  # no teardown, no atexit: only the kernel can help
        proc.wait()
    assert wait_until_dead(pids) == []


def _dev(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DEMANDSTREAM_TOPIC_PARTITIONS": "2",
        "DEMANDSTREAM_TOPIC_EVENTS": "x.events",
    }
    return subprocess.run(
        [sys.executable, "-c", "from tools.cli import main; main()", "dev", *args,
         "--state-dir", str(state_dir)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )


async def test_dev_cli_up_status_down(tmp_path: Path) -> None:
    up = _dev(tmp_path, "up")
    assert up.returncode == 0, up.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
    )
    state = json.loads((tmp_path / "state.json").read_text())
    pids = [state["kafka"]["pid"], state["redis"]["pid"]]
    try:
        assert set(exports) == {"DEMANDSTREAM_KAFKA_BOOTSTRAP", "DEMANDSTREAM_REDIS_URL"}
        assert redis.Redis.from_url(exports["DEMANDSTREAM_REDIS_URL"]).ping() is True
        admin = AIOKafkaAdminClient(bootstrap_servers=exports["DEMANDSTREAM_KAFKA_BOOTSTRAP"])
        await admin.start()
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        await admin.close()
        for topic in ("x.events", "demand.predictions", "demand.events.dlq"):
            assert described[topic] == 2

        again = _dev(tmp_path, "up")  # already up: same servers, same exports
        assert again.returncode == 0 and again.stdout == up.stdout
        status = _dev(tmp_path, "status")
        assert status.returncode == 0 and status.stdout.count(" up") == 2
    finally:
        down = _dev(tmp_path, "down")
    assert down.returncode == 0 and down.stdout.count("stopped") == 2
    assert wait_until_dead(pids) == []
    assert _dev(tmp_path, "status").returncode == 1
