"""How much data a comparison needs: the smallest difference it detects, and how many more
repeats or tasks would detect the difference a user cares about.

The comparison is the pipeline's paired one: per task, one configuration's mean reward minus
another's over the repeats both ran. That per-task difference varies for two reasons: tasks
differ (variance ``between_tasks``, which only more tasks reduce) and repeats of one task differ
(variance ``within_task`` per repeat, which more repeats reduce). With ``n`` tasks and ``r``
repeats the standard error of the mean difference is ``sqrt((between + within / r) / n)``, and a
two-sided test at level alpha detects a true difference ``delta`` with probability ``power``
when ``delta >= (z(1 - alpha/2) + z(power)) * se`` — the normal approximation of the paired
test (Cohen, *Statistical Power Analysis*, 1988, ch. 2), with the variance split of a nested
(tasks x repeats) design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class VarianceParts:
    """The two variance components of a paired per-task difference, as estimated."""

    n_tasks: int
    repeats: float  # mean repeats per task
    between_tasks: float
    within_task: float | None  # per repeat; None when no task has two repeats


@dataclass(frozen=True)
class SampleSizeAdvice:
    """What it would take to detect ``min_effect``: the same tasks with more repeats, or more
    tasks at today's repeats. ``None`` where that route cannot reach it (or is unknown)."""

    min_effect: float
    detectable_now: float | None
    repeats_needed: int | None
    tasks_needed: int | None
    #: whether the repeats' share of the variance is known (two or more repeats of a task)
    split_known: bool = True

    def sentence(self, repeats_now: float) -> str:
        """One line for the end of a run: what more data would settle a tie."""
        target = f"{self.min_effect:g}"
        if self.detectable_now is not None and self.detectable_now <= self.min_effect:
            return f"the data already detect a difference of {target}"
        if self.repeats_needed is not None:
            factor = self.repeats_needed / repeats_now
            return f"about {factor:.3g}x more repeats would detect {target}"
        if self.tasks_needed is not None and not self.split_known:
            return (
                f"about {self.tasks_needed} tasks would detect {target} "
                "(with one repeat a task, what more repeats would do is unknown)"
            )
        if self.tasks_needed is not None:
            return (
                f"about {self.tasks_needed} tasks would detect {target} "
                "(more repeats alone would not)"
            )
        return f"too few rollouts to tell how many would detect {target}"


def variance_parts(task_index: np.ndarray, differences: np.ndarray) -> VarianceParts:
    """Estimate the variance split from per-(task, repeat) paired differences.

    ``within_task`` is the pooled sample variance of the differences inside each task (tasks
    with two or more repeats); ``between_tasks`` is what is left of the variance of the
    per-task means after the repeats' share, never below zero.
    """
    tasks, inverse, counts = np.unique(task_index, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=differences)
    means = sums / counts
    squares = np.bincount(inverse, weights=(differences - means[inverse]) ** 2)
    degrees = int(np.sum(counts - 1))
    within = float(squares.sum() / degrees) if degrees > 0 else None
    repeats = float(counts.mean()) if counts.size else 0.0
    total = float(np.var(means, ddof=1)) if tasks.size > 1 else 0.0
    between = total - (within / repeats if within is not None else 0.0)
    return VarianceParts(
        n_tasks=int(tasks.size),
        repeats=repeats,
        between_tasks=max(between, 0.0),
        within_task=within,
    )


def _z(alpha: float, power: float) -> float:
    normal = NormalDist()
    return normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)


def detectable_difference(
    parts: VarianceParts,
    *,
    alpha: float,
    power: float,
    n_tasks: int | None = None,
    repeats: float | None = None,
) -> float | None:
    """The smallest true difference detected with probability ``power`` at level ``alpha``,
    with the estimated variances and ``n_tasks`` x ``repeats`` (today's by default)."""
    n = parts.n_tasks if n_tasks is None else n_tasks
    r = parts.repeats if repeats is None else repeats
    if n < 2 or r <= 0:
        return None
    within = parts.within_task or 0.0
    return _z(alpha, power) * math.sqrt((parts.between_tasks + within / r) / n)


def sample_size_advice(
    parts: VarianceParts, *, min_effect: float, alpha: float, power: float
) -> SampleSizeAdvice:
    """Repeats (on the same tasks) and tasks (at today's repeats) that detect ``min_effect``."""
    now = detectable_difference(parts, alpha=alpha, power=power)
    if now is None:
        return SampleSizeAdvice(min_effect, None, None, None)
    z2 = _z(alpha, power) ** 2
    within = parts.within_task
    repeats_needed = None
    # solve z2 * (between + within / r) / n <= min_effect**2 for r, tasks fixed
    room = parts.n_tasks * min_effect**2 / z2 - parts.between_tasks
    if within is not None and room > 0:
        repeats_needed = max(math.ceil(within / room), math.ceil(parts.repeats))
    per_task = parts.between_tasks + (within or 0.0) / parts.repeats
    tasks_needed = max(math.ceil(z2 * per_task / min_effect**2), parts.n_tasks)
    return SampleSizeAdvice(
        min_effect, now, repeats_needed, tasks_needed, split_known=within is not None
    )


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
