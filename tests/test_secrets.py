"""An API key given through the environment reaches the upstream and nothing else: no output,
failures sidecar, checkpoint, server log or console line holds it, even when the upstream
echoes it back in an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, ThreadedServer, free_port, math_task, read_rows
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

KEY_ENV = "ROLLSWEEP_TEST_SECRET_KEY"
KEY = "sk-rollsweep-test-9f8e7d6c5b4a3210"


def leaky_upstream(seen_keys: list[str]) -> FastAPI:
    """Chat Completions that needs the key, and echoes it in a 500 for 'echo' prompts."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> object:
        authorization = request.headers.get("authorization", "")
        seen_keys.append(authorization)
        if authorization != f"Bearer {KEY}":
            return JSONResponse({"error": "no key"}, status_code=401)
        body = await request.json()
        prompt = json.dumps(body["messages"])
        if "echo" in prompt:
            return JSONResponse(
                {"error": f"upstream broke; request had authorization: {authorization}"},
                status_code=500,
            )
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "leaky",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "The answer is \\boxed{8}."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    return app


def test_api_key_from_env_appears_in_no_file_and_no_log(tmp_path):
    seen: list[str] = []
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "tmp").mkdir()
    tasks = work / "tasks.jsonl"
    rows = []
    for index in range(6):
        task = math_task(index)
        if index in (2, 4):
            task["responses_create_params"]["input"][0]["content"] += " echo"
        rows.append(json.dumps(task) + "\n")
    tasks.write_text("".join(rows))
    out = work / "out.jsonl"
    with ThreadedServer(leaky_upstream(seen)) as upstream:
        config = work / "stack.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "head_server": {"port": free_port()},
                    "model_servers": {
                        "remote": {
                            "backend": "openai",
                            "openai": {
                                "base_url": f"{upstream.url}/v1",
                                "model": "leaky",
                                "api": "chat",
                                "api_key_env": KEY_ENV,
                            },
                        }
                    },
                    "resources_servers": {"bundled": {"verifier": "auto"}},
                    "agents": {
                        "my_agent": {"model_server": "remote", "resources_server": "bundled"}
                    },
                }
            )
        )
        script = Path(sys.executable).parent / "ng_collect_rollouts"
        result = subprocess.run(
            [
                str(script),
                "+agent_name=my_agent",
                f"+config_paths=[{config}]",
                f"+input_jsonl_fpath={tasks}",
                f"+output_jsonl_fpath={out}",
                "+max_attempts=2",
                "+progress=false",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            # the stack's server logs go to TMPDIR: keep them where this test can read them
            env={**os.environ, KEY_ENV: KEY, "TMPDIR": str(tmp_path / "tmp")},
        )
    # The key was used: the upstream got it on every request.
    assert seen and all(value == f"Bearer {KEY}" for value in seen)
    assert result.returncode == 1, result.stderr  # the two 'echo' rollouts failed
    assert len(read_rows(out)) == 4
    failures = read_rows(work / "out_failures.jsonl")
    assert [f["_ng_task_index"] for f in failures] == [2, 4]
    assert "[redacted]" in failures[0]["message"], "the upstream's echo was there, and masked"

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert "out.jsonl" in names and "out_failures.jsonl" in names
    assert any(name.endswith(".ckpt.jsonl") for name in names), "checkpoint kept for a rerun"
    assert any(name.endswith(".log") for name in names), "server logs are there to search"
    for path in written:
        assert KEY.encode() not in path.read_bytes(), f"the key leaked into {path}"
    assert KEY not in result.stdout and KEY not in result.stderr
