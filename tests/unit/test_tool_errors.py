"""Which failures the command reports in one line (expected) and which keep their traceback (bugs)."""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError

from stream.paths import PathNotWritable
from stream.registry.exceptions import RegistryError
from stream.store.exceptions import StoreUnavailable
from tools.errors import error_roots, is_expected, one_line


def test_every_project_error_is_under_the_one_root() -> None:
    roots = error_roots()
    assert all(issubclass(root, BaseException) for root in roots)
    assert all(issubclass(error, roots) for error in (RegistryError, PathNotWritable))


def test_project_errors_and_bad_paths_are_expected_and_bugs_are_not() -> None:
    assert is_expected(RegistryError("no model"))
    assert is_expected(FileNotFoundError(2, "No such file or directory", "x.csv"))
    assert not is_expected(FileNotFoundError("no file name: a bug, not a user's path"))
    assert not is_expected(ValueError("min() arg is an empty sequence"))
    assert not is_expected(KeyError("k"))


def test_an_unreachable_server_gets_what_to_do() -> None:
    redis_down = StoreUnavailable("append: Redis unavailable: Error 111")
    assert "DEMANDSTREAM_REDIS_URL" in one_line(redis_down) and "demandstream dev up" in one_line(redis_down)
    try:
        raise RuntimeError("reading offsets failed") from KafkaConnectionError("Unable to bootstrap")
    except RuntimeError as exc:
        assert is_expected(exc)
        assert "is Kafka running?" in one_line(exc) and "DEMANDSTREAM_KAFKA_BOOTSTRAP" in one_line(exc)
