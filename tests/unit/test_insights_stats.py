"""Trend and ranking math on constructed data whose right answer is known."""

from __future__ import annotations

import math

import pytest

from insights.findings import rank_rising
from insights.stats import conversion_gap, rate_change, weighted_log_odds, wilson_upper
from insights.unmet import rank_unmet


def test_rate_change_matches_hand_computed_binomial_z() -> None:
    # 40 recent vs 10 baseline with equal window totals: n=50, p0=0.5, z = 15 / sqrt(12.5).
    ch = rate_change(40, 10, 100, 100)
    assert ch.z == pytest.approx(15 / math.sqrt(12.5))
    assert ch.lift == pytest.approx(40.5 / 10.5)
    assert 1 < ch.lift_lower < ch.lift


def test_rate_change_is_neutral_when_share_is_unchanged() -> None:
    ch = rate_change(20, 60, 100, 300)  # same 20% share in both windows
    assert ch.z == pytest.approx(0.0, abs=1e-9)
    assert ch.p_value == pytest.approx(0.5)


def test_rising_finds_the_category_that_doubled_its_share() -> None:
    series = {"a": [50.0] * 6, "b": [20.0] * 4 + [40.0, 40.0], "c": [30.0] * 6}
    ranked = rank_rising(series, recent=2)
    assert [r.category for r in ranked] == ["b"]


def test_site_wide_surge_lifts_no_category() -> None:
    series = {"a": [10.0] * 4 + [30.0] * 2, "b": [20.0] * 4 + [60.0] * 2}
    assert rank_rising(series, recent=2) == []


def test_confident_rise_outranks_a_big_jump_on_tiny_numbers() -> None:
    # "tiny" goes 1 -> 6 (x6, few counts), "steady" 200 -> 400 (x2, many counts).
    series = {
        "tiny": [1.0, 6.0],
        "steady": [200.0, 400.0],
        "rest": [2000.0, 2000.0],
    }
    ranked = [r.category for r in rank_rising(series, recent=1, min_recent=1)]
    assert ranked[0] == "steady"


def test_wilson_upper_bound_known_values() -> None:
    assert wilson_upper(0, 100) == pytest.approx(2.706 / 102.706, rel=1e-3)
    assert wilson_upper(5, 0) == 1.0
    assert wilson_upper(50, 100) > 0.5


def test_conversion_gap_needs_volume_and_a_low_rate() -> None:
    assert conversion_gap(0, 200, 0.3).missed > conversion_gap(0, 20, 0.3).missed > 0
    assert conversion_gap(60, 200, 0.3).missed == 0.0


def test_rank_unmet_orders_by_missed_conversions() -> None:
    searches = {"手办": 300, "耳机": 300, "汉服": 40, "稀有": 3}
    conversions = {"手办": 3, "耳机": 120, "汉服": 0, "稀有": 0}
    ranked = [u.term for u in rank_unmet(searches, conversions)]
    assert ranked == ["手办", "汉服"]  # 耳机 converts normally, 稀有 is below min_searches


def test_weighted_log_odds_ranks_the_negative_marker_first_and_is_antisymmetric() -> None:
    neg = {"电池": 40.0, "手机": 100.0, "颜色": 10.0}
    pos = {"电池": 4.0, "手机": 100.0, "颜色": 30.0}
    background = {w: neg[w] + pos[w] for w in neg}
    ranked = weighted_log_odds(neg, pos, background)
    assert [r.word for r in ranked] == ["电池", "手机", "颜色"]
    flipped = {r.word: r.z for r in weighted_log_odds(pos, neg, background)}
    for r in ranked:
        assert flipped[r.word] == pytest.approx(-r.z)


def test_weighted_log_odds_shrinks_rare_words() -> None:
    # Seen twice, only in negatives: raw log-odds would put it first; the prior must not.
    neg = {"电池": 60.0, "怪词": 2.0, "手机": 100.0}
    pos = {"电池": 10.0, "怪词": 0.0, "手机": 100.0}
    background = {w: neg[w] + pos[w] for w in neg}
    assert weighted_log_odds(neg, pos, background)[0].word == "电池"
