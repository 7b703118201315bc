"""Command lines: ``ng_collect_rollouts``, ``ng_run``, ``ng_viewer`` and ``rollsweep COMMAND``.

Every command is a module of this package with ``main(argv) -> int``. This dispatcher imports
a command's module only when that command runs (the way pip's command registry does), so
``--help`` and a mistyped command do not wait for the collector, uvicorn, FastAPI or polars.
Every command runs under the one error wrapper, ``run_guarded``.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable

from rollsweep.cli.args import wants_help
from rollsweep.cli.usage import HELP
from rollsweep.errors import ServerUnavailable, UsageError

#: ``rollsweep`` subcommand -> (its module in this package, one-line summary)
COMMANDS = {
    "collect": ("collect", "collect rollouts (same as ng_collect_rollouts)"),
    "serve": ("serve", "start the servers (same as ng_run)"),
    "view": ("view", "browse rollouts in the browser (same as ng_viewer)"),
    "rescore": ("rescore", "re-run a verifier on frozen rollouts, no model calls"),
    "check-manifest": (
        "check_manifest",
        "would a rerun use the same inputs and versions? (names what drifted)",
    ),
    "make-tasks": ("make_tasks", "regenerate the bundled task files"),
}


def run_guarded(action: Callable[[], int]) -> int:
    """Run a command; bad input becomes one line on stderr and exit status 2."""
    try:
        return action()
    except UsageError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return UsageError.exit_code
    except ServerUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)  # collector.Interrupted says which
        print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except SystemExit as done:  # argparse after --help
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        raise


def run_command(module: str, argv: list[str]) -> int:
    """Run the command in ``rollsweep.cli.<module>`` on ``argv``; its exit status."""
    if module in HELP and wants_help(argv):
        print(HELP[module])
        return 0
    return run_guarded(lambda: importlib.import_module(f"rollsweep.cli.{module}").main(argv))


def ng_collect_rollouts(argv: list[str] | None = None) -> None:
    """Console script ``ng_collect_rollouts``."""
    sys.exit(run_command("collect", sys.argv[1:] if argv is None else argv))


def ng_run(argv: list[str] | None = None) -> None:
    """Console script ``ng_run``."""
    sys.exit(run_command("serve", sys.argv[1:] if argv is None else argv))


def ng_viewer(argv: list[str] | None = None) -> None:
    """Console script ``ng_viewer``."""
    sys.exit(run_command("ng_viewer", sys.argv[1:] if argv is None else argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollsweep",
        description="Collect rollouts, sweep parameters and study rewards of LLM agents.",
        epilog="The sweep pipeline itself runs with `snakemake --cores N` in the repository.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        # each command reads its own arguments, --help included
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def rollsweep_main(argv: list[str] | None = None) -> None:
    """Console script ``rollsweep COMMAND ...``."""
    args = sys.argv[1:] if argv is None else argv
    ns, rest = build_parser().parse_known_args(args)
    sys.exit(run_command(COMMANDS[ns.command][0], rest))
