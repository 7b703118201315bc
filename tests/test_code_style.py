"""The repository's own checks, run in CI: ruff (lint and format), snakefmt, snakemake --lint,
and the import layers of pyproject.toml (import-linter)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO, ThreadedServer, write_tasks
from fastapi import FastAPI, Request

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks", "scripts"],
    "ruff format": [
        sys.executable,
        "-m",
        "ruff",
        "format",
        "--check",
        "src",
        "tests",
        "benchmarks",
        "scripts",
    ],
    "snakefmt": ["snakefmt", "--check", "Snakefile", "rules"],
    "import layers": ["lint-imports", "--no-cache"],
}

#: The one lint the workflow answers no: per-rule conda environments. The Snakefile imports
#: rollsweep while it is parsed, so the environment that runs Snakemake is already the one every
#: job needs (pyproject.toml, or environment.yml for conda users); a rule's `conda:` would only
#: install the same again per job (README, "Software environment").
ACCEPTED_LINTS = {"Specify a conda environment or container for each rule."}


@pytest.mark.parametrize("name", list(CHECKS))
def test_repository_is_clean(name):
    result = subprocess.run(CHECKS[name], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def test_snakemake_lint_is_clean():
    """`snakemake --lint`: no lint but the accepted one, and every lint is parsed (none missed)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    lints = [
        line.strip()[2:].rstrip(":") for line in output.splitlines() if line.startswith("    * ")
    ]
    unexpected = [lint for lint in lints if lint not in ACCEPTED_LINTS]
    assert not unexpected, output[-3000:]
    assert result.returncode == (1 if lints else 0), output[-3000:]


#: Imports allowed inside functions: heavy dependencies that only some processes need, each
#: loaded where it is used so that command lines, the Snakefile's parse and other servers stay
#: light. Anything else is imported at the top of its module.
HEAVY_IMPORTS = {
    "llama_cpp",  # the embedded model (model servers and manifests only)
    "rollsweep.servers.backends.batched",  # imports llama_cpp
    "fastapi",  # servers only; the Snakefile imports servers.stack for discovery
    "uvicorn",
    "nltk.tokenize",  # the instruction-following verifier's sentence counts
    "nltk.tokenize.punkt",
    "punkt",
    "math_verify",  # the math verifier's worker processes
    "math_verify.errors",
    "math_verify.parser",
    "sympy",
}


def test_imports_inside_functions_are_only_heavy_dependencies():

    found = set()
    for path in sorted((REPO / "src" / "rollsweep").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        found |= {(path.name, alias.name) for alias in inner.names}
                    elif isinstance(inner, ast.ImportFrom):
                        found.add((path.name, inner.module))
    assert found, "the walk found no import at all: the test is broken"
    unexpected = sorted(item for item in found if item[1] not in HEAVY_IMPORTS)
    assert not unexpected


def test_a_collection_imports_neither_polars_nor_numpy(tmp_path):
    """``ng_collect_rollouts`` starts faster without them (0.73 -> 0.45 s of imports,
    measured with -X importtime; 0.82 -> 0.60 s wall), and every pipeline shard starts one; a
    collection from start to output must not pull them in, directly or through another module."""
    app = FastAPI()

    @app.post("/run")
    async def run(request: Request) -> dict:
        return {**(await request.json()), "reward": 1.0}

    tasks = write_tasks(tmp_path / "tasks.jsonl", 3)
    out = tmp_path / "out.jsonl"
    with ThreadedServer(app) as agent:
        result = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "from rollsweep.cli import ng_collect_rollouts; ng_collect_rollouts()",
                f"+agent_url={agent.url}",
                f"+input_jsonl_fpath={tasks}",
                f"+output_jsonl_fpath={out}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_text().count("\n") == 3
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "aiohttp" in imported, "importtime lists the modules: the check is not blind"
    assert not imported & {"polars", "numpy"}
