"""``demandstream forget-user ID``: erase one shopper's window and model state from Redis."""

from __future__ import annotations

import asyncio
import sys

import click

from stream.config import get_settings
from stream.store import StoreUnavailable


@click.command("forget-user")
@click.argument("user_id")
def forget_user_command(user_id: str) -> None:
    """Erase USER_ID's window and state (pseudonymised like the worker) and verify the deletion.

    Exit status 0: erased and verified; 1: Redis unreachable; 2: keys reappeared during the
    check (a worker is still processing the user's events): run it again.
    """
    from stream.privacy.forget import forget_user

    if not user_id.strip():
        raise click.BadParameter("the user id is empty", param_hint="USER_ID")
    settings = get_settings()
    try:
        result = asyncio.run(forget_user(settings, user_id))
    except StoreUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    mapping = "HMAC pseudonym" if settings.pseudonymize_users else "raw id: pseudonymisation is off"
    click.echo(f"deleted {result.keys_deleted} keys ({mapping}); verified erased: {'yes' if result.verified else 'no'}")
    if not result.verified:
        sys.exit(2)
