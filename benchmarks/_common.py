"""Shared by the benchmark scripts: where figures are recorded and what machine made them."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def record(name: str, figures: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the figures, the date and the machine; print it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    payload.update(figures)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"recorded {path}")
    return path
