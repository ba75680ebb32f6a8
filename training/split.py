"""Train / validation / test split by time; sequences stay whole.

Every event is labelled by its own timestamp: ``ts < train_end_ms`` is train, ``ts < valid_end_ms``
is validation, the rest is test. A validation or test event is scored with *all* earlier events of
its user as history (as the stream would), but vocabularies, baselines and the model are fitted on
train-period events only.

>>> s = TimeSplit.from_fractions(0, 1000)
>>> (s.train_end_ms, s.valid_end_ms), s.period_of(799), s.period_of(800), s.period_of(950)
((800, 900), 'train', 'valid', 'test')
>>> s = TimeSplit.from_dates("2017-12-01T00:00+08:00", "2017-12-02T00:00+08:00")
>>> s.train_end_ms
1512057600000
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from training.exceptions import SplitError

Period = Literal["train", "valid", "test"]
PERIODS: Final[tuple[Period, ...]] = ("train", "valid", "test")
TRAIN: Final = 0
VALID: Final = 1
TEST: Final = 2
_DAY_MS: Final = 86_400_000


class TimeSplit(msgspec.Struct, frozen=True):
    """Period boundaries in epoch ms, and how they were chosen (recorded in metrics.json)."""

    train_end_ms: int
    valid_end_ms: int
    method: str = "explicit"

    def __post_init__(self) -> None:
        if self.train_end_ms > self.valid_end_ms:
            raise SplitError(f"train end {self.train_end_ms} is after validation end {self.valid_end_ms}")

    @classmethod
    def from_dates(cls, train_end: str, valid_end: str) -> TimeSplit:
        """Boundaries as ISO 8601 date-times; a naive one is taken as UTC."""
        return cls(_iso_to_ms(train_end), _iso_to_ms(valid_end), method=f"dates {train_end} / {valid_end}")

    @classmethod
    def from_fractions(cls, first_ts_ms: int, last_ts_ms: int, train: float = 0.8, valid: float = 0.9) -> TimeSplit:
        """Boundaries at fractions of the time range ``[first, last]``."""
        if not 0.0 <= train <= valid <= 1.0:
            raise SplitError(f"fractions must satisfy 0 <= train <= valid <= 1, got {train}, {valid}")
        span = last_ts_ms - first_ts_ms
        return cls(
            first_ts_ms + round(span * train),
            first_ts_ms + round(span * valid),
            method=f"fractions {train} / {valid}",
        )

    @classmethod
    def last_days(cls, last_ts_ms: int, *, test_days: int = 2, valid_days: int = 1, tz: tzinfo = UTC) -> TimeSplit:
        """The last ``test_days`` calendar days (in ``tz``) of the data are test, the
        ``valid_days`` before them validation, everything earlier train.

        >>> from training.data.taobao import BEIJING, TAOBAO_TS_BOUNDS_MS
        >>> s = TimeSplit.last_days(TAOBAO_TS_BOUNDS_MS[1] - 1, tz=BEIJING)
        >>> d = TimeSplit.from_dates("2017-12-01T00:00+08:00", "2017-12-02T00:00+08:00")
        >>> (s.train_end_ms, s.valid_end_ms) == (d.train_end_ms, d.valid_end_ms)
        True
        """
        last_day = datetime.fromtimestamp(last_ts_ms / 1000, tz=tz).date()
        day_end = datetime(last_day.year, last_day.month, last_day.day, tzinfo=tz) + timedelta(days=1)
        end_ms = int(day_end.timestamp() * 1000)
        return cls(
            end_ms - (test_days + valid_days) * _DAY_MS,
            end_ms - test_days * _DAY_MS,
            method=f"last days: {test_days} test, {valid_days} validation ({tz})",
        )

    def period_of(self, ts_ms: int) -> Period:
        """The period of one timestamp."""
        return PERIODS[int(self.periods(np.asarray([ts_ms], dtype=np.int64))[0])]

    def periods(self, ts_ms: NDArray[np.int64]) -> NDArray[np.int8]:
        """Vectorised: :data:`TRAIN` / :data:`VALID` / :data:`TEST` code per timestamp."""
        codes = np.full(ts_ms.shape, TEST, dtype=np.int8)
        codes[ts_ms < self.valid_end_ms] = VALID
        codes[ts_ms < self.train_end_ms] = TRAIN
        return codes

    def to_dict(self) -> dict[str, object]:
        """JSON-ready record, with the boundaries also as UTC ISO strings for humans."""
        return {
            "train_end_ms": self.train_end_ms,
            "valid_end_ms": self.valid_end_ms,
            "train_end_utc": _ms_to_iso(self.train_end_ms),
            "valid_end_utc": _ms_to_iso(self.valid_end_ms),
            "method": self.method,
        }


def _iso_to_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SplitError(f"{text!r} is not an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _ms_to_iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
