"""Aggregation statistics against values computed by hand on small tables."""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import shutil
import statistics
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollsweep.analysis import plots as plots_module
from rollsweep.analysis.configs import ConfigRollouts
from rollsweep.analysis.outputs import low_reward_rollouts, write_experiment_outputs
from rollsweep.analysis.picks import best_params, verdict_line
from rollsweep.analysis.plots import write_experiment_plots
from rollsweep.analysis.read import ROLLOUT_COLUMNS, count_failures, load_rollouts
from rollsweep.analysis.settings import StatsSettings
from rollsweep.analysis.statistics import (
    cluster_bootstrap_ci,
    clustered_sem,
    pass_at_k,
    sign_flip_test,
)
from rollsweep.analysis.tables import (
    SUMMARY_COLUMNS,
    per_task,
    reward_distribution,
    summarize,
    task_outcomes,
)
from rollsweep.errors import UsageError
from rollsweep.pipeline.config import ExperimentConfig
from rollsweep.pipeline.plan import configurations
from rollsweep.rollouts import reader
from rollsweep.rollouts.names import config_label


def rollout(task: int, repeat: int, reward: float, **extra: object) -> dict:
    row = {
        "responses_create_params": {"input": f"task {task}"},
        "task_id": f"t{task}",
        "reward": reward,
        "output": f"answer {task}.{repeat}",
        "response": {"id": f"r{task}.{repeat}", "output": [{"type": "message"}]},
        "_ng_task_index": task,
        "_ng_rollout_index": repeat,
        "metrics": {
            "latency_s": 0.5 + task,
            "input_tokens": 10,
            "output_tokens": 4 + repeat,
            "turns": 1,
            "tool_calls": 0,
        },
        "params": {"temperature": 0.5},
        "seed": 0,
    }
    row.update(extra)
    return row


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows_from(rewards_by_task: list[list[float]]) -> list[dict]:
    """Task-major rows: rewards_by_task[t][r] is task t's repeat r."""
    return [
        rollout(task, repeat, reward)
        for task, rewards in enumerate(rewards_by_task)
        for repeat, reward in enumerate(rewards)
    ]


def frame_of(rewards_by_task: list[list[float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_index": [t for t, rs in enumerate(rewards_by_task) for _ in rs],
            "rollout_index": [r for rs in rewards_by_task for r in range(len(rs))],
            "task_id": [f"t{t}" for t, rs in enumerate(rewards_by_task) for _ in rs],
            "reward": [float(x) for rs in rewards_by_task for x in rs],
            "latency_s": [1.0 for rs in rewards_by_task for _ in rs],
            "input_tokens": [10.0 for rs in rewards_by_task for _ in rs],
            "output_tokens": [5.0 for rs in rewards_by_task for _ in rs],
        },
        schema_overrides={"task_index": pl.Int64, "rollout_index": pl.Int64},
    )


# --------------------------------------------------------------------------- reading


def test_load_rollouts_selects_columns_in_file_order(tmp_path):
    rows = rows_from([[1.0, 0.0], [0.5, 1]])
    rows[3]["task_id"] = 7  # an integer task_id is read as text
    path = tmp_path / "r.jsonl"
    path.write_text(
        "\n".join(json.dumps(row) for row in rows[:2])
        + "\n\n"
        + "\n".join(json.dumps(row) for row in rows[2:])
    )
    frame = load_rollouts(path)
    assert frame.columns == list(ROLLOUT_COLUMNS)
    assert frame.get_column("reward").to_list() == [1.0, 0.0, 0.5, 1.0]
    assert frame.get_column("task_index").to_list() == [0, 0, 1, 1]
    assert frame.get_column("rollout_index").to_list() == [0, 1, 0, 1]
    assert frame.get_column("task_id").to_list() == ["t0", "t0", "t1", "7"]
    assert frame.get_column("output_tokens").to_list() == [4.0, 5.0, 4.0, 5.0]
    assert load_rollouts(path, output=True).get_column("output")[0] == "answer 0.0"


def test_load_rollouts_across_read_blocks(tmp_path, monkeypatch):
    rows = rows_from([[float(r % 3 == 0) for r in range(7)] for _ in range(9)])
    rows[5]["output"] = "x" * 3000  # a line longer than a block
    path = write_rows(tmp_path / "r.jsonl", rows)
    whole = load_rollouts(path)
    monkeypatch.setattr(reader, "READ_BLOCK_BYTES", 257)
    assert load_rollouts(path).equals(whole)
    assert whole.get_column("reward").to_list() == [row["reward"] for row in rows]


def test_load_rollouts_empty_file(tmp_path):
    frame = load_rollouts(write_rows(tmp_path / "empty.jsonl", []))
    assert frame.height == 0
    assert frame.columns == list(ROLLOUT_COLUMNS)
    summary = summarize([({"temperature": 0.1}, frame, 2)])
    row = summary.row(0, named=True)
    assert row["n_rollouts"] == 0 and row["mean"] is None and row["failure_rate"] == 1.0


def test_load_rollouts_errors_name_file_and_line(tmp_path):
    rows = rows_from([[1.0, 0.0, 1.0]])
    del rows[2]["reward"]
    path = write_rows(tmp_path / "missing.jsonl", rows)
    with pytest.raises(UsageError, match=r"missing\.jsonl:3: reward"):
        load_rollouts(path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "reward": "high"}) + "\n")
    with pytest.raises(UsageError, match=r"bad\.jsonl:2: reward: expected a number"):
        load_rollouts(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1])[:40] + "\n")
    with pytest.raises(UsageError, match=r"broken\.jsonl:2: invalid JSON"):
        load_rollouts(broken)
    with pytest.raises(UsageError, match="file not found"):
        load_rollouts(tmp_path / "absent.jsonl")


def test_mean_is_jq_add_over_length(tmp_path):
    rewards = [0.1, 0.2, 0.7, 0.3, 0.1, 0.9, 1 / 3, 0.05, 0.6, 0.15, 0.25]
    path = write_rows(tmp_path / "r.jsonl", [rollout(i, 0, r) for i, r in enumerate(rewards)])
    mean = summarize([({}, load_rollouts(path))]).item(0, "mean")
    assert mean == functools.reduce(operator.add, rewards) / len(rewards)
    if shutil.which("jq"):
        out = subprocess.run(
            ["jq", "-s", "map(.reward) | add/length", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert mean == float(out.stdout)


# --------------------------------------------------------------------------- summary


def test_summary_by_hand(tmp_path):
    table = [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.5]]
    frame = load_rollouts(write_rows(tmp_path / "r.jsonl", rows_from(table)))
    sidecar = write_rows(
        tmp_path / "r_failures.jsonl",
        [
            {"_ng_task_index": 3, "_ng_rollout_index": 1, "error_kind": "timeout"},
            {"_ng_task_index": 3, "_ng_rollout_index": 1, "error_kind": "timeout"},  # duplicate
            {"_ng_task_index": 0, "_ng_rollout_index": 0, "error_kind": "http_503"},  # redone
        ],
    )
    n_failures = count_failures(sidecar, frame)
    assert n_failures == 1
    summary = summarize([({"temperature": 0.5}, frame, n_failures)], n_bootstrap=500)
    assert summary.columns == ["temperature", *SUMMARY_COLUMNS]
    row = summary.row(0, named=True)
    flat = [x for rs in table for x in rs]
    task_means = [statistics.mean(rs) for rs in table]
    assert row["config"] == "temperature~0.5"
    assert (row["n_rollouts"], row["n_tasks"], row["n_repeats"], row["k"]) == (9, 3, 3, 3)
    assert row["mean"] == pytest.approx(statistics.mean(flat))
    assert row["std"] == pytest.approx(statistics.stdev(flat))
    # equal repeats: the clustered standard error is stdev(task means) / sqrt(tasks)
    assert row["sem"] == pytest.approx(statistics.stdev(task_means) / math.sqrt(3))
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["pass_at_1"] == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)  # success: reward >= 1
    assert row["pass_at_k"] == pytest.approx(2 / 3)  # tasks 0 and 2 have a success in 3
    assert row["majority_at_k"] == pytest.approx(2 / 3)  # 2 of 3 successes is a majority
    assert row["n_failures"] == 1 and row["failure_rate"] == pytest.approx(1 / 10)
    assert row["n_low_reward"] == 4 and row["low_reward_rate"] == pytest.approx(4 / 9)
    assert row["mean_latency_s"] == pytest.approx(
        statistics.mean([0.5] * 3 + [1.5] * 3 + [2.5] * 3)
    )
    assert row["mean_output_tokens"] == pytest.approx(5.0)


def test_pass_at_k_formula_and_unequal_repeats():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0

    # the estimator is the chance that a random k-subset of the n samples holds a success
    def brute(outcomes: list[int], k: int) -> float:
        subsets = list(itertools.combinations(outcomes, k))
        return sum(any(s) for s in subsets) / len(subsets)

    assert pass_at_k(6, 2, 3) == pytest.approx(brute([1, 1, 0, 0, 0, 0], 3))
    # tasks with 4 and 3 repeats: k is the fewest (3), each task uses its own n
    frame = frame_of([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    row = summarize([({}, frame)]).row(0, named=True)
    assert row["k"] == 3 and row["n_repeats"] == 4
    assert row["pass_at_k"] == pytest.approx((brute([1, 0, 0, 0], 3) + 0.0) / 2)  # (0.75 + 0) / 2
    assert row["majority_at_k"] == 0.0


def test_single_repeat_has_no_pass_at_k_and_sem_is_plain():
    rewards = [1.0, 0.0, 0.5, 1.0, 0.0]
    row = summarize([({}, frame_of([[r] for r in rewards]))]).row(0, named=True)
    assert row["k"] == 1 and row["pass_at_k"] is None and row["majority_at_k"] is None
    assert row["sem"] == pytest.approx(statistics.stdev(rewards) / math.sqrt(len(rewards)))
    assert clustered_sem(np.array([1.0]), np.array([1.0])) is None


def test_majority_needs_a_strict_majority():
    frame = frame_of([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [1.0, 0.5, 1.0, 0.5]])
    assert summarize([({}, frame)]).item(0, "majority_at_k") == pytest.approx(1 / 3)


def test_clustered_bootstrap_is_wider_when_repeats_agree():
    # 20 tasks, each answered the same way 5 times: the information is 20 tasks, not 100 rows
    table = [[float(t % 2)] * 5 for t in range(20)]
    flat = [x for rs in table for x in rs]
    sums = [sum(rs) for rs in table]
    low, high = cluster_bootstrap_ci(sums, [5] * 20, n_bootstrap=2000, seed=1)
    flat_low, flat_high = cluster_bootstrap_ci(flat, [1] * 100, n_bootstrap=2000, seed=1)
    assert low < 0.5 < high and flat_low < 0.5 < flat_high
    assert (high - low) > 1.8 * (flat_high - flat_low)  # about sqrt(5) = 2.24 times
    row = summarize([({}, frame_of(table))], n_bootstrap=2000, seed=1).row(0, named=True)
    assert (row["ci_low"], row["ci_high"]) == (low, high)
    assert cluster_bootstrap_ci([3.0], [5.0]) == (None, None)


def test_bootstrap_ci_matches_normal_theory_for_continuous_rewards():
    rng = np.random.default_rng(3)
    values = rng.normal(0.6, 0.2, size=400)  # all distinct: resampling by index
    low, high = cluster_bootstrap_ci(values, np.ones(400), n_bootstrap=2000, seed=0)
    half = 1.96 * values.std(ddof=1) / math.sqrt(400)
    assert low == pytest.approx(values.mean() - half, abs=0.25 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.25 * half)
    binary = (values > 0.6).astype(float)  # two distinct values: multinomial draws
    low, high = cluster_bootstrap_ci(binary, np.ones(400), n_bootstrap=2000, seed=0)
    half = 1.96 * binary.std(ddof=1) / math.sqrt(400)
    assert low == pytest.approx(binary.mean() - half, abs=0.25 * half)
    assert high == pytest.approx(binary.mean() + half, abs=0.25 * half)


def test_sign_flip_test():
    assert sign_flip_test([1.0] * 5) == pytest.approx(2 / 32)  # exact: all or none positive
    assert sign_flip_test([0.0, 0.0]) == 1.0
    assert sign_flip_test([0.5, -0.5, 0.5, -0.5]) == 1.0
    assert sign_flip_test([0.2] * 40 + [-0.2] * 2, n_resamples=2000) < 0.001
    assert sign_flip_test(list(np.linspace(-1, 1, 41)), n_resamples=2000) > 0.5


# --------------------------------------------------------------------------- per task


def test_per_task_matches_statistics_and_outcomes():
    table = [[1.0, 0.0, 0.5, 1.0, 1.0], [0.0] * 5, [1.0] * 5, [0.5] * 5, [0.25]]
    frame = per_task([({"temperature": 0.9}, frame_of(table))])
    assert frame.columns == [
        "temperature",
        "config",
        "task_index",
        "task_id",
        "n",
        "mean",
        "std",
        "min",
        "max",
        "outcome",
    ]
    for task, rewards in enumerate(table):
        row = frame.row(task, named=True)
        assert row["task_index"] == task and row["n"] == len(rewards)
        assert row["mean"] == pytest.approx(statistics.mean(rewards))
        if len(rewards) > 1:
            assert row["std"] == pytest.approx(statistics.stdev(rewards))
        else:
            assert row["std"] is None
        assert (row["min"], row["max"]) == (min(rewards), max(rewards))
    assert frame.get_column("outcome").to_list() == [
        "mixed",
        "always_0",
        "always_1",
        "constant_other",
        "constant_other",
    ]
    counts = task_outcomes(frame).row(0, named=True)
    assert counts == {
        "temperature": 0.9,
        "config": "temperature~0.9",
        "n_tasks": 5,
        "always_0": 1,
        "always_1": 1,
        "constant_other": 2,
        "mixed": 1,
    }


def test_reward_distribution_counts_like_uniq_c():
    a = [[0.0, 0.5, 1.0], [1.0, 1.0, 0.5], [0.0, 1.0, 1.0]]
    b = [[0.0, 0.0, 0.0], [0.25, 1.0, 1.0], [0.0, 0.0, 0.0]]
    dist = reward_distribution([({"t": 0.1}, frame_of(a)), ({"t": 0.9}, frame_of(b))])
    assert dist.columns == ["t", "config", "reward", "count"]
    for label, table in (("t~0.1", a), ("t~0.9", b)):
        part = dist.filter(pl.col("config") == label)
        expected = sorted(Counter(x for rs in table for x in rs).items())
        assert list(zip(part["reward"], part["count"], strict=True)) == expected
    with_base = reward_distribution([({}, frame_of(a))], baseline=frame_of(b))
    assert with_base.columns == ["config", "reward", "count", "baseline_count"]
    assert with_base.select("reward", "count", "baseline_count").rows() == [
        (0.0, 2, 6),
        (0.25, 0, 1),
        (0.5, 2, 0),
        (1.0, 5, 2),
    ]


def test_low_reward_rollouts_are_copied_verbatim(tmp_path):
    rows = rows_from([[0.0, 0.29, 0.3], [1.0, 0.1]])
    path = tmp_path / "r.jsonl"
    lines = [json.dumps(row) for row in rows]
    path.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]))  # a blank line, no final newline
    result = low_reward_rollouts(path, tmp_path / "failures.jsonl", threshold=0.3)
    assert (result.count, result.total, result.rate) == (3, 5, pytest.approx(0.6))
    written = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert written == [lines[0], lines[1], lines[4]]


# --------------------------------------------------------------------------- best params


def test_best_params_picks_a_clear_winner():
    rng = np.random.default_rng(0)
    weak = [[float(x) for x in rng.random(3) < 0.2] for _ in range(30)]
    strong = [[float(x) for x in rng.random(3) < 0.9] for _ in range(30)]
    configs = [
        ConfigRollouts({"temperature": 0.1}, frame_of(weak)),
        ConfigRollouts({"temperature": 0.5}, frame_of(strong)),
    ]
    summary = summarize(configs, n_bootstrap=500)
    result = best_params(summary, configs, n_bootstrap=500)
    assert result["verdict"] == "best"
    assert result["best"]["params"] == {"temperature": 0.5}
    assert result["runner_up"]["params"] == {"temperature": 0.1}
    diff = result["difference"]
    expected = statistics.mean(
        statistics.mean(s) - statistics.mean(w) for s, w in zip(strong, weak, strict=True)
    )
    assert diff["estimate"] == pytest.approx(expected)
    assert diff["ci_low"] > 0 and diff["p_value"] < 0.05 and diff["n_paired_tasks"] == 30
    assert result["best"]["mean"] == summary.item(1, "mean")
    json.dumps(result, allow_nan=False)


def test_best_params_tie_only_and_none():
    table = [[1.0, 0.0], [0.5, 1.0], [0.0, 0.0], [1.0, 1.0]] * 5
    twins = [({"temperature": t}, frame_of(table)) for t in (0.3, 0.7)]
    result = best_params(summarize(twins, n_bootstrap=200), twins, n_bootstrap=200)
    assert result["verdict"] == "tie"
    assert result["difference"]["estimate"] == 0.0 and result["difference"]["p_value"] == 1.0
    single = [({"temperature": 0.3}, frame_of(table))]
    result = best_params(summarize(single, n_bootstrap=200), single)
    assert result["verdict"] == "only" and result["runner_up"] is None
    assert result["best"]["params"] == {"temperature": 0.3}
    empty = [({"temperature": 0.3}, frame_of([]).cast({"reward": pl.Float64}))]
    assert best_params(summarize(empty), empty)["verdict"] == "none"


def test_best_params_by_pass_at_k():
    a = [[1.0, 0.0, 0.0]] * 20  # pass@3 = 1, mean 1/3
    b = [[1.0, 1.0, 0.0]] * 10 + [[0.0, 0.0, 0.0]] * 10  # pass@3 = 0.5, mean 1/3
    configs = [({"agent": "a"}, frame_of(a)), ({"agent": "b"}, frame_of(b))]
    result = best_params(summarize(configs), configs, metric="pass_at_k", n_bootstrap=500)
    assert result["best"]["params"] == {"agent": "a"} and result["best"]["pass_at_k"] == 1.0
    assert result["difference"]["estimate"] == pytest.approx(0.5)
    assert result["verdict"] == "best"


def bernoulli_table(rng: np.random.Generator, means: np.ndarray, repeats: int) -> list[list[float]]:
    return [[float(x) for x in rng.random(repeats) < p] for p in means]


def one_far_two_close() -> list:
    """Three temperatures over 60 tasks x 4 repeats: 0.1 far below, 0.5 and 0.9 close."""
    rng = np.random.default_rng(11)
    difficulty = rng.uniform(0.2, 0.8, size=60)
    return [
        ({"temperature": t}, frame_of(bernoulli_table(rng, np.clip(difficulty + shift, 0, 1), 4)))
        for t, shift in ((0.1, -0.45), (0.5, 0.15), (0.9, 0.13))
    ]


def test_the_indistinguishable_set_holds_the_close_configurations_not_the_far_ones():
    configs = one_far_two_close()
    result = best_params(summarize(configs, n_bootstrap=300), configs, n_bootstrap=1000)
    assert result["best"]["params"] == {"temperature": 0.5}
    assert result["verdict"] == "tie"
    assert result["indistinguishable_from_best"] == ["temperature~0.9"]
    far = next(c for c in result["comparisons"] if c["config"] == "temperature~0.1")
    assert far["distinguishable"] and far["p_holm"] < 0.05
    assert all(c["p_holm"] >= c["p_value"] for c in result["comparisons"])
    power = result["power"]
    assert power["detectable_difference"] > 0.02  # 60 tasks x 4 repeats cannot see 0.02
    assert power["repeats_needed"] > 4 and "more repeats would detect 0.05" in power["advice"]


def test_the_verdict_line_says_what_more_data_would_settle_a_tie():
    configs = one_far_two_close()
    picks = best_params(summarize(configs, n_bootstrap=300), configs, n_bootstrap=1000)
    line = verdict_line(picks)
    best, runner_up = picks["best"], picks["runner_up"]
    assert line == (
        f"tie: temperature~0.5 {best['mean']:.3g} vs temperature~0.9 {runner_up['mean']:.3g}"
        f" — {picks['power']['advice']}"
    )
    clear = configs[:2]
    assert verdict_line(best_params(summarize(clear, n_bootstrap=300), clear)).startswith(
        "best: temperature~0.5 "
    )


def test_under_the_null_best_is_said_in_at_most_alpha_of_sweeps():
    # 5 equal configurations, tasks of varying difficulty: Holm over the 4 comparisons
    rng = np.random.default_rng(12)
    said_best = 0
    for _ in range(150):
        difficulty = rng.uniform(0.1, 0.9, size=40)
        configs = [
            ({"temperature": t}, frame_of(bernoulli_table(rng, difficulty, 2)))
            for t in (0.1, 0.3, 0.5, 0.7, 0.9)
        ]
        result = best_params(summarize(configs, n_bootstrap=100), configs, n_bootstrap=200)
        said_best += result["verdict"] == "best"
    assert said_best / 150 <= 0.05


# --------------------------------------------------------------------------- outputs


def test_write_experiment_outputs(tmp_path):
    configs = []
    for temperature, p in ((0.1, 0.2), (0.5, 0.8)):
        rng = np.random.default_rng(int(temperature * 10))
        table = [[float(x) for x in rng.random(4) < p] for _ in range(12)]
        path = write_rows(tmp_path / f"temperature~{temperature}.jsonl", rows_from(table))
        configs.append(({"temperature": temperature}, path, None))
    write_rows(
        tmp_path / "temperature~0.1_failures.jsonl",
        [{"_ng_task_index": 12, "_ng_rollout_index": 0, "error_kind": "timeout"}],
    )
    out = tmp_path / "out"
    paths = write_experiment_outputs(
        out, configs, StatsSettings(n_bootstrap=300), baseline=configs[0][1]
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)
    summary = pl.read_csv(paths["summary.csv"])
    assert summary.get_column("n_failures").to_list() == [1, 0]
    assert pl.read_parquet(paths["summary.parquet"]).equals(
        summarize(
            [(c[0], load_rollouts(c[1]), n) for c, n in zip(configs, (1, 0), strict=True)],
            n_bootstrap=300,
        )
    )
    best = json.loads(paths["best_params.json"].read_text())
    assert set(best) == {
        "metric",
        "alpha",
        "n_configs",
        "verdict",
        "best",
        "runner_up",
        "difference",
        "comparisons",
        "indistinguishable_from_best",
        "power",
    }
    assert best["best"]["params"] == {"temperature": 0.5}
    low = [
        line
        for _, path, _ in configs
        for line in path.read_text().splitlines()
        if json.loads(line)["reward"] < 0.3
    ]
    assert paths["failures.jsonl"].read_text().splitlines() == low
    assert pl.read_csv(paths["per_task.csv"]).height == 24
    assert pl.read_csv(paths["task_outcomes.csv"]).get_column("n_tasks").to_list() == [12, 12]
    assert "baseline_count" in pl.read_csv(paths["reward_distribution.csv"]).columns
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    plots = write_experiment_plots(out, tmp_path / "plots")
    for path in plots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reward_plot_stars_the_best_and_rings_the_indistinguishable(tmp_path, monkeypatch):
    summary = pl.DataFrame(
        {
            "temperature": [0.1, 0.5, 0.9],
            "config": ["temperature~0.1", "temperature~0.5", "temperature~0.9"],
            "mean": [0.2, 0.6, 0.55],
            "ci_low": [0.1, 0.5, 0.45],
            "ci_high": [0.3, 0.7, 0.65],
        }
    )
    drawn = []
    real_save = plots_module._save
    monkeypatch.setattr(plots_module, "_save", lambda figure, path: drawn.append(figure))
    plots_module.plot_reward_vs_params(
        summary, tmp_path / "r.png", best="temperature~0.5", indistinguishable=["temperature~0.9"]
    )
    axes = drawn[0].axes[0]
    marks = {
        c.get_label(): c.get_offsets().tolist() for c in axes.collections if c.get_offsets().size
    }
    assert marks["best"] == [[0.5, 0.6]]
    assert marks["indistinguishable from best (Holm)"] == [[0.9, 0.55]]
    assert real_save(drawn[0], tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_config_label_and_param_columns():
    assert config_label({"temperature": 0.5, "top_p": 0.9}) == "temperature~0.5/top_p~0.9"
    assert config_label({}) == "default"
    frame = frame_of([[1.0]])
    with pytest.raises(ValueError, match="clash"):
        summarize([({"mean": 1}, frame)])
    summary = summarize([({"tools": ["a", "b"]}, frame)])
    assert summary.item(0, "tools") == '["a", "b"]'


def test_config_label_matches_the_configuration_directory():
    """A boolean grid value is spelled as in the directory name (`flag~true`), not `True`."""
    experiment = ExperimentConfig(
        input="tasks.jsonl",
        grid={"responses_create_params.parallel_tool_calls": [True, False], "agent_name": ["a"]},
    )
    for point in configurations("x", experiment):
        assert config_label(point.params) == point.label
