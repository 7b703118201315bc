"""Headless Chromium for looking at the viewer from scripts (browser tests, benchmarks).

Debian's system browser, never a downloaded one; the flags keep it off the network (a closed
network refuses its background connections) and let it run as root.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
