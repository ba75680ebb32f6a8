"""`demandstream tail`: the readable line, its colour, and the --user filter."""

from __future__ import annotations

import msgspec

from stream.contracts import CategoryScore, Prediction
from tools.demo.tail import matches, plain_text, styled
from tools.simulate import default_catalogue


def prediction(user: str = "u1", intent: float = 0.3, demand: list[CategoryScore] | None = None) -> Prediction:
    return Prediction(
        user_id=user, event_id="e1", event_ts=1_700_000_000_000, predicted_at=1_700_000_000_250,
        model_version="v7", purchase_intent=intent, history_len=12,
        demand=demand if demand is not None else [CategoryScore("1001", 0.5), CategoryScore("1005", 0.3),
                                                  CategoryScore("1006", 0.1), CategoryScore("1004", 0.05)],
    )  # fmt: skip


def test_filter_by_user_lets_only_that_user_through() -> None:
    assert matches(prediction("u1"), "u1")
    assert not matches(prediction("u2"), "u1")
    assert not matches(prediction("u10"), "u1")  # exact ids, not prefixes
    assert matches(prediction("anyone"), None)


def test_line_shows_readable_names_of_the_top_three_and_the_rest_of_the_prediction() -> None:
    line = plain_text(prediction(), default_catalogue().name)
    assert line.startswith("u1  phones 0.50, phone cases 0.30, power banks 0.10  ")
    assert "earphones" not in line  # 4th entry: beyond the top 3
    assert "intent 0.30" in line and "history 12" in line and "model v7" in line
    assert "(250 ms after the event)" in line


def test_unknown_categories_show_as_their_ids() -> None:
    line = plain_text(prediction(demand=[CategoryScore("4756105", 0.9)]), default_catalogue().name)
    assert "4756105 0.90" in line


def test_empty_demand_still_formats() -> None:
    assert plain_text(prediction(demand=[]), str).startswith("u1    intent")


def test_high_purchase_intent_is_highlighted_and_low_is_not() -> None:
    def green_spans(intent: float) -> list[str]:
        text = styled(prediction(intent=intent), str)
        return [text.plain[s.start : s.end] for s in text.spans if "green" in str(s.style)]

    assert green_spans(0.8) == ["intent"]
    assert green_spans(0.2) == []


def test_a_replayed_old_event_shows_its_date_instead_of_a_meaningless_delay() -> None:
    old = msgspec.structs.replace(prediction(), event_ts=1_511_544_070_000, predicted_at=1_795_860_870_572)
    line = plain_text(old, str)
    assert line.endswith("(event of 2017-11-24 17:21:10 UTC)")
    assert " ms after" not in line
