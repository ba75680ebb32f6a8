"""Shoppers' privacy: erasure of a user's stored window and state (``demandstream forget-user``)."""

from stream.privacy.forget import ForgetResult, forget_user

__all__ = ["ForgetResult", "forget_user"]
