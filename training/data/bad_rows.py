"""What a loader does with a malformed row: raise at once (strict) or skip and count.

>>> sink = BadRows(strict=False)
>>> sink.record(DataFormatError("f.csv", 3, "bad type"))
>>> sink.count, [str(e) for e in sink.examples]
(1, ['f.csv:3: bad type'])
>>> BadRows(strict=True).record(DataFormatError("f.csv", 3, "bad type"))
Traceback (most recent call last):
...
training.data.exceptions.DataFormatError: f.csv:3: bad type
"""

from __future__ import annotations

import logging
from collections import Counter

from training.data.exceptions import DataFormatError, TooManyBadRowsError

logger = logging.getLogger(__name__)


class BadRows:
    """Collects malformed rows of one loading run.

    ``strict`` raises the first :class:`DataFormatError`; otherwise rows are counted (by source),
    the first ``keep_examples`` are kept for the report, and ``max_bad`` (if set) stops a run whose
    input is mostly garbage rather than silently training on what is left.
    """

    def __init__(
        self, *, strict: bool = True, keep_examples: int = 20, max_bad: int | None = None
    ) -> None:
        self.strict = strict
        self.keep_examples = keep_examples
        self.max_bad = max_bad
        self.count = 0
        self.by_source: Counter[str] = Counter()
        self.examples: list[DataFormatError] = []

    def record(self, error: DataFormatError) -> None:
        """Raise ``error`` in strict mode, else count it (and keep it if among the first few)."""
        if self.strict:
            raise error
        self.count += 1
        self.by_source[error.source] += 1
        if len(self.examples) < self.keep_examples:
            self.examples.append(error)
        # Every skipped row is named (file and line) up to the limit, so a user can fix them all
        # in one pass; without a limit only the kept examples are, not a flood.
        if self.count <= (self.max_bad if self.max_bad is not None else self.keep_examples):
            logger.warning("skipping malformed row: %s", error)
        if self.max_bad is not None and self.count > self.max_bad:
            raise TooManyBadRowsError(f"more than {self.max_bad} malformed rows; last: {error}")
