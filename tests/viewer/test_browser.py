"""The viewer in a real browser: headless Chromium (Debian's package) driven by playwright.

The test fills a store, serves the viewer with uvicorn on a free loopback port, clicks its way
from the experiments to a trace, and checks the waterfall. It saves the screenshot the README
shows (docs/viewer.png) when ROUTETRACE_UPDATE_SCREENSHOT is set.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viewer._data import Filled, fill_store

CHROMIUM = os.environ.get("ROUTETRACE_CHROMIUM", "/usr/bin/chromium")
# Refresh with: ROUTETRACE_UPDATE_SCREENSHOT=1 .venv/bin/pytest tests/viewer/test_browser.py
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "viewer.png"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture
def filled(store) -> Filled:
    return fill_store(store)


@pytest.fixture
def viewer_url(store, filled) -> Iterator[str]:
    import uvicorn

    from routetrace.cli import LOOPBACK_NAMES
    from routetrace.viewer import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store, allowed_hosts=LOOPBACK_NAMES),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)  # polling a flag with a deadline
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def page(viewer_url) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert errors == [], errors
        finally:
            browser.close()


def test_click_through_to_a_trace_waterfall(page, viewer_url, filled, tmp_path):
    page.goto(viewer_url + "/")
    page.wait_for_selector("#experiments")
    page.click("#experiments a:text-is('math-agent')")
    page.wait_for_selector("#traces")
    page.click(f"tr[data-trace-id='{filled.math}']")
    page.wait_for_selector("#waterfall .wf-row[data-span-id]")
    assert page.url.endswith(f"/traces/{filled.math}")

    rows = page.locator("#waterfall .wf-row[data-span-id]")
    assert rows.locator(".wf-span-name").all_text_contents() == [
        "POST /math/{op}", "parse", "compute", "llm"]
    assert rows.locator(".wf-duration").all_text_contents() == [
        "120.0 ms", "10.0 ms", "90.0 ms", "60.0 ms"]
    assert [rows.nth(i).get_attribute("data-depth") for i in range(4)] == ["0", "1", "1", "2"]
    boxes = [rows.nth(i).locator(".wf-bar").bounding_box() for i in range(4)]
    assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"] < boxes[3]["x"]  # later starts right
    assert boxes[0]["width"] > boxes[2]["width"] > boxes[3]["width"] > boxes[1]["width"]

    page.click("#waterfall .wf-row:has(.wf-span-name:text-is('llm'))")
    detail = page.locator("#span-detail")
    assert "llm" in detail.locator("h2").text_content()
    assert "60.0 ms" in detail.text_content()
    assert '"step": 3' in detail.text_content()
    assert "route" in page.locator("#trace-info").text_content()
    # The README's screenshot is refreshed on request only, so a test run leaves the tree clean.
    target = SCREENSHOT if os.environ.get("ROUTETRACE_UPDATE_SCREENSHOT") else tmp_path / "v.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def test_filters_narrow_the_table(page, viewer_url, filled, store):
    from routetrace.tracing.destination import Experiment

    math_id = store.resolve_experiment(Experiment(name="math-agent")).experiment_id
    page.goto(f"{viewer_url}/experiments/{math_id}")
    page.wait_for_selector("#traces")
    assert page.locator("tr.trace-row").count() == 7
    page.fill("input[name=q]", "add")
    page.click("#filters button[type=submit]")
    page.wait_for_url(lambda url: "q=add" in url)
    page.wait_for_selector("body[data-ready] #traces")
    assert [r.get_attribute("data-trace-id") for r in page.locator("tr.trace-row").all()] == [
        filled.math]
    page.select_option("select[name=status]", "ERROR")
    page.click("#filters button[type=submit]")
    page.wait_for_url(lambda url: "status=ERROR" in url)
    page.wait_for_selector("body[data-ready] #empty")
    assert "No traces match" in page.locator("#empty").text_content()


def test_hostile_strings_stay_text(page, viewer_url, filled):
    page.goto(f"{viewer_url}/traces/{filled.hostile}")
    page.wait_for_selector("#waterfall .wf-row[data-span-id]")
    assert page.locator("#trace-name").text_content().startswith("<img src=x")
    assert page.get_attribute("body", "data-pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("#main script").count() == 0
    assert "x" * 5000 in page.locator("#span-detail").text_content()  # inputs shown whole


def test_missing_trace_and_empty_experiment(page, viewer_url, filled):
    response = page.goto(f"{viewer_url}/traces/tr-{'0' * 32}")
    assert response.status == 404
    page.wait_for_selector("#not-found")
    assert page.locator("h1").text_content() == "Trace not found"
    page.goto(f"{viewer_url}/experiments/0")
    page.wait_for_selector("#empty")
