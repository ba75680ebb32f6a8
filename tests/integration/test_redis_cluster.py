"""Redis Cluster for real: 3 masters + 3 replicas (redis-server processes, ``redis-cli --cluster
create``), a worker streaming against it, and a master SIGKILLed mid-stream.

After its replica is promoted, every valid event is predicted, no window holds an event twice,
and every event is in its user's window.

Two things make this deterministic (both were why earlier versions failed in full-suite runs):

- The master is killed only once each of its replicas has acknowledged its whole replication
  offset. Redis replicates asynchronously: a write acknowledged in the last milliseconds before a
  crash may be lost by design (docs/reliability.md). Worse, a replica killed away from its master
  before its *first* sync finished (``repl-diskless-sync-delay`` defaults to 5 s, and a loaded
  machine stretches the start-up) refuses to take over for good ("Disconnected from master for
  longer than allowed"); the nodes run with that delay at 0 (``RedisServer.cluster_node``).
- Every wait asks each surviving node directly (CLUSTER NODES / CLUSTER INFO / INFO): a cluster
  client could send its own start-up commands to the dead master. A failed wait prints every
  survivor's CLUSTER NODES.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from support.models import generated_histories, publish_model
from support.streams import Running, TopicReader, event_payloads, interleaved, predicted_ids, produce

from stream.store.keys import UserKeys, decode_entry
from tools.devinfra.redis_server import RedisServer, redis_cli_binary

NODE_TIMEOUT_MS = 1000  # failure detection -> replica promotion in ~1-3 s
WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str  # "-" for a master
    slots: tuple[tuple[int, int], ...]

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _parse_nodes(text: str) -> dict[str, ClusterNode]:
    nodes: dict[str, ClusterNode] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        slots: list[tuple[int, int]] = []
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being migrated: not owned yet
                continue
            first, _, last = spec.partition("-")
            slots.append((int(first), int(last or first)))
        address = fields[1].split("@")[0]
        nodes[fields[0]] = ClusterNode(
            node_id=fields[0],
            port=int(address.rsplit(":", 1)[1]),
            flags=frozenset(fields[2].split(",")),
            master_id=fields[3],
            slots=tuple(slots),
        )
    return nodes


async def _ask(node: RedisServer, *command: Any) -> Any:
    """One command sent to this node only (no cluster routing)."""
    client = aioredis.Redis(host=node.host, port=node.port, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def _cluster_nodes(node: RedisServer) -> dict[str, ClusterNode]:
    reply = await _ask(node, "CLUSTER", "NODES")
    return _parse_nodes(reply.decode() if isinstance(reply, bytes) else str(reply))


async def _diagnostics(nodes: list[RedisServer]) -> str:
    parts = []
    for node in nodes:
        try:
            reply = await _ask(node, "CLUSTER", "NODES")
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
        except Exception as exc:  # a diagnostic must not hide the failure it explains
            text = f"({exc!r})"
        parts.append(f"--- CLUSTER NODES as seen by :{node.port}\n{text}")
    return "\n".join(parts)


async def _wait(nodes: list[RedisServer], what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if await condition():
                return
        except aioredis.RedisError:
            pass  # a node busy or restarting counts as "not yet"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}\n{await _diagnostics(nodes)}")
        await asyncio.sleep(0.05)


def _replication(info: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """master_repl_offset and the ``slaveN`` entries of INFO replication (as parsed by redis-py)."""
    replicas = [value for key, value in info.items() if key.startswith("slave") and isinstance(value, dict)]
    return int(info["master_repl_offset"]), replicas


async def _replicas_caught_up(master: RedisServer) -> bool:
    """Each replica is online and has acknowledged the master's whole replication offset."""
    offset, replicas = _replication(await _ask(master, "INFO", "replication"))
    return bool(replicas) and all(r.get("state") == "online" and int(r["offset"]) == offset for r in replicas)


async def _healthy(nodes: list[RedisServer], masters: int, *, replicated: bool) -> bool:
    """Every node says cluster_state:ok and sees ``masters`` masters serving slots (each with a
    live replica if ``replicated``: a promoted replica has none until its old master returns)."""
    for node in nodes:
        info = await _ask(node, "CLUSTER", "INFO")
        if b"cluster_state:ok" not in info:
            return False
        seen = (await _cluster_nodes(node)).values()
        serving = [n for n in seen if "master" in n.flags and n.slots and "fail" not in n.flags]
        replicas = {n.master_id for n in seen if "slave" in n.flags and "fail" not in n.flags}
        if len(serving) != masters or (replicated and any(n.node_id not in replicas for n in serving)):
            return False
    return True


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    cli = str(redis_cli_binary())
    nodes: list[RedisServer] = []
    try:
        for n in range(6):
            workdir = tmp_path / f"node{n}"
            workdir.mkdir()
            node = RedisServer.cluster_node(workdir, node_timeout_ms=NODE_TIMEOUT_MS)
            node.start()
            nodes.append(node)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def _windows(nodes: list[RedisServer], prefix: str, users: list[str]) -> dict[str, list[str]]:
    """Each user's window event ids, read from the node that owns its slot now."""
    by_port = {node.port: node for node in nodes}
    owners = [n for n in (await _cluster_nodes(nodes[0])).values() if "master" in n.flags and n.slots]
    windows: dict[str, list[str]] = {}
    for user in users:
        key = UserKeys.of(prefix, user).window
        owner = next(n for n in owners if n.owns(key_slot(key.encode())))
        entries = await _ask(by_port[owner.port], "LRANGE", key, 0, -1)
        windows[user] = [decode_entry(entry)[2] for entry in entries]
    return windows


async def test_worker_survives_a_master_killed_mid_stream(cluster: list[RedisServer], settings_factory: Any) -> None:
    await _wait(cluster, "the new cluster to be ok", lambda: _healthy(cluster, masters=3, replicated=True))
    seed = cluster[0]  # the worker's only configured address (it discovers the rest)
    settings = settings_factory(
        redis_url=seed.url.removesuffix("/0"), redis_cluster=True, batch_max_size=16, batch_linger_ms=0
    )
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    histories = generated_histories(users=24, seed=11, max_len=24)
    users = [history[0].user_id for history in histories]
    events = interleaved(histories)
    first, second = events[: len(events) // 2], events[len(events) // 2 :]

    # The victim: a master other than the seed that holds some users' windows.
    by_port = {node.port: node for node in cluster}
    topology = await _cluster_nodes(seed)
    slots = {user: key_slot(UserKeys.of(settings.redis_key_prefix, user).window.encode()) for user in users}
    victim_entry = next(
        n
        for n in sorted(topology.values(), key=lambda n: n.port)
        if "master" in n.flags and n.port != seed.port and any(n.owns(slot) for slot in slots.values())
    )
    victim = by_port[victim_entry.port]
    victim_users = [user for user, slot in slots.items() if victim_entry.owns(slot)]
    survivors = [node for node in cluster if node is not victim]

    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    running = Running(settings)
    try:
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(first))
        await reader.until(lambda values: predicted_ids(values) >= {e.event_id for e in first}, timeout_s=WAIT_S)
        await _wait(
            cluster, f"the replica of :{victim.port} to acknowledge every write", lambda: _replicas_caught_up(victim)
        )
        victim.kill()
        killed_at = time.monotonic()

        async def promoted() -> bool:
            for node in survivors:
                seen = await _cluster_nodes(node)
                if "fail" not in seen[victim_entry.node_id].flags or seen[victim_entry.node_id].slots:
                    return False
            return await _healthy(survivors, masters=3, replicated=False)

        await _wait(survivors, f"a replica of the killed master :{victim.port} to take over its slots", promoted)
        promoted_s = time.monotonic() - killed_at
        # The worker's client still has the dead master in its slot map: it must follow the failover.
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(second))
        values = await reader.until(
            lambda values: predicted_ids(values) >= {e.event_id for e in events}, timeout_s=WAIT_S
        )
        recovered_s = time.monotonic() - killed_at
        assert running.alive()
        await running.until(
            lambda: running.worker.records_done == len(events), what="every record committed", timeout_s=WAIT_S
        )
        retries = running.metric("demandstream_worker_redis_retries_total")
    finally:
        await running.close()
        await reader.close()

    assert victim_users, "the killed master held no user's window: the test would prove nothing"
    assert predicted_ids(values) == {e.event_id for e in events}
    windows = await _windows(survivors, settings.redis_key_prefix, users)
    duplicates = {user: ids for user, ids in windows.items() if len(ids) != len(set(ids))}
    assert duplicates == {}
    for history in histories:  # nothing lost: every event is in its user's window, in order
        assert windows[history[0].user_id] == [e.event_id for e in history]
    print(
        f"{len(events)} events, {len(values)} predictions, {len(victim_users)} of {len(users)} users on the killed "
        f"master, {retries:.0f} batch retries; replica promoted {promoted_s:.1f}s and every event predicted "
        f"{recovered_s:.1f}s after the kill"
    )
