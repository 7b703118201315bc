"""``ng_viewer +input_jsonl_fpath=FILE [+compare_jsonl_fpath=FILE2] [+port=N]``."""

from __future__ import annotations

from typing import Any

from rollsweep.cli.args import parse_overrides, validate_settings
from rollsweep.cli.usage import ViewerSettings
from rollsweep.errors import UsageError
from rollsweep.viewer.server import serve


def main(argv: list[str]) -> int:
    """Serve the viewer over one file, two to compare, or an experiment directory."""
    data: dict[str, Any] = parse_overrides(argv)
    for key in ("input_jsonl_fpath", "compare_jsonl_fpath"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            data[key] = str(data[key])  # a file named 0.5 or true is still a path
    if "input_jsonl_fpath" not in data:
        raise UsageError("missing: the rollouts file to view", key="+input_jsonl_fpath")
    settings: ViewerSettings = validate_settings(ViewerSettings, data)
    paths = [settings.input_jsonl_fpath]
    if settings.compare_jsonl_fpath:
        paths.append(settings.compare_jsonl_fpath)
    return serve(paths, port=settings.port, open_browser=settings.open_browser)
