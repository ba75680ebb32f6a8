"""HMAC pseudonymisation of user keys."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from stream.config import Settings
from stream.worker.pseudonym import Pseudonymizer


def test_disabled_keeps_the_user_id() -> None:
    assert Pseudonymizer.from_settings(Settings(_env_file=None))("user-1") == "user-1"  # type: ignore[call-arg]


def test_enabled_is_hmac_sha256_and_hides_the_key() -> None:
    settings = Settings(_env_file=None, pseudonymize_users=True, user_hmac_key=SecretStr("s3cret"))  # type: ignore[call-arg]
    pseudo = Pseudonymizer.from_settings(settings)
    expected = hmac.new(b"s3cret", b"user-1", hashlib.sha256).hexdigest()
    assert pseudo("user-1") == expected
    assert pseudo("user-2") != expected
    assert "s3cret" not in repr(pseudo)


def test_different_keys_give_unlinkable_keys() -> None:
    assert Pseudonymizer(b"a")("u") != Pseudonymizer(b"b")("u")
