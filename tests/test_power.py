"""Power and sample-size advice, checked by simulation against the pipeline's own paired test."""

from __future__ import annotations

import numpy as np
import pytest

from rollsweep.analysis.power import (
    VarianceParts,
    detectable_difference,
    holm_adjusted,
    sample_size_advice,
    variance_parts,
)
from rollsweep.analysis.statistics import sign_flip_test

ALPHA, POWER = 0.05, 0.8


def paired_differences(
    rng: np.random.Generator,
    *,
    n_tasks: int,
    repeats: int,
    delta: float,
    between: float,
    within: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-(task, repeat) differences: a task effect plus repeat noise around ``delta``."""
    task_effect = rng.normal(delta, np.sqrt(between), size=n_tasks)
    noise = rng.normal(0.0, np.sqrt(within), size=(n_tasks, repeats))
    differences = (task_effect[:, None] + noise).ravel()
    return np.repeat(np.arange(n_tasks), repeats), differences


def detection_rate(
    seed: int,
    *,
    n_tasks: int,
    repeats: int,
    delta: float,
    between: float,
    within: float,
    runs: int = 300,
) -> float:
    """Share of simulated experiments the sign-flip test over tasks calls significant."""
    rng = np.random.default_rng(seed)
    hits = 0
    for run in range(runs):
        _, differences = paired_differences(
            rng, n_tasks=n_tasks, repeats=repeats, delta=delta, between=between, within=within
        )
        per_task = differences.reshape(n_tasks, repeats).mean(axis=1)
        hits += sign_flip_test(per_task, n_resamples=400, seed=run) < ALPHA
    return hits / runs


def test_variance_parts_recover_the_components_they_were_drawn_from():
    rng = np.random.default_rng(1)
    tasks, differences = paired_differences(
        rng, n_tasks=4000, repeats=4, delta=0.1, between=0.02, within=0.09
    )
    parts = variance_parts(tasks, differences)
    assert parts.n_tasks == 4000 and parts.repeats == 4
    assert parts.within_task == pytest.approx(0.09, rel=0.05)
    assert parts.between_tasks == pytest.approx(0.02, rel=0.15)


def test_one_repeat_leaves_the_split_unknown_and_advises_only_tasks():
    rng = np.random.default_rng(2)
    tasks, differences = paired_differences(
        rng, n_tasks=100, repeats=1, delta=0.0, between=0.02, within=0.09
    )
    parts = variance_parts(tasks, differences)
    assert parts.within_task is None
    advice = sample_size_advice(parts, min_effect=0.05, alpha=ALPHA, power=POWER)
    assert advice.repeats_needed is None
    assert advice.tasks_needed is not None and advice.tasks_needed > 100
    assert "what more repeats would do is unknown" in advice.sentence(parts.repeats)


def test_the_detectable_difference_is_detected_with_the_promised_power():
    between, within, n_tasks, repeats = 0.01, 0.16, 100, 2
    truth = VarianceParts(
        n_tasks=n_tasks, repeats=repeats, between_tasks=between, within_task=within
    )
    delta = detectable_difference(truth, alpha=ALPHA, power=POWER)
    rate = detection_rate(
        3, n_tasks=n_tasks, repeats=repeats, delta=delta, between=between, within=within
    )
    assert rate == pytest.approx(POWER, abs=0.07)
    # and a difference half as large is detected far less often
    assert (
        detection_rate(
            4, n_tasks=n_tasks, repeats=repeats, delta=delta / 2, between=between, within=within
        )
        < POWER - 0.3
    )


def test_running_the_advised_repeats_detects_the_effect_about_as_often_as_promised():
    between, within, n_tasks, effect = 0.005, 0.2, 100, 0.08
    rng = np.random.default_rng(5)
    tasks, differences = paired_differences(
        rng, n_tasks=n_tasks, repeats=2, delta=0.0, between=between, within=within
    )
    advice = sample_size_advice(
        variance_parts(tasks, differences), min_effect=effect, alpha=ALPHA, power=POWER
    )
    assert advice.detectable_now > effect  # a tie today...
    assert advice.repeats_needed is not None and advice.repeats_needed > 2
    rate = detection_rate(
        6,
        n_tasks=n_tasks,
        repeats=advice.repeats_needed,
        delta=effect,
        between=between,
        within=within,
    )
    # ...settled in about the promised share of runs (the variances were estimated, so loosely)
    assert 0.65 <= rate <= 0.95
    assert "more repeats would detect 0.08" in advice.sentence(2)


def test_holm_adjustment_matches_its_definition():
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjusted([]) == []
