"""A real NeMo Gym 0.4.0 stack for tests, started by ../shared/nemo-gym/stack.sh (its own ng_run).

The NeMo Gym venv and the per-server venvs live in a cache (``~/.cache/rollsweep-ci``, or
``$ROLLSWEEP_NG_CACHE``) that ``.ci/run`` prepares, so only the first start builds them.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from rollsweep.protocol import decode_config_dict, servers_of_kind

REPO = Path(__file__).resolve().parents[1]
STACK_SH = REPO.parent / "shared" / "nemo-gym" / "stack.sh"
CACHE = Path(os.environ.get("ROLLSWEEP_NG_CACHE", Path.home() / ".cache" / "rollsweep-ci"))
NG_VENV = Path(os.environ.get("NG_VENV", CACHE / "nemo-gym-0.4.0"))
NG_WORK = CACHE / "ngwork"
MCQA = "resources_servers/mcqa/configs/mcqa.yaml"
#: the open lock file while this session's stack runs
_LOCK: list = []
TOOL_CALL = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"


@dataclass
class NemoGym:
    """A running NeMo Gym stack: its head, its agents' URLs and its shipped example data."""

    head_url: str
    head_port: int
    agents: dict[str, str]
    work: Path

    def example(self, server: str, name: str = "example.jsonl") -> Path:
        return self.work / "resources_servers" / server / "data" / name

    def collector(self) -> str:
        """NeMo Gym's own ng_collect_rollouts."""
        return str(NG_VENV / "bin" / "ng_collect_rollouts")


def start_nemo_gym(policy_base_url: str, head_port: int) -> NemoGym:
    """``stack.sh up`` with the mcqa and example_single_tool_call environments; fails loudly.

    The work directory (and its per-server venvs) is shared by every test session on the
    machine, so a session holds a lock on it until ``stop_nemo_gym``: a second one waits.
    """
    if not STACK_SH.exists():
        raise AssertionError(f"{STACK_SH} is missing: the NeMo Gym tests need shared/nemo-gym")
    NG_WORK.mkdir(parents=True, exist_ok=True)
    _LOCK.append(open(CACHE / "ngwork.lock", "w"))  # noqa: SIM115 - held until stop_nemo_gym
    fcntl.flock(_LOCK[-1], fcntl.LOCK_EX)
    env = {**os.environ, "NG_VENV": str(NG_VENV)}
    up = subprocess.run(
        [
            "bash",
            str(STACK_SH),
            "up",
            str(NG_WORK),
            policy_base_url,
            str(head_port),
            MCQA,
            TOOL_CALL,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if up.returncode != 0:
        stop_nemo_gym()
        raise AssertionError(f"stack.sh up failed ({up.returncode}): {up.stderr[-2000:]}")
    head_url = up.stdout.strip().splitlines()[-1]
    reply = httpx.get(f"{head_url}/global_config_dict_yaml", timeout=10)
    agents = servers_of_kind(decode_config_dict(reply.text), "agent")
    return NemoGym(head_url=head_url, head_port=head_port, agents=agents, work=NG_WORK)


def stop_nemo_gym() -> None:
    subprocess.run(["bash", str(STACK_SH), "down", str(NG_WORK)], timeout=120, check=False)
    while _LOCK:
        _LOCK.pop().close()  # closing releases the flock


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
