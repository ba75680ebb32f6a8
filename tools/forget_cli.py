"""``demandstream forget-user ID``: erase one shopper's window and model state from Redis."""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit, urlunsplit

import click

from stream.config import get_settings


def redacted_url(url: str) -> str:
    """``url`` without its password, fit to print.

    >>> redacted_url("redis://:s3cret@cache.internal:6380/2")
    'redis://***@cache.internal:6380/2'
    >>> redacted_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@click.command("forget-user")
@click.argument("user_id")
def forget_user_command(user_id: str) -> None:
    """Erase USER_ID's window and state (pseudonymised like the worker) and verify the deletion.

    It erases from the Redis of DEMANDSTREAM_REDIS_URL under DEMANDSTREAM_REDIS_KEY_PREFIX, with
    the worker's pseudonym settings: run it with the same settings as the workers.

    Exit status 0: erased and verified (or no data held); 1: Redis unreachable; 2: keys
    reappeared during the check (a worker is still processing the user's events): run it again.
    """
    from stream.privacy.forget import forget_user

    if not user_id.strip():
        raise click.BadParameter("the user id is empty", param_hint="USER_ID")
    settings = get_settings()
    redis = f"{redacted_url(settings.redis_url)} (key prefix {settings.redis_key_prefix!r})"
    result = asyncio.run(forget_user(settings, user_id))  # StoreUnavailable: one line, exit 1 (tools.errors)
    mapping = "HMAC pseudonym" if settings.pseudonymize_users else "raw id: pseudonymisation is off"
    if result.keys_deleted == 0 and result.verified:
        click.echo(f"no data held for this user in {redis} ({mapping}): nothing to erase")
        return
    click.echo(f"erased {result.keys_deleted} keys from {redis} ({mapping}); verified erased: "
               f"{'yes' if result.verified else 'no'}")  # fmt: skip
    if not result.verified:
        click.echo(f"{result.remaining} keys reappeared: a worker still processes this user; run it again", err=True)
        sys.exit(2)
