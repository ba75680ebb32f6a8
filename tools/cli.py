"""The ``demandstream`` command. Subcommands are imported only when invoked, so that
``demandstream --help`` stays fast and a worker never imports the trainer (or torch)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from stream.logs import configure_logging
from tools.errors import is_expected, one_line

_DEBUG = "demandstream.debug"  # key in click's context meta, shared by every subcommand

# name -> ("module:attribute", short help); each concern owns its own command module, and the
# help text lives here so that listing commands imports none of them.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("tools.devinfra.cli:dev", "Start/stop a local broker and Redis (no Docker needed)."),
    "worker": ("stream.worker.cli:worker", "Run a stream worker of the consumer group."),
    "faust-worker": ("tools.faust_cli:faust_worker", "The worker's batch processor in a faust agent (`faust` extra)."),
    "evaluate": ("stream.evaluation.cli:evaluate", "Online accuracy per model version vs a baseline, live."),
    "models": ("tools.models_cli:models", "List, verify, promote and roll back registry models."),
    "retrain": ("training.retrain:retrain", "Retrain on the events topic's last N days; register a shadow."),
    "train": ("training.cli:train", "Train, evaluate against baselines, export to the registry."),
    "insights": ("insights.cli:insights", "Product-development insights: report and dashboard."),
    "simulate": ("tools.simulate.cli:simulate", "Seeded, realistic shopper events to Kafka/file."),
    "demo": ("tools.demo.cli:demo", "Live demo: local broker + Redis, model, worker, simulated shoppers."),
    "replay": ("tools.demo.replay:replay", "Publish a dataset into the events topic in event-time order."),
    "tail": ("tools.demo.tail:tail", "Follow the predictions topic (pretty or JSON, filter by user)."),
    "forget-user": ("tools.forget_cli:forget_user_command", "Erase a user's window and state (GDPR erasure)."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in other modules, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SUBCOMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            target = SUBCOMMANDS[cmd_name][0]
            module_name, attr = target.split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{target} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; an expected failure becomes one line on stderr (see tools.errors)."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # A mistyped option or a missing file argument: one line too, with where to look.
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            raise click.ClickException(exc.format_message() + where) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get(_DEBUG) or not is_expected(exc):
                raise
            raise click.ClickException(one_line(exc)) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in sorted(SUBCOMMANDS)]
        rows += [(name, cmd.get_short_help_str()) for name, cmd in sorted(self.commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup)
@click.option("--log-level", default=None, help="Override DEMANDSTREAM_LOG_LEVEL.")
@click.option("--debug", is_flag=True, help="Show the traceback of every failure, not just one line.")
@click.pass_context
def main(ctx: click.Context, log_level: str | None, debug: bool) -> None:
    """demandstream: real-time shopper demand prediction on Kafka + Redis + ONNX."""
    ctx.meta[_DEBUG] = debug
    configure_logging(level=log_level)
    logging.getLogger(__name__).debug("cli started")
