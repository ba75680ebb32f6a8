"""How the ``demandstream`` command reports a failure.

An expected failure (a missing or malformed file, an unreachable broker or Redis, an empty
registry: anything the project raises as one of its errors, or the operating system's "no such
file") becomes one line on stderr that says what is wrong and what to do, and exit status 1.
Anything else is a bug and keeps its traceback. ``demandstream --debug`` shows the traceback of
every failure.

>>> one_line(FileNotFoundError(2, "No such file or directory", "missing.csv"))
'missing.csv: No such file or directory'
>>> one_line(ValueError("first line\\n  second line"))
'first line second line'
"""

from __future__ import annotations

import importlib
from functools import cache

# The project's one exception root (stream/exceptions.py), imported only once a command has failed
# (so that the command line does not import every package to start).
_ERROR_ROOTS = ("stream.exceptions:DemandstreamError",)

# OS errors that mean "the path you gave is wrong", not "the program is wrong".
_PATH_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


@cache
def error_roots() -> tuple[type[BaseException], ...]:
    """The project's error classes whose failures are expected (a message, no traceback)."""
    roots: list[type[BaseException]] = []
    for target in _ERROR_ROOTS:
        module_name, name = target.split(":")
        roots.append(getattr(importlib.import_module(module_name), name))
    return tuple(roots)


def _invalid_settings(exc: BaseException) -> str | None:
    """One line for settings the environment got wrong, else None."""
    from pydantic import ValidationError

    from stream.config import ENV_PREFIX

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    problems = [
        f"{ENV_PREFIX}{'_'.join(map(str, error['loc'])).upper()}={error.get('input')!r}: {error['msg']}"
        for error in exc.errors()
    ]
    return "invalid settings: " + "; ".join(problems)


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure the user can fix (reported in one line) rather than a bug."""
    if isinstance(exc, _PATH_ERRORS) and exc.filename is not None:
        return True
    if isinstance(exc, error_roots()) or _invalid_settings(exc) is not None:
        return True
    # A server that does not answer, straight from its client library (e.g. the insights job's).
    return _unreachable(exc) is not None



def one_line(exc: BaseException) -> str:
    """The failure as one line of text (messages that span lines are joined), with what to do."""
    settings_problem = _invalid_settings(exc)
    if settings_problem is not None:
        text = settings_problem
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    hint = _hint(exc)
    if hint and "demandstream dev up" not in text:
        text += f" ({hint})"
    return " ".join(text.split())


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _unreachable(exc: BaseException) -> str | None:
    """"Kafka" or "Redis" when ``exc`` (or what caused it) is a connection to it that failed."""
    from aiokafka.errors import KafkaConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from stream.store.exceptions import StoreUnavailable

    for cause in _causes(exc):
        if isinstance(cause, KafkaConnectionError):
            return "Kafka"
        if isinstance(cause, StoreUnavailable | RedisConnectionError | RedisTimeoutError):
            return "Redis"
    return None


def _hint(exc: BaseException) -> str | None:
    """What to do about a server that did not answer (raised deep down, where the command is unknown)."""
    server = _unreachable(exc)
    if server is None:
        return None
    setting = "DEMANDSTREAM_KAFKA_BOOTSTRAP" if server == "Kafka" else "DEMANDSTREAM_REDIS_URL"
    return f'is {server} running? `eval "$(demandstream dev up)"` starts one locally, or set {setting} to yours'

