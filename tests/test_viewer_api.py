"""The viewer's JSON API, served by uvicorn on a loopback port, against generated files."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import ThreadedServer
from demo_rollouts import SCRIPT_PAYLOAD, demo_rollout, write_demo_rollouts

from rollsweep.cli import run_command
from rollsweep.viewer.app import STATIC, create_app
from rollsweep.viewer.query import FilterError, parse_reward_filter
from rollsweep.viewer.workspace import Workspace, find_sources

N_TASKS, N_REPEATS = 12, 5


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("viewer")
    cold, hot = root / "t07.jsonl", root / "t09.jsonl"
    write_demo_rollouts(cold, N_TASKS, N_REPEATS, temperature=0.7)
    write_demo_rollouts(hot, N_TASKS, N_REPEATS, temperature=0.9)
    experiment = root / "results" / "temperature_sweep"
    for temperature in (0.1, 0.5, 0.9, 1.3):
        folder = experiment / f"temperature~{temperature}"
        folder.mkdir(parents=True)
        write_demo_rollouts(folder / "rollouts.jsonl", 4, 2, temperature=temperature)
        (folder / "rollouts_failures.jsonl").write_text("")
    return {"cold": cold, "hot": hot, "experiment": experiment, "root": root}


@pytest.fixture(scope="module")
def server(files: dict[str, Path]):
    workspace = Workspace([files["cold"], files["hot"]])
    for source in workspace.sources:
        source.index.wait(30)
    with (
        ThreadedServer(create_app(workspace)) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        yield client
    workspace.close()


def test_rows_page_and_count(server: httpx.Client, files: dict[str, Path]) -> None:
    body = server.get("/api/rows", params={"limit": 7, "offset": 5}).json()
    assert body["total"] == body["matched"] == N_TASKS * N_REPEATS
    assert body["complete"] is True
    rows = read(files["cold"])
    assert [r["i"] for r in body["rows"]] == list(range(5, 12))
    first = body["rows"][0]
    assert (first["task_index"], first["repeat"]) == (1, 0)
    assert first["reward"] == rows[5]["reward"]
    assert first["output"] == " ".join(rows[5]["output"].split())
    assert first["params"] == "temperature=0.7 max_output_tokens=96"
    assert first["line"] == 6


def test_reward_filter_shows_exactly_the_failures(
    server: httpx.Client, files: dict[str, Path]
) -> None:
    expected = [i for i, row in enumerate(read(files["cold"])) if row["reward"] < 0.3]
    body = server.get("/api/rows", params={"reward": "< 0.3", "limit": 500}).json()
    assert body["matched"] == len(expected) > 0
    assert [r["i"] for r in body["rows"]] == expected
    both = server.get("/api/rows", params={"reward": "> 0 and < 1", "limit": 500}).json()
    assert all(r["reward"] == 0.5 for r in both["rows"]) and both["matched"] > 0


def test_bad_filter_and_sort_are_400_with_a_message(server: httpx.Client) -> None:
    response = server.get("/api/rows", params={"reward": "<< 0.3"})
    assert response.status_code == 400
    assert "< 0.3" in response.json()["error"]
    assert server.get("/api/rows", params={"sort": "nope"}).status_code == 400
    assert server.get("/api/rows", params={"src": 9}).status_code == 404


def test_text_search_and_sort(server: httpx.Client, files: dict[str, Path]) -> None:
    rows = read(files["cold"])
    body = server.get("/api/rows", params={"q": "<SCRIPT>", "limit": 500}).json()
    assert [r["i"] for r in body["rows"]] == [
        i for i, r in enumerate(rows) if r["_ng_task_index"] == 3
    ]
    # text with JSON escapes in the file (a backslash, a quote) is found too
    escaped = server.get("/api/rows", params={"q": "\\boxed{", "limit": 500}).json()
    assert escaped["matched"] == sum("\\boxed{" in json.dumps(r) for r in rows) > 0
    quoted = server.get("/api/rows", params={"q": 'title = "pwned"', "limit": 500}).json()
    assert quoted["matched"] == N_REPEATS
    ordered = server.get("/api/rows", params={"sort": "-reward", "limit": 500}).json()["rows"]
    rewards = [r["reward"] for r in ordered]
    assert rewards == sorted(rewards, reverse=True)


def test_groups_have_repeats_side_by_side_with_mu_and_sigma(
    server: httpx.Client, files: dict[str, Path]
) -> None:
    rows = read(files["cold"])
    body = server.get("/api/groups", params={"limit": 500}).json()
    assert body["matched"] == body["total_groups"] == N_TASKS
    for group in body["groups"]:
        rewards = [r["reward"] for r in rows if r["_ng_task_index"] == group["task_index"]]
        assert group["n"] == len(group["repeats"]) == N_REPEATS
        assert [m["repeat"] for m in group["repeats"]] == list(range(N_REPEATS))
        assert group["mean"] == pytest.approx(statistics.mean(rewards))
        assert group["std"] == pytest.approx(statistics.stdev(rewards))
    by_std = server.get("/api/groups", params={"sort": "-std", "limit": 500}).json()["groups"]
    assert [g["std"] for g in by_std] == sorted((g["std"] for g in by_std), reverse=True)
    failing = server.get("/api/groups", params={"reward": "< 0.3", "limit": 500}).json()
    tasks = {r["_ng_task_index"] for r in rows if r["reward"] < 0.3}
    assert {g["task_index"] for g in failing["groups"]} == tasks
    for group in failing["groups"]:
        for member in group["repeats"]:
            assert member["match"] == (member["reward"] < 0.3)


def test_row_detail_has_conversation_tool_calls_and_verifier(server: httpx.Client) -> None:
    tool_row = 9 * N_REPEATS + 2  # task 9 is a tool task
    detail = server.get(f"/api/row/{tool_row}").json()
    kinds = [entry["kind"] for entry in detail["conversation"]]
    assert kinds == ["user", "tool_call", "tool_output", "assistant"]
    call = detail["conversation"][1]
    assert call["label"] == "call calculator" and '"expression"' in call["text"]
    assert detail["verification"]["verifier"] == "math"
    assert detail["tools"] == ["calculator"]
    assert detail["task_fields"]["expected_answer"] == detail["raw"]["expected_answer"]
    assert [s["repeat"] for s in detail["siblings"]] == list(range(N_REPEATS))
    assert detail["task_stats"]["n"] == N_REPEATS
    assert server.get("/api/row/100000").status_code == 404


def test_histogram_is_the_uniq_c_of_rewards(server: httpx.Client, files: dict[str, Path]) -> None:
    counts = Counter(row["reward"] for row in read(files["cold"]))
    body = server.get("/api/histogram").json()
    assert body["kind"] == "discrete"
    assert {b["value"]: b["count"] for b in body["bins"]} == dict(counts)


def test_compare_pairs_by_task_and_repeat(server: httpx.Client, files: dict[str, Path]) -> None:
    cold, hot = read(files["cold"]), read(files["hot"])
    changed = [
        (a["_ng_task_index"], a["_ng_rollout_index"])
        for a, b in zip(cold, hot, strict=True)
        if a["reward"] != b["reward"]
    ]
    assert changed, "the two temperatures must differ somewhere"
    body = server.get("/api/compare", params={"a": 0, "b": 1, "limit": 500}).json()
    assert [(r["task_index"], r["repeat"]) for r in body["rows"]] == changed
    summary = body["summary"]
    assert summary["changed"] == len(changed)
    assert summary["paired"] == len(cold)
    assert summary["up"] + summary["down"] == len(changed)
    assert sum(t["count"] for t in summary["transitions"]) == len(changed)
    for row in body["rows"]:
        assert row["delta"] == pytest.approx(row["reward_b"] - row["reward_a"])
    up = server.get("/api/compare", params={"view": "up", "limit": 500}).json()
    assert up["matched"] == summary["up"] and all(r["delta"] > 0 for r in up["rows"])
    everything = server.get("/api/compare", params={"view": "all", "limit": 500}).json()
    assert everything["matched"] == len(cold)


def test_compare_pairs_shuffled_and_partial_files(tmp_path: Path) -> None:
    a_rows = [demo_rollout(t, r, temperature=0.7) for t in range(4) for r in range(3)]
    b_rows = [demo_rollout(t, r, temperature=0.7) for t in range(4) for r in range(3)]
    b_rows = list(reversed(b_rows))[:-2]  # completion order, and two rows missing
    b_rows[0]["reward"] = 0.25
    a_path, b_path = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a_path.write_text("".join(json.dumps(r) + "\n" for r in a_rows))
    b_path.write_text("".join(json.dumps(r) + "\n" for r in b_rows))
    workspace = Workspace([a_path, b_path])
    with ThreadedServer(create_app(workspace)) as running:
        body = httpx.get(f"{running.url}/api/compare", params={"view": "all"}, timeout=30).json()
    workspace.close()
    summary = body["summary"]
    assert summary["paired"] == 10 and summary["only_a"] == 2 and summary["changed"] == 1
    changed = [r for r in body["rows"] if r["status"] == "changed"]
    assert [(r["task_index"], r["repeat"], r["reward_b"]) for r in changed] == [(3, 2, 0.25)]


def test_experiment_directory_lists_its_configurations(files: dict[str, Path]) -> None:
    found = find_sources([files["experiment"]])
    assert [label for label, _ in found] == [
        "temperature~0.1",
        "temperature~0.5",
        "temperature~0.9",
        "temperature~1.3",
    ]
    workspace = Workspace([files["experiment"]])
    with ThreadedServer(create_app(workspace)) as running:
        sources = httpx.get(f"{running.url}/api/sources", timeout=30).json()
        assert sources["compare"] is False
        assert len(sources["sources"]) == 4
        assert workspace.sources[2].index.wait(30)  # rows are served as they are indexed
        third = httpx.get(f"{running.url}/api/rows", params={"src": 2}, timeout=30).json()
        assert third["rows"][0]["params"].startswith("temperature=0.9")
    workspace.close()


def test_page_is_locked_down(server: httpx.Client) -> None:
    page = server.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/app.js"' in page.text
    assert server.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert server.get("/static/../app.py").status_code == 404
    # a page on another host name (DNS rebinding) cannot read the API
    assert server.get("/api/sources", headers={"Host": "evil.example"}).status_code == 400


def test_the_page_script_never_parses_html() -> None:
    source = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink
    assert "new Function" not in source


def test_bad_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    rows = [demo_rollout(0, r) for r in range(3)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + "\n   \n" + "[1, 2]\n" + json.dumps(rows[0])[:40])
    workspace = Workspace([path])
    source = workspace.sources[0]
    source.index.wait(30)
    status = source.index.status()
    assert status["rows"] == 3
    assert status["bad_lines"] == 2
    assert [bad["line"] for bad in status["bad_line_report"]] == [6, 7]
    assert source.index.read_row(2)["_ng_rollout_index"] == 2
    workspace.close()


def test_script_payload_round_trips_as_text(server: httpx.Client) -> None:
    detail = server.get(f"/api/row/{3 * N_REPEATS}").json()
    assert SCRIPT_PAYLOAD in detail["conversation"][0]["text"]
    assert SCRIPT_PAYLOAD in detail["output"]


@pytest.mark.parametrize(
    ("text", "rewards"),
    [
        ("< 0.3", [0.0]),
        ("reward < 0.3", [0.0]),
        ("<=0.5", [0.0, 0.5]),
        ("== 1", [1.0]),
        ("1", [1.0]),
        ("!= 0.5", [0.0, 1.0]),
        ("> 0 and < 1", [0.5]),
        ("== 0 or == 1", [0.0, 1.0]),
        ("0.4..1", [0.5, 1.0]),
        ("missing", [None]),
    ],
)
def test_reward_filter_language(text: str, rewards: list) -> None:
    import polars as pl

    frame = pl.DataFrame({"reward": [0.0, 0.5, 1.0, None]}, schema={"reward": pl.Float64})
    expr = parse_reward_filter(text)
    assert frame.filter(expr).get_column("reward").to_list() == rewards


@pytest.mark.parametrize("text", ["<< 1", "reward", "> 0 and", "abc", "= x"])
def test_reward_filter_errors(text: str) -> None:
    with pytest.raises(FilterError):
        parse_reward_filter(text)


# --------------------------------------------------------------------------- command line


def test_bad_command_lines_exit_2_with_one_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    empty = files["root"] / "empty_dir"
    empty.mkdir(exist_ok=True)
    not_jsonl = files["root"] / "notes.txt"
    not_jsonl.write_text("hello\n")
    cases = [
        ("ng_viewer", []),
        ("ng_viewer", ["+input_jsonl_fpath=/nonexistent/rollouts.jsonl"]),
        ("ng_viewer", [f"+input_jsonl_fpath={files['cold']}", "+colour=blue"]),
        ("ng_viewer", [f"+input_jsonl_fpath={files['cold']}", "+port=99999"]),
        ("ng_viewer", [f"+input_jsonl_fpath={empty}"]),
        ("ng_viewer", [f"+input_jsonl_fpath={not_jsonl}"]),
        ("view", []),
        ("view", [str(files["cold"]), "--port", "abc"]),
        ("view", ["/nonexistent.jsonl"]),
    ]
    for command, argv in cases:
        assert run_command(command, argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, (argv, err)
    assert run_command("ng_viewer", [f"+input_jsonl_fpath={not_jsonl}"]) == 2
    assert "notes.txt:1: not a JSONL file" in capsys.readouterr().err


def test_port_in_use_is_a_usage_error(
    files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert (
            run_command("ng_viewer", [f"+input_jsonl_fpath={files['cold']}", f"+port={port}"]) == 2
        )
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_ng_viewer_serves_on_loopback_and_stops(files: dict[str, Path]) -> None:
    code = "from rollsweep.cli import ng_viewer; ng_viewer()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, f"+input_jsonl_fpath={files['cold']}", "+port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        url = match.group(0)
        deadline = time.monotonic() + 20
        while True:
            try:
                sources = httpx.get(f"{url}api/sources", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert sources["sources"][0]["label"] == files["cold"].name
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode in (0, 130), process.stderr.read()
