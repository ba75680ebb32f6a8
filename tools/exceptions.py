"""Errors raised by the command-line tools themselves (not by the engine they drive)."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class ToolError(DemandstreamError):
    """Base class of the tools' own errors: a command cannot do what was asked as given."""


class BrokerUnreachable(ToolError):
    """The Kafka bootstrap servers did not answer."""

    def __init__(self, bootstrap: str, cause: BaseException) -> None:
        from aiokafka.errors import KafkaConnectionError

        # A refused connection says nothing more than its type; an auth or protocol error does.
        why = type(cause).__name__ if isinstance(cause, KafkaConnectionError) else f"{type(cause).__name__}: {cause}"
        super().__init__(
            f"cannot reach Kafka at {bootstrap} ({why}): start a local broker with "
            '`eval "$(demandstream dev up)"`, or set DEMANDSTREAM_KAFKA_BOOTSTRAP to yours'
        )
