"""The statistics behind the rankings, as pure functions on plain numbers.

* :func:`rate_change` — is a category's demand share rising against its own trailing baseline?
  Conditional test of two Poisson rates (recent vs baseline, each normalised by the total demand
  of its window) plus a conservative lift: the lower 95% bound of the rate ratio.
* :func:`conversion_gap` — is a search term converting below the site rate? Wilson upper bound
  of its conversion rate against the pooled rate, turned into "missed conversions".
* :func:`weighted_log_odds` — which words distinguish negative from positive reviews? Weighted
  log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008).

>>> round(rate_change(40, 10, 100, 100).z, 2)
4.24
>>> round(wilson_upper(0, 100), 4)
0.0263
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Z_95_ONE_SIDED = 1.6448536269514722


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal.

    >>> round(normal_sf(1.6448536269514722), 3)
    0.05
    """
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class RateChange:
    """How a rate moved between a baseline window and a recent window."""

    recent: float
    baseline: float
    lift: float  # share in recent / share in baseline (smoothed)
    lift_lower: float  # one-sided 95% lower bound of ``lift``
    z: float  # conditional binomial z-score; > 1.645 is significant at 5% one-sided
    p_value: float


def rate_change(recent: float, baseline: float, recent_total: float, baseline_total: float) -> RateChange:
    """Compare a category's demand in two windows, each normalised by its window's total.

    Demand counts are sums of predicted probabilities, i.e. expected numbers of shoppers who want
    the category, and are treated as Poisson. Given ``n = recent + baseline``, under "no change in
    share" ``recent ~ Binomial(n, p0)``, ``p0 = recent_total / (recent_total + baseline_total)``;
    ``z`` is that test's normal approximation. The lift uses +0.5 smoothing (so zero baselines do
    not divide by zero) and its lower bound comes from the log-ratio's delta-method variance.
    Normalising by totals means a site-wide traffic surge lifts no category by itself.
    """
    if recent < 0 or baseline < 0 or recent_total <= 0 or baseline_total <= 0:
        raise ValueError("counts must be >= 0 and window totals > 0")
    n = recent + baseline
    p0 = recent_total / (recent_total + baseline_total)
    z = (recent - n * p0) / math.sqrt(n * p0 * (1 - p0)) if n > 0 else 0.0
    r, b = recent + 0.5, baseline + 0.5
    log_lift = math.log(r / recent_total) - math.log(b / baseline_total)
    se = math.sqrt(1 / r + 1 / b)
    return RateChange(
        recent=recent,
        baseline=baseline,
        lift=math.exp(log_lift),
        lift_lower=math.exp(log_lift - Z_95_ONE_SIDED * se),
        z=z,
        p_value=normal_sf(z),
    )


def wilson_upper(successes: float, trials: float, z: float = Z_95_ONE_SIDED) -> float:
    """Upper bound of the Wilson score interval of a proportion (1.0 when there are no trials)."""
    if trials <= 0:
        return 1.0
    p = min(max(successes / trials, 0.0), 1.0)
    denom = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + spread) / denom)


@dataclass(frozen=True, slots=True)
class ConversionGap:
    """A search term's conversion against the pooled rate."""

    searches: float
    conversions: float
    rate: float
    rate_upper: float  # one-sided 95% Wilson upper bound
    missed: float  # searches * (pooled rate - rate_upper), 0 when not significantly below


def conversion_gap(conversions: float, searches: float, pooled_rate: float) -> ConversionGap:
    """Score a term "searched often, rarely converted".

    ``missed`` is how many more of its searches would have converted at the pooled rate, using
    the optimistic (upper) bound of the term's own rate: a term needs both volume and a rate
    confidently below average to score, so 3 searches with 0 carts do not outrank 300 with 2.

    >>> conversion_gap(0, 100, 0.3).missed > conversion_gap(0, 10, 0.3).missed > 0
    True
    >>> conversion_gap(30, 100, 0.3).missed
    0.0
    """
    rate = conversions / searches if searches > 0 else 0.0
    upper = wilson_upper(conversions, searches)
    return ConversionGap(
        searches=searches,
        conversions=conversions,
        rate=rate,
        rate_upper=upper,
        missed=max(0.0, searches * (pooled_rate - upper)),
    )


@dataclass(frozen=True, slots=True)
class LogOdds:
    """How strongly a word marks group A (negative reviews) against group B (positive)."""

    word: str
    count_a: float
    count_b: float
    delta: float  # log-odds ratio with the prior
    z: float  # delta / its standard deviation: the ranking key


def weighted_log_odds(
    counts_a: Mapping[str, float],
    counts_b: Mapping[str, float],
    background: Mapping[str, float],
    prior_strength: float = 500.0,
) -> list[LogOdds]:
    """Monroe et al.'s weighted log-odds, sorted from most A-ish to most B-ish.

    The prior ``alpha_w = prior_strength * background_w / sum(background)`` shrinks rare words
    towards the background rate, so a word seen twice does not top the list the way raw log-odds
    or frequency ratios let it. Words with no background count get a tiny floor prior.

    >>> ranked = weighted_log_odds({"电池": 30, "手机": 50}, {"电池": 3, "手机": 50},
    ...                           {"电池": 33, "手机": 100})
    >>> [r.word for r in ranked]
    ['电池', '手机']
    """
    bg_total = float(sum(background.values()))
    if bg_total <= 0:
        raise ValueError("background counts must not be empty")
    n_a = float(sum(counts_a.values()))
    n_b = float(sum(counts_b.values()))
    floor = 0.01
    out: list[LogOdds] = []
    for word in set(counts_a) | set(counts_b):
        alpha = max(prior_strength * background.get(word, 0.0) / bg_total, floor)
        y_a, y_b = counts_a.get(word, 0.0), counts_b.get(word, 0.0)
        odds_a = (y_a + alpha) / (n_a + prior_strength - y_a - alpha)
        odds_b = (y_b + alpha) / (n_b + prior_strength - y_b - alpha)
        delta = math.log(odds_a) - math.log(odds_b)
        variance = 1 / (y_a + alpha) + 1 / (y_b + alpha)
        out.append(LogOdds(word, y_a, y_b, delta, delta / math.sqrt(variance)))
    out.sort(key=lambda r: (-r.z, r.word))
    return out
