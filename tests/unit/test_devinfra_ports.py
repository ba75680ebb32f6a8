"""free_port_pair: a port whose partner (port + offset, a Redis Cluster bus port) is free too."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tools.devinfra.exceptions import ServiceStartError
from tools.devinfra.processes import free_port_pair
from tools.devinfra.redis_server import RedisServer


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_both_ports_of_the_pair_are_free() -> None:
    for _ in range(20):
        port = free_port_pair()
        assert port + 10_000 <= 65_535
        assert _bindable(port) and _bindable(port + 10_000)


def test_a_taken_partner_port_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel first offers a port whose bus port is taken: that pick is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        taken_bus = held.getsockname()[1]
        offset = 7
        candidates = iter([taken_bus - offset, 0])  # first pick: its partner is the held port
        real_socket = socket.socket

        class Picking(real_socket):  # type: ignore[misc, valid-type]
            def bind(self, address: tuple[str, int]) -> None:
                host, port = address
                super().bind((host, next(candidates) if port == 0 else port))

        monkeypatch.setattr(socket, "socket", Picking)
        port = free_port_pair(offset=offset)
    assert port != taken_bus - offset


def test_no_pair_within_the_attempts_is_a_start_error() -> None:
    with pytest.raises(ServiceStartError, match="no free port pair"):
        free_port_pair(offset=70_000, attempts=3)  # every partner is past 65535


def test_cluster_node_uses_a_pair_and_the_failover_settings(tmp_path: Path) -> None:
    node = RedisServer.cluster_node(tmp_path, node_timeout_ms=1500)
    assert _bindable(node.port + 10_000)
    args = dict(zip(node.extra_args[::2], node.extra_args[1::2], strict=True))
    assert args["--cluster-enabled"] == "yes"
    assert args["--cluster-node-timeout"] == "1500"
    assert args["--repl-diskless-sync-delay"] == "0"
    assert args["--cluster-replica-validity-factor"] == "0"
    assert args["--cluster-config-file"] == str(tmp_path / "nodes.conf")
