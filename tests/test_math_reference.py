"""The math verifier against NeMo Gym's math_with_judge (verdicts recorded from its own code),
hand-labelled truths, its timeouts as failures, its worker processes and its judge step."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from conftest import ThreadedServer
from fastapi.testclient import TestClient

from rollsweep.config import ModelServerConfig, ResourcesServerConfig, SimulatedSettings
from rollsweep.servers.model import create_model_app
from rollsweep.servers.resources import create_resources_app
from rollsweep.verifiers import load_verifier
from rollsweep.verifiers.base import VerifierFailure
from rollsweep.verifiers.math_answer import WorkerPool, judges_equal

FIXTURES = Path(__file__).parent / "fixtures" / "math"
#: sympy works on this for many seconds: a deadline always catches it
SLOW = {"expected_answer": "3^{100000000}", "text": "\\boxed{3}"}


def reply(text: str) -> dict:
    return {"output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_agrees_with_nemo_gym_and_has_no_false_positive() -> None:
    corpus = {row["id"]: row for row in read(FIXTURES / "corpus.jsonl")}
    reference = read(FIXTURES / "nemo_gym_verdicts.jsonl")
    assert len(reference) == len(corpus) >= 150
    verify = load_verifier("math").verify
    outcome: Counter[str] = Counter()
    reward_differs = []
    for ref in reference:
        row = corpus[ref["id"]]
        got = verify({"expected_answer": row["expected_answer"]}, reply(row["response"]))
        # the library step is NeMo Gym's, answer for answer
        assert (got["library_reward"], got["extracted_answer"]) == (
            ref["library_reward"],
            ref["extracted_answer"],
        ), row
        if got["reward"] != ref["reward"]:
            reward_differs.append(row["id"])
        outcome[f"{row['truth']}->{got['reward']:g}"] += 1
    assert outcome["0->1"] == 0  # no false positive at all
    agreement = 1 - len(reward_differs) / len(reference)
    assert agreement >= 0.98, reward_differs
    # the differences are exactly the matches that need rounding (exact mode's rejections)
    for row_id in reward_differs:
        row = corpus[row_id]
        got = verify({"expected_answer": row["expected_answer"]}, reply(row["response"]))
        assert got["rounding_only"] and got["library_reward"] == 1.0 and row["truth"] == 0
        library = verify(
            {"expected_answer": row["expected_answer"], "grading_mode": "library"},
            reply(row["response"]),
        )
        assert library["reward"] == 1.0  # NeMo Gym's verdict, on request


def test_the_issues_cases() -> None:
    verify = load_verifier("math").verify
    cases = [
        ("2\\sqrt{3}", "\\boxed{2}", 0.0),
        ("3\\pi", "\\boxed{3}", 0.0),
        ("x+1", "\\boxed{1+x}", 1.0),
        ("\\sqrt{2}", "\\boxed{2^{1/2}}", 1.0),
        ("7", "The answer is \\boxed{7", 0.0),
        ("3", "12. I checked it in 3 steps.", 1.0),  # no box: NeMo Gym's last expression
        ("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}", 1.0),
        ("[1, 2)", "\\boxed{[1,2)}", 1.0),
        ("[1, 2)", "\\boxed{(1,2]}", 0.0),
        ("y = 2x+1", "\\boxed{y=1+2x}", 1.0),
        ("50\\%", "\\boxed{0.5}", 1.0),
        ("\\pi", "\\boxed{3.1415926}", 0.0),
    ]
    for expected, text, reward in cases:
        assert verify({"expected_answer": expected}, reply(text))["reward"] == reward, text


def test_the_graded_text_joins_every_message_as_nemo_gym() -> None:
    response = {
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "It is \\boxed"}]},
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "1"},
            {"type": "message", "content": [{"type": "output_text", "text": "{12}."}]},
        ]
    }
    result = load_verifier("math").verify({"expected_answer": "12"}, response)
    assert result["reward"] == 1.0


def test_empty_answers_score_zero() -> None:
    verify = load_verifier("math").verify
    for response in (reply(""), reply("  \n"), {"output": []}):
        assert verify({"expected_answer": "0"}, response)["reward"] == 0.0


def test_a_timeout_is_a_failure_not_a_zero() -> None:
    task = {"expected_answer": SLOW["expected_answer"], "library_verifier_timeout_seconds": 0.5}
    started = time.monotonic()
    with pytest.raises(VerifierFailure) as caught:
        load_verifier("math").verify(task, reply(SLOW["text"]))
    assert caught.value.failure_class == "verifier_timeout"
    assert time.monotonic() - started < 0.5 + 2.0 + 5.0  # deadline + kill grace + slack
    # the same row through the resources server: HTTP 200, routed by _ng_failure_class
    app = create_resources_app(ResourcesServerConfig(verifier="math"))
    with TestClient(app) as client:
        answer = client.post("/verify", json={**task, "response": reply(SLOW["text"])})
        assert answer.status_code == 200
        body = answer.json()
        assert body["reward"] == 0.0 and body["_ng_failure_class"] == "verifier_timeout"
        assert "0.5 s" in body["failure_message"]
        fine = client.post("/verify", json={"expected_answer": "2", "response": reply("2")})
        assert fine.json()["reward"] == 1.0 and "_ng_failure_class" not in fine.json()


def test_an_expected_answer_math_verify_cannot_parse_is_a_failure() -> None:
    # NeMo Gym scores such rows 0.0 (math_metric raises, the server catches it)
    with pytest.raises(VerifierFailure) as caught:
        load_verifier("math").verify({"expected_answer": "\\text{}"}, reply("\\boxed{3}"))
    assert caught.value.failure_class == "expected_answer_unparsable"


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


def test_a_wedged_worker_is_killed_and_replaced() -> None:
    pool = WorkerPool(size=1)
    try:
        before = _children()
        assert pool.check("1", "\\boxed{1}", 10.0)["library_reward"] == 1.0
        (worker_pid,) = _children() - before
        os.kill(worker_pid, signal.SIGSTOP)  # hung where no signal handler can run
        with pytest.raises(VerifierFailure, match=r"did not finish within 0\.5 s") as caught:
            pool.check("2", "\\boxed{2}", 0.5)
        assert caught.value.failure_class == "verifier_timeout" and pool.replaced == 1
        assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == "zombie"
        # the next row gets a fresh worker
        assert pool.check("2", "\\boxed{2}", 10.0)["library_reward"] == 1.0
    finally:
        pool.close()


def test_a_dead_worker_is_replaced_and_a_row_that_kills_workers_is_a_failure() -> None:
    pool = WorkerPool(size=1)
    try:
        before = _children()
        pool.check("1", "\\boxed{1}", 10.0)
        (worker_pid,) = _children() - before
        os.kill(worker_pid, signal.SIGKILL)  # dies while idle: the row is not affected
        assert pool.check("3", "\\boxed{3}", 10.0)["library_reward"] == 1.0

        stop = threading.Event()

        def kill_workers() -> None:  # stands in for a row that crashes every worker
            while not stop.wait(0.2):
                for pid in _children() - before:
                    os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_workers)
        killer.start()
        try:
            with pytest.raises(VerifierFailure) as caught:
                pool.check(SLOW["expected_answer"], SLOW["text"], 30.0)
        finally:
            stop.set()
            killer.join()
        assert caught.value.failure_class == "verifier_crashed"
        assert pool.check("4", "\\boxed{4}", 10.0)["library_reward"] == 1.0
    finally:
        pool.close()


def test_verifies_from_many_threads() -> None:
    # servers verify in worker threads, where signal-based timeouts cannot run
    verify = load_verifier("math").verify
    rows = [(str(n), f"\\boxed{{{n if n % 3 else n + 1}}}") for n in range(24)]
    with ThreadPoolExecutor(8) as executor:
        rewards = list(
            executor.map(lambda r: verify({"expected_answer": r[0]}, reply(r[1]))["reward"], rows)
        )
    assert rewards == [0.0 if n % 3 == 0 else 1.0 for n in range(24)]


# --------------------------------------------------------------------------- the judge


def test_judge_labels() -> None:
    assert judges_equal("Same value. [[A=B]]")
    assert not judges_equal("Different. [[A!=B]]")
    assert judges_equal("[[A=B]] though one might say [[A!=B]]")  # the first label counts
    assert not judges_equal("[[A!=B]], not [[A=B]]")
    assert not judges_equal("no verdict") and not judges_equal(None)


@pytest.fixture(scope="module")
def judge_server():
    # the simulated policy answers with its request's metadata.expected_answer (at this
    # setting always), so a judge request chooses the verdict it will get back
    settings = SimulatedSettings(peak_reward=1.0, curvature=0.0, task_spread=0.0)
    app = create_model_app(ModelServerConfig(backend="simulated", simulated=settings))
    with ThreadedServer(app) as server:
        yield server


def _judged(server: ThreadedServer, label: str, api: str = "responses", **extra) -> dict:
    task = {
        "question": "What is 6/12?",
        "expected_answer": "\\frac{1}{2}",
        "should_use_judge": True,
        "judge_base_url": f"{server.url}/v1",
        "judge_api": api,
        "judge_responses_create_params": {"metadata": {"expected_answer": label}},
        **extra,
    }
    return load_verifier("math").verify(task, reply("\\boxed{\\text{one half}}"))


def _requests(server: ThreadedServer) -> int:
    import httpx

    return httpx.get(f"{server.url}/stats").json()["requests"]


def test_judge_decides_when_the_library_says_not_equal(judge_server: ThreadedServer) -> None:
    before = _requests(judge_server)
    equal = _judged(judge_server, "[[A=B]]")
    assert equal["reward"] == 1.0 and equal["library_reward"] == 0.0
    assert _requests(judge_server) - before == 2  # asked in both orders
    first, second = equal["judge_evaluations"]
    system, user = first["request"]["input"]
    assert system["role"] == "system" and "[[A=B]]" in system["content"]
    assert "What is 6/12?" in user["content"]
    # A is the expected answer, B the extracted one ("onehalf"), then the other way round
    assert "Answer A:\n\\frac{1}{2}\n" in user["content"]
    assert "Answer B:\nonehalf" in user["content"]
    assert "Answer A:\nonehalf\n" in second["request"]["input"][1]["content"]

    before = _requests(judge_server)
    different = _judged(judge_server, "[[A!=B]]")
    assert different["reward"] == 0.0 and len(different["judge_evaluations"]) == 1
    assert _requests(judge_server) - before == 1

    chat = _judged(judge_server, "[[A=B]]", api="chat_completions")
    assert chat["reward"] == 1.0 and "messages" in chat["judge_evaluations"][0]["request"]


def test_judge_is_not_asked_when_the_library_agrees_or_the_answer_is_empty(
    judge_server: ThreadedServer,
) -> None:
    before = _requests(judge_server)
    task = {
        "expected_answer": "2",
        "should_use_judge": True,
        "judge_base_url": f"{judge_server.url}/v1",
        "judge_responses_create_params": {"metadata": {"expected_answer": "[[A=B]]"}},
    }
    verify = load_verifier("math").verify
    assert verify(task, reply("\\boxed{2}"))["judge_evaluations"] is None
    assert verify(task, reply(""))["reward"] == 0.0
    assert _requests(judge_server) == before


def test_judge_unreachable_is_a_failure() -> None:
    from conftest import free_port

    task = {
        "expected_answer": "2",
        "should_use_judge": True,
        "judge_base_url": f"http://127.0.0.1:{free_port()}/v1",
    }
    with pytest.raises(VerifierFailure) as caught:
        load_verifier("math").verify(task, reply("\\boxed{3}"))
    assert caught.value.failure_class == "judge_failed"
