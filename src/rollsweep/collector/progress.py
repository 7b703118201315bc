"""A run's tally, and its progress: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm


@dataclass
class Tally:
    """What a run (or one task range of it) has done so far."""

    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    not_persisted: int = 0
    reward_sum: float = 0.0
    started: float = field(default_factory=time.monotonic)
    failure_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.done if self.done else float("nan")

    def add(self, other: Tally) -> None:
        """Count another range's rollouts in (not its total, skipped or start)."""
        self.done += other.done
        self.failed += other.failed
        self.retried += other.retried
        self.not_persisted += other.not_persisted
        self.reward_sum += other.reward_sum
        self.failure_kinds.update(other.failure_kinds)


class Progress:
    """A tqdm bar on a terminal (redrawn at most 10 times a second); plain log lines every few
    seconds otherwise."""

    def __init__(
        self, tally: Tally, enabled: bool | None, label: str, position: int | None = None
    ) -> None:
        self.tally = tally
        self.label = label
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._last_log = time.monotonic()
        self._unshown = 0
        if interactive:
            self._bar = tqdm(
                total=tally.total,
                initial=tally.skipped,
                unit="rollout",
                desc=label,
                dynamic_ncols=True,
                smoothing=0.1,
                position=position,
            )

    def update(self) -> None:
        tally = self.tally
        now = time.monotonic()
        finished = tally.done + tally.failed + tally.skipped + tally.not_persisted
        if self._bar is not None:
            self._unshown += 1
            if now - self._last_log >= 0.1 or finished == tally.total:
                self._last_log = now
                self._bar.update(self._unshown)
                self._unshown = 0
                self._bar.set_postfix(
                    reward=f"{tally.mean_reward:.3f}", failed=tally.failed, refresh=False
                )
            return
        if now - self._last_log >= 10 or finished == tally.total:
            self._last_log = now
            self._log(now, finished)

    def _log(self, now: float, finished: int) -> None:
        tally = self.tally
        elapsed = now - tally.started
        fresh = tally.done + tally.failed
        rate = fresh / elapsed if elapsed > 0 else 0.0
        eta = (tally.total - finished) / rate if rate > 0 else float("inf")
        print(
            f"[{self.label}] {finished}/{tally.total} rollouts, {rate:.1f}/s, "
            f"ETA {eta:.0f}s, mean reward {tally.mean_reward:.3f}, failures {tally.failed}, "
            f"retries {tally.retried}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._unshown)
            self._bar.close()
