"""Starting the tools' Kafka clients, with an unreachable broker reported once and clearly."""

from __future__ import annotations

import logging
from typing import Protocol

from tools.exceptions import BrokerUnreachable


class _Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_client(client: _Client, bootstrap: str) -> None:
    """``await client.start()``; a broker that does not answer raises :class:`BrokerUnreachable`.

    The client is stopped before raising (a consumer that failed to start still holds a client
    that would be reported as unclosed at exit), and aiokafka's own "Unable connect" ERROR line
    is held back during the start: the raised error says the same, with what to do.
    """
    from aiokafka.errors import KafkaError

    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        await client.start()
    except (KafkaError, OSError) as exc:
        await client.stop()
        raise BrokerUnreachable(bootstrap, exc) from exc
    finally:
        aiokafka_log.setLevel(level)
