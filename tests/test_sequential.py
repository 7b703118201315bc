"""Confidence sequences: valid under continuous monitoring, and narrowing as data come in."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rollsweep.analysis.sequential import confidence_sequence


@pytest.mark.parametrize("mean", [0.05, 0.3, 0.5])
def test_monitoring_after_every_observation_misses_the_mean_at_most_alpha_of_the_time(mean):
    rng = np.random.default_rng(int(mean * 100))
    runs, misses = 600, 0
    for _ in range(runs):
        observations = rng.binomial(1, mean, size=400).astype(float)
        sequence = confidence_sequence(observations, alpha=0.05)
        misses += any(interval.excludes(mean) for interval in sequence)
    assert misses / runs <= 0.05


def test_time_varying_means_are_covered_by_their_running_average():
    # a sweep's paired differences: each task has its own mean difference, a round visits all
    rng = np.random.default_rng(7)
    task_means = rng.uniform(-0.6, 0.8, size=50)
    misses = 0
    for _ in range(300):
        rounds = [rng.permutation(50) for _ in range(6)]
        order = np.concatenate(rounds)
        values = np.clip(rng.normal(task_means[order], 0.3), -1, 1)
        sequence = confidence_sequence(values, alpha=0.05, low=-1, high=1)
        ends = [sequence[50 * (r + 1) - 1] for r in range(6)]
        misses += any(interval.excludes(task_means.mean()) for interval in ends)
    assert misses / 300 <= 0.05


def test_intervals_nest_and_narrow():
    rng = np.random.default_rng(3)
    sequence = confidence_sequence(rng.binomial(1, 0.4, size=3000).astype(float), alpha=0.05)
    widths = [interval.high - interval.low for interval in sequence]
    assert all(later <= earlier for earlier, later in itertools.pairwise(widths))
    assert widths[99] > 0.2 and widths[-1] < 0.08
    assert sequence[-1].low < 0.4 < sequence[-1].high


def test_values_outside_the_range_are_refused():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        confidence_sequence(np.array([0.5, 1.5]), alpha=0.05, low=-1, high=1)
