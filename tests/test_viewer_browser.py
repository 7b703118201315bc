"""The viewer in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Skipped only when /usr/bin/chromium is missing (.ci/run installs it). Screenshots go to
``$ROLLSWEEP_SCREENSHOT_DIR`` when set (to look at them), else to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
from conftest import ThreadedServer
from demo_rollouts import write_demo_rollouts
from headless_chromium import CHROMIUM, CHROMIUM_ARGS

from rollsweep.viewer.app import create_app
from rollsweep.viewer.workspace import Workspace

N_TASKS, N_REPEATS = 10, 5

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser")
    cold, hot = root / "before.jsonl", root / "after.jsonl"
    write_demo_rollouts(cold, N_TASKS, N_REPEATS, temperature=0.7)
    write_demo_rollouts(hot, N_TASKS, N_REPEATS, temperature=0.9)
    return {"cold": cold, "hot": hot, "root": root}


def _serve(paths: list[Path]):
    workspace = Workspace(paths)
    for source in workspace.sources:
        source.index.wait(30)
    return workspace, ThreadedServer(create_app(workspace))


@pytest.fixture(scope="module")
def single(data: dict[str, Path]):
    workspace, server = _serve([data["cold"]])
    with server:
        yield server.url
    workspace.close()


@pytest.fixture(scope="module")
def pair(data: dict[str, Path]):
    workspace, server = _serve([data["cold"], data["hot"]])
    with server:
        yield server.url
    workspace.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 2400})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message) -> None:
        # a 400 is the API refusing a bad filter on purpose; anything else is a problem
        if message.type == "error" and "status of 400" not in message.text:
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ROLLSWEEP_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def rendered_rows(page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#rows .vrow[data-i]",
        "nodes => nodes.map(n => ({i: n.dataset.i, task: n.dataset.task, "
        "repeat: n.dataset.repeat, reward: n.dataset.reward}))",
    )


def test_row_count_and_reward_filter(page, single, data, shots: Path) -> None:
    from playwright.sync_api import expect

    rows = read(data["cold"])
    page.goto(single)
    expect(page.get_by_test_id("row-count")).to_have_text(str(len(rows)))
    expect(page.locator("#rows .vrow[data-i]")).to_have_count(len(rows))
    page.screenshot(path=str(shots / "viewer_list.png"))

    failures = [
        (str(r["_ng_task_index"]), str(r["_ng_rollout_index"])) for r in rows if r["reward"] < 0.3
    ]
    assert 0 < len(failures) < len(rows)
    page.get_by_test_id("reward-filter").fill("reward < 0.3")
    expect(page.get_by_test_id("counts")).to_have_attribute("data-matched", str(len(failures)))
    expect(page.locator("#rows .vrow[data-i]")).to_have_count(len(failures))
    shown = rendered_rows(page)
    assert [(r["task"], r["repeat"]) for r in shown] == failures
    assert all(float(r["reward"]) < 0.3 for r in shown)
    page.screenshot(path=str(shots / "viewer_failures.png"))

    page.get_by_test_id("reward-filter").fill("<< 0.3")
    expect(page.locator("#filter-error")).to_contain_text("cannot read")


def test_group_by_task_shows_five_repeats(page, single, data, shots: Path) -> None:
    from playwright.sync_api import expect

    rows = read(data["cold"])
    page.goto(single)
    page.get_by_test_id("mode-groups").click()
    groups = page.locator("#rows .grow-row")
    expect(groups).to_have_count(N_TASKS)
    for task in range(N_TASKS):
        group = page.locator(f"#rows .grow-row[data-task='{task}']")
        expect(group.locator(".rbadge")).to_have_count(N_REPEATS)
        rewards = [r["reward"] for r in rows if r["_ng_task_index"] == task]
        expect(group.get_by_test_id("mu")).to_have_text(f"{statistics.mean(rewards):.2f}")
        expect(group.get_by_test_id("sigma")).to_have_text(f"{statistics.stdev(rewards):.2f}")
    page.screenshot(path=str(shots / "viewer_groups.png"))
    # a repeat badge opens that rollout
    page.locator("#rows .grow-row[data-task='2'] .rbadge").nth(3).click()
    expect(page.get_by_test_id("detail")).to_contain_text("task 2 · repeat 3")


def test_script_in_a_rollout_shows_as_text_and_runs_nothing(page, single, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto(single)
    page.locator("#rows .vrow[data-task='3'][data-repeat='0']").click()
    detail = page.get_by_test_id("detail")
    expect(detail.get_by_test_id("conversation")).to_contain_text(
        '<script>window.__pwned = 1; document.title = "pwned"</script>'
    )
    expect(detail.get_by_test_id("final-output")).to_contain_text(
        '<img src=x onerror="window.__pwned = 2">'
    )
    expect(page.locator("#rows .vrow[data-task='3']").first).to_contain_text("<script>")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title() == "rollsweep viewer"
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("document.querySelectorAll('#detail img, #rows img, b').length") == 0
    page.screenshot(path=str(shots / "viewer_detail_script.png"))


def test_compare_mode_shows_the_changed_rows(page, pair, data, shots: Path) -> None:
    from playwright.sync_api import expect

    before, after = read(data["cold"]), read(data["hot"])
    changed = [
        (str(a["_ng_task_index"]), str(a["_ng_rollout_index"]))
        for a, b in zip(before, after, strict=True)
        if a["reward"] != b["reward"]
    ]
    assert changed
    page.goto(pair)  # two files open in compare mode
    expect(page.get_by_test_id("changed-count")).to_have_text(str(len(changed)))
    pairs = page.locator("#rows .vrow.pair")
    expect(pairs).to_have_count(len(changed))
    shown = page.eval_on_selector_all(
        "#rows .vrow.pair", "nodes => nodes.map(n => [n.dataset.task, n.dataset.repeat])"
    )
    assert [tuple(item) for item in shown] == changed
    page.screenshot(path=str(shots / "viewer_compare.png"))
    pairs.first.click()
    expect(page.locator("#detail .sides .side")).to_have_count(2)
    page.screenshot(path=str(shots / "viewer_compare_detail.png"))
    # all pairs: every row of the file, the unchanged ones too
    page.get_by_test_id("compare-view").select_option("all")
    expect(page.get_by_test_id("counts")).to_have_attribute("data-matched", str(len(before)))
