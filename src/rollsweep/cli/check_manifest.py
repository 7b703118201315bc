"""``rollsweep check-manifest RESULTS_DIR...``: exit 1 when a rerun would use other inputs."""

from __future__ import annotations

import argparse

from rollsweep.cli.args import UsageParser
from rollsweep.pipeline.check import check_manifest
from rollsweep.rollouts.names import MANIFEST_FILE

DESCRIPTION = f"""\
Would a rerun use the same inputs and versions as the results in RESULTS_DIR?
RESULTS_DIR is an experiment's directory (results/EXPERIMENT, with {MANIFEST_FILE}) or the
results directory above several. Prints one line per drift (config, input file hashes, stack,
model and GGUF hash, package versions, python, git commit) and exits 1 when there is any, 0
when there is none, 2 for bad input."""


def main(argv: list[str]) -> int:
    parser = UsageParser(
        prog="rollsweep check-manifest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR")
    ns = parser.parse_args(argv)
    drifted = 0
    for results_dir in ns.results_dirs:
        for path, drift in check_manifest(results_dir).items():
            if drift:
                drifted += 1
                for line in drift:
                    print(f"{path}: {line}")
            else:
                print(f"{path}: ok, a rerun would use the same inputs and versions")
    return 1 if drifted else 0
