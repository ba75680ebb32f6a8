"""The settings object: environment parsing, validation, and its documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.config import ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_reads_typed_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMANDSTREAM_BATCH_MAX_SIZE", "512")
    monkeypatch.setenv("DEMANDSTREAM_MODEL_REGISTRY", "/srv/models")
    monkeypatch.setenv("DEMANDSTREAM_KAFKA_SASL_PASSWORD", "s3cret")
    s = Settings()
    assert s.batch_max_size == 512
    assert str(s.model_registry) == "/srv/models"
    assert s.kafka_sasl_password is not None and "s3cret" not in repr(s)


def test_refuses_inconsistent_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMANDSTREAM_PSEUDONYMIZE_USERS", "true")
    with pytest.raises(ValidationError, match="USER_HMAC_KEY"):
        Settings()
    monkeypatch.delenv("DEMANDSTREAM_PSEUDONYMIZE_USERS")
    monkeypatch.setenv("DEMANDSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="SASL_MECHANISM"):
        Settings()


def test_refuses_out_of_range_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMANDSTREAM_BATCH_MAX_SIZE", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_configuration_doc_is_generated_from_the_code() -> None:
    from stream.config_doc import render_settings_doc

    hint = "run: python -m stream.config_doc > docs/configuration.md"
    assert DOC.read_text(encoding="utf-8") == render_settings_doc(), hint


def test_every_setting_is_documented_and_every_documented_variable_exists() -> None:
    documented = set(re.findall(r"`(DEMANDSTREAM_[A-Z0-9_]+)`", DOC.read_text(encoding="utf-8")))
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from docs/configuration.md"
    assert documented - fields == set(), "docs/configuration.md names variables that do not exist"
