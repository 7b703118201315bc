"""``rollsweep check-manifest``: would a rerun use the same inputs and versions as a result?

It rebuilds an experiment's manifest from the current files and environment, with the invocation
the manifest records, and names every difference (rollsweep.pipeline.manifest builds both).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rollsweep.errors import UsageError
from rollsweep.pipeline.config import load_config_files
from rollsweep.pipeline.facts import CODE_PATHS
from rollsweep.pipeline.manifest import FORMAT, build_manifest
from rollsweep.rollouts.names import MANIFEST_FILE

#: Settings that do not change what a model computes (where it is served, how long to wait).
_NOT_COMPARED = {"base_url", "timeout_s"}
#: Keys of a served config dict that change from one start of the same servers to the next.
_CHANGES_PER_START = {"host", "port", "pid"}


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _show(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _dict_drift(label: str, old: Any, new: Any) -> list[str]:
    before, after = dict(_flatten(old)), dict(_flatten(new))
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            lines.append(f"{label} {key}: {_show(before[key])} -> (gone)")
        elif key not in before:
            lines.append(f"{label} {key}: (new) -> {_show(after[key])}")
        elif before[key] != after[key]:
            lines.append(f"{label} {key}: {_show(before[key])} -> {_show(after[key])}")
    return lines


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"


def _file_drift(label: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if new.get("missing"):
        return f"{label}: missing now"
    if new.get("error"):
        return f"{label}: unreadable now ({new['error']})"
    if old.get("sha256") != new.get("sha256"):
        return (
            f"{label}: content changed (sha256 {_short(old.get('sha256'))} -> "
            f"{_short(new.get('sha256'))}, {old.get('bytes')} -> {new.get('bytes')} bytes)"
        )
    return None


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    return value


def _model_drift(old_models: dict[str, Any], new_models: dict[str, Any]) -> list[str]:
    """Backend, model name, API, llama.cpp runtime and GGUF file of the models in both."""
    drift: list[str] = []
    for name in sorted(old_models.keys() & new_models.keys()):
        before, after = old_models[name], new_models[name]
        for key in ("backend", "model", "api"):
            if before.get(key) != after.get(key):
                drift.append(
                    f"model {name} {key}: {_show(before.get(key))} -> {_show(after.get(key))}"
                )
        drift += _dict_drift(
            f"model {name} runtime", before.get("runtime") or {}, after.get("runtime") or {}
        )
        if "gguf" in before or "gguf" in after:
            gguf = (before.get("gguf", {}), after.get("gguf", {}))
            if line := _file_drift(f"model {name} GGUF file", *gguf):
                drift.append(line)
    return drift


def _environment_drift(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Package versions, python, and the workflow's code in git."""
    drift: list[str] = []
    old_packages, new_packages = old.get("packages", {}), new.get("packages", {})
    for name in sorted(old_packages.keys() | new_packages.keys()):
        before, after = old_packages.get(name), new_packages.get(name)
        if before != after:
            drift.append(
                f"package {name}: {before or 'not installed'} -> {after or 'not installed'}"
            )
    if old.get("python") != new.get("python"):
        drift.append(f"python: {old.get('python')} -> {new.get('python')}")

    old_git, new_git = old.get("git") or {}, new.get("git") or {}
    commits = f"commit {_short(old_git.get('commit'))} -> {_short(new_git.get('commit'))}"
    for path in sorted((old_git.get("code") or {}).keys() | (new_git.get("code") or {}).keys()):
        if (old_git.get("code") or {}).get(path) != (new_git.get("code") or {}).get(path):
            drift.append(f"workflow code {path}: changed in git ({commits})")
    if old_git.get("uncommitted") != new_git.get("uncommitted"):
        before = "uncommitted changes" if old_git.get("uncommitted") else "none"
        after = "uncommitted changes" if new_git.get("uncommitted") else "none"
        if before == after:
            after = "other uncommitted changes"
        drift.append(f"workflow code: {before} -> {after} (under {', '.join(CODE_PATHS)})")
    return drift


def compare_manifests(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per difference that could change a rerun's results."""
    drift: list[str] = []
    drift += _dict_drift("config", old.get("config", {}), new.get("config", {}))

    old_inputs, new_inputs = old.get("inputs", {}), new.get("inputs", {})
    for name in sorted(old_inputs.keys() | new_inputs.keys()):
        if name not in new_inputs:
            drift.append(f"input {name}: no longer used")
        elif name not in old_inputs:
            drift.append(f"input {name}: new input (not in the manifest)")
        elif line := _file_drift(f"input {name}", old_inputs[name], new_inputs[name]):
            drift.append(line)

    drift += _dict_drift(
        "stack",
        _without(old.get("stack", {}), _NOT_COMPARED),
        _without(new.get("stack", {}), _NOT_COMPARED),
    )

    # what a running head reports about its servers; their ports change with every start
    drift += _dict_drift(
        "servers",
        _without(old.get("servers") or {}, _CHANGES_PER_START),
        _without(new.get("servers") or {}, _CHANGES_PER_START),
    )

    drift += _model_drift(old.get("models", {}), new.get("models", {}))
    drift += _environment_drift(old, new)
    return drift


def read_manifest(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError("no such manifest", path=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"not a readable manifest: {error}", path=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "invocation" not in data:
        raise UsageError(f"not a rollsweep manifest (format {FORMAT})", path=str(path))
    return data


def rebuild(old: dict[str, Any]) -> dict[str, Any]:
    """The manifest a rerun with the recorded invocation would write now."""
    invocation = old["invocation"]
    config_files = list(invocation.get("config_files") or [])
    workdir = invocation.get("workdir") or os.getcwd()
    with contextlib.chdir(workdir):
        config = load_config_files(config_files, invocation.get("config_overrides") or {})
    return build_manifest(
        config,
        old["experiment"],
        config_files=config_files,
        config_overrides=invocation.get("config_overrides"),
        workdir=workdir,
        workflow_dir=invocation.get("workflow_dir"),
        executor=old.get("executor"),
    )


def check_one(path: str | Path) -> list[str]:
    """Drift lines for one manifest file (empty: a rerun uses the same inputs and versions)."""
    old = read_manifest(path)
    try:
        new = rebuild(old)
    except UsageError as error:
        # the config itself no longer loads (a file gone, an experiment removed, a bad value)
        return [f"config no longer loads: {error.render()}"]
    return compare_manifests(old, new)


def find_manifests(results_dir: str | Path) -> list[Path]:
    """``RESULTS_DIR/manifest.json``, or those of its experiments (one level down)."""
    root = Path(results_dir)
    if root.is_file() and root.name.endswith(".json"):
        return [root]
    if not root.is_dir():
        raise UsageError("no such results directory", path=str(root))
    if (root / MANIFEST_FILE).is_file():
        return [root / MANIFEST_FILE]
    found = sorted(root.glob(f"*/{MANIFEST_FILE}"))
    if not found:
        raise UsageError(f"no {MANIFEST_FILE} here nor in its subdirectories", path=str(root))
    return found


def check_manifest(results_dir: str | Path) -> dict[str, list[str]]:
    """Manifest path -> its drift lines, for every manifest under ``results_dir``."""
    return {str(path): check_one(path) for path in find_manifests(results_dir)}
