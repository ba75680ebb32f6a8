"""Seeded simulator of realistic shoppers, for demos, tests and load.

Public API: :class:`ShopperSimulator` (an iterable of contract events in event-time order),
:class:`Catalogue` / :func:`default_catalogue` (categories with readable names), and
:func:`records` (Kafka records, optionally with malformed payloads for DLQ demos).
"""

from tools.simulate.catalogue import Catalogue, Category, default_catalogue
from tools.simulate.malformed import MALFORMED_KINDS, Record, records
from tools.simulate.shoppers import DEFAULT_START_MS, Behaviour, ShopperSimulator

__all__ = [
    "DEFAULT_START_MS",
    "MALFORMED_KINDS",
    "Behaviour",
    "Catalogue",
    "Category",
    "Record",
    "ShopperSimulator",
    "default_catalogue",
    "records",
]
