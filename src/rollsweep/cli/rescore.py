"""``rollsweep rescore --verifier FILE_OR_NAME ROLLOUTS [-o OUT]``."""

from __future__ import annotations

from pathlib import Path

from rollsweep.cli.args import UsageParser
from rollsweep.rescore import rescore
from rollsweep.rollouts.names import rescored_path_for


def _parser() -> UsageParser:
    parser = UsageParser(
        prog="rollsweep rescore",
        description=(
            "Re-run a verifier on frozen rollouts without calling the model: write a new "
            "rollouts file (previous reward kept as previous_reward), print the reward "
            "distributions before and after side by side and the rows whose reward changed."
        ),
        epilog="Then compare them in the browser: rollsweep view ROLLOUTS OUT",
    )
    parser.add_argument("rollouts", metavar="ROLLOUTS", help="rollouts JSONL file")
    parser.add_argument(
        "--verifier",
        required=True,
        metavar="FILE_OR_NAME",
        help="a .py file defining verify(task, response), or a bundled verifier "
        "(auto, math, mcqa, instruction_following, tool_use)",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="output file (default: <stem>_rescored.jsonl)"
    )
    parser.add_argument(
        "--on-error",
        choices=("fail", "zero"),
        default="fail",
        help="a row the verifier fails on: stop with the error (default) or score it 0.0",
    )
    parser.add_argument(
        "--max-listed", type=int, default=50, metavar="N", help="changed rows listed (50)"
    )
    return parser


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    output = Path(ns.output) if ns.output else rescored_path_for(ns.rollouts)
    result = rescore(ns.rollouts, ns.verifier, output, on_error=ns.on_error)
    print(result.report(max_listed=max(0, ns.max_listed)))
    return 0
