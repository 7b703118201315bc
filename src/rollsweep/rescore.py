"""The verifier workbench: re-run a verifier on frozen rollouts, without calling any model.

    rollsweep rescore --verifier FILE_OR_NAME ROLLOUTS [-o OUT]

Each row keeps everything it had; ``reward`` and ``verification`` are replaced by the new
verifier's, and the reward it had is kept as ``previous_reward``. The output appears
atomically. The report is the seed's ``jq '.reward' | sort -n | uniq -c`` before and after,
side by side, and the rows whose reward changed. A user verifier file is read again each run
(and whenever it changes, within a process), so edit ``verify()``, rerun, compare.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollsweep.errors import UsageError
from rollsweep.rollouts.jsonl import atomic_output, dumps, iter_rows
from rollsweep.rollouts.names import failures_path_for
from rollsweep.rollouts.rows import finite_number, plain_int
from rollsweep.verifiers import load_verifier
from rollsweep.verifiers.base import VerifierError, VerifierFailure, normalize_result

#: Keys a rollout adds to its task row; the verifier sees the row without them (the task as
#: the agent's /verify saw it).
ROLLOUT_KEYS = frozenset(
    {
        "reward",
        "output",
        "response",
        "metrics",
        "verification",
        "previous_reward",
        "_ng_task_index",
        "_ng_rollout_index",
        "params",
        "seed",
    }
)
#: Rewards closer than this are the same reward.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ChangedRow:
    line: int
    task_index: int | None
    repeat: int | None
    task_id: str | None
    before: float | None
    after: float


@dataclass
class RescoreResult:
    """What a rescore did: counts of each reward before and after, and the changed rows."""

    rollouts_path: Path
    output_path: Path
    verifier: str
    n_rows: int = 0
    before: Counter[float | None] = field(default_factory=Counter)
    after: Counter[float] = field(default_factory=Counter)
    changed: list[ChangedRow] = field(default_factory=list)
    n_errors: int = 0
    #: rows on which the verifier reached no verdict (timeout, judge unreachable): not rescored,
    #: listed in the failures sidecar beside the output
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_changed(self) -> int:
        return len(self.changed)

    def count(self, line: int, row: dict[str, Any], after: float) -> None:
        """Count a rescored row; a changed reward lists it."""
        before = finite_number(row.get("reward"))
        self.n_rows += 1
        self.before[before] += 1
        self.after[after] += 1
        if before is None or abs(after - before) > TOLERANCE:
            task_id = row.get("task_id")
            self.changed.append(
                ChangedRow(
                    line=line,
                    task_index=plain_int(row.get("_ng_task_index")),
                    repeat=plain_int(row.get("_ng_rollout_index")),
                    task_id=None if task_id is None else str(task_id),
                    before=before,
                    after=after,
                )
            )

    def report(self, max_listed: int = 50) -> str:
        """The distributions side by side, then the changed rows (at most ``max_listed``)."""
        lines = [
            f"rescored {self.n_rows} rollouts of {self.rollouts_path} with {self.verifier}",
            "",
            format_distributions(self.before, self.after),
            "",
            format_means(self.before, self.after),
        ]
        if self.n_errors:
            lines.append(f"{self.n_errors} rows failed in the verifier and scored 0.0")
        if self.failures:
            kinds = Counter(failure["error_kind"] for failure in self.failures)
            shown = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
            lines.append(
                f"{len(self.failures)} rows reached no verdict [{shown}]: left out, listed in "
                f"{failures_path_for(self.output_path)}"
            )
        lines.append("")
        lines.append(format_changed(self.changed, max_listed=max_listed))
        lines.append(f"-> {self.output_path}")
        lines.append(f"compare them: rollsweep view {self.rollouts_path} {self.output_path}")
        return "\n".join(lines)


def task_of(row: dict[str, Any]) -> dict[str, Any]:
    """The task row a verifier saw: the rollout row without what the rollout added."""
    return {key: value for key, value in row.items() if key not in ROLLOUT_KEYS}


def rescore(
    rollouts_path: str | Path,
    verifier_spec: str | Path,
    output_path: str | Path,
    *,
    on_error: str = "fail",
) -> RescoreResult:
    """Re-run ``verifier_spec`` on every row of ``rollouts_path``; write ``output_path``.

    Streams the rows (constant memory besides the changed-row list) and writes atomically.
    ``on_error``: ``fail`` (a verifier error is a UsageError naming file, line and the error;
    nothing is written) or ``zero`` (the row scores 0.0, the error goes in ``verification``).
    """
    if on_error not in ("fail", "zero"):
        raise ValueError(f"on_error must be 'fail' or 'zero', got {on_error!r}")
    source, target = Path(rollouts_path), Path(output_path)
    _check_inputs(source, target, verifier_spec)
    result = RescoreResult(source, target, str(verifier_spec))
    with atomic_output(target) as handle:
        for line, row in iter_rows(source):
            if not isinstance(row.get("response"), dict):
                raise UsageError(
                    "the row has no 'response' object to verify", path=str(source), line=line
                )
            verdict = _verdict(row, line, verifier_spec, on_error, result)
            if verdict is None:
                continue
            after = float(verdict.pop("reward"))
            handle.write(
                dumps(
                    {
                        **row,
                        "previous_reward": row.get("reward"),
                        "reward": after,
                        "verification": verdict,
                    }
                )
            )
            result.count(line, row, after)
    _write_failures(failures_path_for(target), result.failures)
    return result


def _check_inputs(source: Path, target: Path, verifier_spec: str | Path) -> None:
    """Bad paths and a bad verifier fail before any row is read."""
    if not source.exists():
        raise UsageError("file not found", path=str(source))
    if target.exists() and target.resolve() == source.resolve():
        raise UsageError("the output must differ from the rollouts file", path=str(target))
    try:
        load_verifier(verifier_spec)
    except VerifierError as error:
        raise UsageError(str(error), key="--verifier") from None


def _verdict(
    row: dict[str, Any],
    line: int,
    verifier_spec: str | Path,
    on_error: str,
    result: RescoreResult,
) -> dict[str, Any] | None:
    """The row's new verdict; None when the verifier reached none (kept in ``result.failures``:
    no verdict is not a verdict of 0, as in collection)."""
    try:
        return normalize_result(load_verifier(verifier_spec).verify(task_of(row), row["response"]))
    except VerifierFailure as failure:
        result.failures.append(
            {
                "_ng_task_index": row.get("_ng_task_index"),
                "_ng_rollout_index": row.get("_ng_rollout_index"),
                "task_id": row.get("task_id"),
                "line": line,
                "error_kind": failure.failure_class,
                "message": failure.failure_message,
            }
        )
        return None
    except VerifierError as error:
        if on_error == "fail":
            raise UsageError(
                f"verifier failed: {error} (--on-error zero scores such rows 0.0)",
                path=str(result.rollouts_path),
                line=line,
            ) from None
        result.n_errors += 1
        return {"reward": 0.0, "error": str(error)}


def _write_failures(sidecar: Path, failures: list[dict[str, Any]]) -> None:
    """The failures sidecar beside the output, or none when every row got a verdict."""
    if not failures:
        sidecar.unlink(missing_ok=True)
        return
    with atomic_output(sidecar) as handle:
        for failure in failures:
            handle.write(dumps(failure))


# --------------------------------------------------------------------------- reports


def _reward_text(value: float | None) -> str:
    return "null" if value is None else repr(float(value))


def format_distributions(
    before: Counter[float | None] | dict[Any, int], after: Counter[float] | dict[Any, int]
) -> str:
    """The seed's ``sort -n | uniq -c`` before and after, side by side, one reward a line.

    ::

        before            after
              3 0.0             5 0.0   (+2)
              7 0.5             5 0.5   (-2)
             10 1.0            10 1.0
    """
    keys = set(before) | set(after)
    values = ([None] if None in keys else []) + sorted(v for v in keys if v is not None)
    width = max([7] + [len(f"{before.get(v, 0):>7} {_reward_text(v)}") for v in values])
    lines = [f"{'before':<{width}}   after"]
    for value in values:
        left_count, right_count = before.get(value, 0), after.get(value, 0)
        left = f"{left_count:>7} {_reward_text(value)}" if left_count else ""
        right = f"{right_count:>7} {_reward_text(value)}" if right_count else ""
        change = right_count - left_count
        note = f"   ({change:+d})" if change else ""
        lines.append(f"{left:<{width}}   {right:<{width}}{note}".rstrip())
    return "\n".join(lines)


def _mean(counts: Counter[Any] | dict[Any, int]) -> tuple[float | None, int]:
    total = sum(n for v, n in counts.items() if v is not None)
    if not total:
        return None, 0
    return sum(v * n for v, n in counts.items() if v is not None) / total, total


def format_means(before: Counter[Any], after: Counter[Any]) -> str:
    mean_before, _ = _mean(before)
    mean_after, n_after = _mean(after)
    shown_before = "—" if mean_before is None else f"{mean_before:.4f}"
    shown_after = "—" if mean_after is None else f"{mean_after:.4f}"
    return f"mean reward {shown_before} -> {shown_after}  (n={n_after})"


def format_changed(changed: list[ChangedRow], *, max_listed: int = 50) -> str:
    """The changed rows: line, task index, repeat, task_id, old -> new reward."""
    if not changed:
        return "no reward changed"
    lines = [f"{len(changed)} rows changed reward:"]
    lines.append(f"  {'line':>6}  {'task':>5}  {'repeat':>6}  {'task_id':<28}  old -> new")
    for row in changed[:max_listed]:
        task = "-" if row.task_index is None else str(row.task_index)
        repeat = "-" if row.repeat is None else str(row.repeat)
        task_id = (row.task_id or "-")[:28]
        lines.append(
            f"  {row.line:>6}  {task:>5}  {repeat:>6}  {task_id:<28}  "
            f"{_reward_text(row.before)} -> {_reward_text(row.after)}"
        )
    if len(changed) > max_listed:
        lines.append(f"  … and {len(changed) - max_listed} more (--max-listed N shows more)")
    return "\n".join(lines)
