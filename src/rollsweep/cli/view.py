"""``rollsweep view FILE_OR_EXPERIMENT_DIR [FILE2] [--port N] [--open]``."""

from __future__ import annotations

from pathlib import Path

from rollsweep.cli.args import UsageParser
from rollsweep.errors import UsageError
from rollsweep.viewer import DEFAULT_PORT
from rollsweep.viewer.server import serve

DESCRIPTION = (
    "Browse rollouts in the browser (127.0.0.1 only). One file: table, filters, tasks with "
    "repeats, conversations, histogram. Two files: compare, paired by task and repeat. A "
    "pipeline experiment directory (results/EXPERIMENT): switch between its configurations."
)


def main(argv: list[str]) -> int:
    parser = UsageParser(prog="rollsweep view", description=DESCRIPTION)
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_EXPERIMENT_DIR")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 = any free"
    )
    parser.add_argument("--open", action="store_true", help="open the default browser")
    ns = parser.parse_args(argv)
    if not 0 <= ns.port <= 65535:
        raise UsageError(f"must be between 0 and 65535, got {ns.port}", key="--port")
    return serve([str(Path(p)) for p in ns.paths], port=ns.port, open_browser=ns.open)
