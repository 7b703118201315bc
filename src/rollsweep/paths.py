"""Where rollsweep finds its bundled files (the repository it is installed from, editable)."""

from __future__ import annotations

from pathlib import Path

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
