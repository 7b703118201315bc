"""The repository's own checks, run in CI: ruff (lint and format), snakefmt, snakemake --lint,
and the import layers of pyproject.toml (import-linter)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

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
    "snakemake --lint": [sys.executable, "-m", "snakemake", "--lint"],
    "import layers": ["lint-imports", "--no-cache"],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_repository_is_clean(name):
    result = subprocess.run(CHECKS[name], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
