"""The viewer on a 250,000-row rollouts file: time until the first page of rows is shown.

    python benchmarks/viewer_scale.py [--rows 250000] [--runs 3]

Generates the file in a temp dir (synthetic rows shaped like the collector's, ~1.1 kB each),
then, for each run, starts ``ng_viewer +input_jsonl_fpath=FILE +port=0`` afresh and measures:

- api_first_page_s: from starting the command to the first ``/api/rows`` page answered;
- browser_first_page_s: from starting the command to the first rows drawn in headless
  Chromium (Debian's /usr/bin/chromium through Playwright; the browser is started beforehand);
- index_s: the whole file indexed (filters and grouping then cover every row);
- query latencies on the full index: reward filter, text search (a scan of the file),
  group by task, and the viewer's peak memory.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import record
from demo_rollouts import write_demo_rollouts
from headless_chromium import CHROMIUM, CHROMIUM_ARGS

VIEWER = "from rollsweep.cli import ng_viewer; ng_viewer()"


def start_viewer(path: Path) -> tuple[subprocess.Popen, str, float]:
    """Start ng_viewer on a free port; return (process, url, start time)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", VIEWER, f"+input_jsonl_fpath={path}", "+port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = process.stdout.readline() if process.stdout else ""
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not match:
        process.kill()
        raise SystemExit(f"viewer did not start: {line!r} {process.stderr.read()}")
    return process, match.group(0), started


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_api(url: str, path: str, params: dict | None = None, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{url}{path}", params=params, timeout=60)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer from {url}{path}")
        time.sleep(0.01)


def timed(url: str, path: str, params: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    body = httpx.get(f"{url}{path}", params=params, timeout=120).json()
    return time.perf_counter() - started, body


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    repeats = 5
    with tempfile.TemporaryDirectory(prefix="viewer-scale-") as workdir:
        path = Path(workdir) / "rollouts.jsonl"
        started = time.perf_counter()
        rows = write_demo_rollouts(path, args.rows // repeats, repeats)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {rows:,} rows, {size_mb:.0f} MB in {time.perf_counter() - started:.1f} s")

        api_first, index_s = [], []
        for run in range(args.runs):
            process, url, t0 = start_viewer(path)
            try:
                body = wait_api(url, "api/rows", {"limit": 100})
                api_first.append(time.perf_counter() - t0)
                assert len(body["rows"]) == 100
                while not (status := wait_api(url, "api/sources"))["sources"][0]["complete"]:
                    time.sleep(0.05)
                index_s.append(status["sources"][0]["index_seconds"])
                assert status["sources"][0]["rows"] == rows
                if run == 0:
                    queries = {
                        "reward_filter_s": timed(url, "api/rows", {"reward": "< 0.3"}),
                        "text_search_s": timed(url, "api/rows", {"q": "<script>"}),
                        "text_search_cached_s": timed(url, "api/rows", {"q": "<script>"}),
                        "group_by_task_s": timed(url, "api/groups", {"sort": "-std"}),
                        "histogram_s": timed(url, "api/histogram", {}),
                    }
                    latencies = {name: round(q[0], 3) for name, q in queries.items()}
                    matched_failures = queries["reward_filter_s"][1]["matched"]
                    rss = peak_rss_mb(process.pid)
            finally:
                stop(process)
            print(
                f"run {run + 1}: API first page {api_first[-1]:.2f} s, "
                f"indexed in {index_s[-1]:.2f} s"
            )

        browser_first, navigation = [], []
        if Path(CHROMIUM).exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
                )
                for run in range(args.runs):
                    page = browser.new_page(viewport={"width": 1500, "height": 900})
                    process, url, t0 = start_viewer(path)
                    try:
                        wait_api(url, "api/health")
                        nav = time.perf_counter()
                        page.goto(url)
                        page.wait_for_selector("#rows .vrow[data-i]", timeout=60_000)
                        done = time.perf_counter()
                        browser_first.append(done - t0)
                        navigation.append(done - nav)
                        shown = page.locator("#rows .vrow[data-i]").count()
                    finally:
                        stop(process)
                        page.close()
                    print(
                        f"run {run + 1}: first page in Chromium {browser_first[-1]:.2f} s after "
                        f"start ({navigation[-1]:.2f} s after navigation, {shown} rows drawn)"
                    )
                browser.close()
        else:
            print(f"{CHROMIUM} missing: browser timing skipped")

    figures = {
        "rows": rows,
        "file_mb": round(size_mb, 1),
        "runs": args.runs,
        "api_first_page_s": round(statistics.median(api_first), 3),
        "browser_first_page_s": round(statistics.median(browser_first), 3)
        if browser_first
        else None,
        "browser_navigation_to_rows_s": round(statistics.median(navigation), 3)
        if navigation
        else None,
        "full_index_s": round(statistics.median(index_s), 3),
        "failures_matched": matched_failures,
        **latencies,
        "viewer_peak_rss_mb": rss,
    }
    for name, value in figures.items():
        print(f"{name:>30}: {value}")
    record("viewer_scale", figures)


if __name__ == "__main__":
    main()
