"""``rollsweep make-tasks [OUT_DIR]``: regenerate the bundled task files."""

from __future__ import annotations

from pathlib import Path

from rollsweep.cli.args import UsageParser
from rollsweep.paths import BUNDLED_DATA
from rollsweep.taskgen import write_bundled_tasks


def main(argv: list[str]) -> int:
    parser = UsageParser(
        prog="rollsweep make-tasks", description="Regenerate the bundled task files."
    )
    parser.add_argument(
        "out_dir", nargs="?", default=str(BUNDLED_DATA), help=f"default: {BUNDLED_DATA}"
    )
    out_dir = Path(parser.parse_args(argv).out_dir)
    for name, count in write_bundled_tasks(out_dir).items():
        print(f"{count:>5}  {out_dir / name}")
    return 0
