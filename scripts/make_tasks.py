"""Regenerate the bundled task sets: ``python scripts/make_tasks.py [OUT_DIR]`` (default data/)."""

import sys
from pathlib import Path

from rollsweep.paths import BUNDLED_DATA
from rollsweep.taskgen import write_bundled_tasks


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    out_dir = Path(argv[0]) if argv else BUNDLED_DATA
    for name, count in write_bundled_tasks(out_dir).items():
        print(f"{out_dir / name}: {count} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
