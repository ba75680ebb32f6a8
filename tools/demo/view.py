"""How the demo shows what it sees: a rich live screen, plain periodic lines, and the final summary."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from stream.contracts import Event, Prediction
from tools.demo.state import DemoState, SentEvent, latency_stats

CategoryNamer = Callable[[str], str]
_USERS_SHOWN = 12
_TOP_SHOWN = 3
_SNIPPET_CHARS = 18


def top_categories(prediction: Prediction, names: CategoryNamer, count: int = _TOP_SHOWN) -> str:
    """``phones 0.52, phone cases 0.21, ...``: the first ``count`` demand entries, readable."""
    return ", ".join(f"{names(entry.category_id)} {entry.score:.2f}" for entry in prediction.demand[:count])


def _describe_event(event: Event, names: CategoryNamer) -> str:
    parts: list[str] = [event.type]
    if event.category_id is not None:
        parts.append(names(event.category_id))
    words = event.query or event.text
    if words:
        snippet = words if len(words) <= _SNIPPET_CHARS else words[:_SNIPPET_CHARS] + "…"
        parts.append(f"“{snippet}”")
    if event.price is not None:
        parts.append(f"¥{event.price:,.0f}")
    return " ".join(parts)


def _events_table(recent: list[SentEvent], names: CategoryNamer) -> Table:
    table = Table(title="recent events sent (newest first)", expand=True, title_justify="left")
    table.add_column("user", no_wrap=True)
    table.add_column("event", overflow="ellipsis", no_wrap=True)
    for sent in reversed(recent):
        if sent.event is None:
            table.add_row(Text("?", style="red"), Text(f"malformed payload ({sent.malformed}) -> DLQ", style="red"))
        else:
            table.add_row(sent.event.user_id[:10], _describe_event(sent.event, names))
    return table


def _users_table(predictions: list[Prediction], names: CategoryNamer) -> Table:
    table = Table(title="latest demand per user (newest first)", expand=True, title_justify="left")
    table.add_column("user", no_wrap=True)
    table.add_column("top demand categories", overflow="ellipsis", no_wrap=True)
    table.add_column("purchase intent", justify="right", no_wrap=True)
    table.add_column("history", justify="right")
    for prediction in predictions:
        intent = prediction.purchase_intent
        bar = "█" * round(intent * 10)
        style = "bold green" if intent >= 0.5 else "yellow" if intent >= 0.2 else "dim"
        table.add_row(
            prediction.user_id[:10],
            top_categories(prediction, names),
            Text(f"{intent:4.2f} {bar:<10}", style=style),
            str(prediction.history_len),
        )
    return table


def status_line(state: DemoState) -> str:
    """One line of counters: what the plain output prints and the live header shows."""
    sent_rate, predicted_rate = state.rates()
    latency = latency_stats(state.recent_latencies_s)
    latency_text = f"latency p50 {latency.p50_ms:.0f} ms p95 {latency.p95_ms:.0f} ms" if latency else "latency -"
    dlq = sum(state.dlq.values())
    return (
        f"t={state.elapsed_s:5.1f}s model {state.model_version or '-'} | sent {state.sent_valid} "
        f"(+{sum(state.sent_malformed.values())} malformed) {sent_rate:.0f}/s | predictions "
        f"{state.predictions} {predicted_rate:.0f}/s | {latency_text} | DLQ {dlq} | "
        f"awaiting {state.awaiting_prediction}"
    )


def render_live(state: DemoState, names: CategoryNamer) -> RenderableType:
    """The whole live screen."""
    header = Text(status_line(state), style="bold")
    if state.feed_exhausted:
        header.append("  (simulated time reached now: no more events; Ctrl-C to stop)", style="yellow")
    dlq = ", ".join(f"{code} {count}" for code, count in state.dlq.most_common()) or "none yet"
    return Group(
        header,
        _events_table(list(state.recent_events), names),
        _users_table(state.recent_users(_USERS_SHOWN), names),
        Text(f"dead letters by reason: {dlq}", style="red" if state.dlq else "dim"),
        Text("Ctrl-C stops the demo and everything it started.", style="dim"),
    )


def plain_lines(state: DemoState, names: CategoryNamer, users: int = 3) -> list[str]:
    """What non-terminal output prints each period: the counters and a few users' demand."""
    lines = [status_line(state)]
    for prediction in state.recent_users(users):
        lines.append(
            f"  user {prediction.user_id}: {top_categories(prediction, names)} | "
            f"purchase intent {prediction.purchase_intent:.2f} | history {prediction.history_len}"
        )
    return lines


def summary_lines(state: DemoState) -> list[str]:
    """The report printed when the demo stops."""
    elapsed = max(state.elapsed_s, 1e-9)
    malformed = sum(state.sent_malformed.values())
    latency = latency_stats(state.latencies_s)
    first = state.first_prediction_after_s
    lines = [
        f"demo summary ({time.strftime('%Y-%m-%d %H:%M:%S')})",
        f"  ran {elapsed:.1f}s, model {state.model_version or '-'}",
        f"  events sent: {state.sent_valid} valid + {malformed} malformed ({state.sent_valid / elapsed:.0f}/s)",
        f"  predictions: {state.predictions} ({state.predictions / elapsed:.0f}/s), "
        f"still awaited at stop: {state.awaiting_prediction}",
        f"  first prediction {first:.1f}s after the feed started" if first is not None else "  no prediction",
        f"  dead letters: {sum(state.dlq.values())} {dict(state.dlq.most_common())}",
    ]
    if latency is not None:
        lines.append(
            f"  end-to-end latency (send -> prediction consumed): p50 {latency.p50_ms:.1f} ms, "
            f"p95 {latency.p95_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms, max {latency.max_ms:.1f} ms"
        )
    return lines
