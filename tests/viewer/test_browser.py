"""The viewer in a real browser: headless Chromium (Debian's package) driven by playwright.

The test fills a store, serves the viewer with uvicorn on a free loopback port, clicks its way
from the experiments to a trace, and checks the waterfall. It saves the screenshot the README
shows (docs/viewer.png) when ROUTETRACE_UPDATE_SCREENSHOT is set.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import routetrace
from tests.viewer._data import Filled, fill_store

CHROMIUM = os.environ.get("ROUTETRACE_CHROMIUM", "/usr/bin/chromium")
# Refresh with: ROUTETRACE_UPDATE_SCREENSHOT=1 .venv/bin/pytest tests/viewer/test_browser.py
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "viewer.png"
# Read at import: the autouse tracer fixture clears every ROUTETRACE_* variable before a test.
UPDATE_SCREENSHOTS = bool(os.environ.get("ROUTETRACE_UPDATE_SCREENSHOT"))
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

    from routetrace.cli.ui import LOOPBACK_NAMES
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
    target = SCREENSHOT if UPDATE_SCREENSHOTS else tmp_path / "v.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def test_filters_narrow_the_table(page, viewer_url, filled, store):
    from routetrace.core.destination import Experiment

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


# -- a real app's traces: an unhandled exception, an event, an OK request ------------------------
SHOTS = Path(__file__).resolve().parents[2] / "docs"


def _charge(amount: int) -> None:  # the app's own code, two frames below the handler
    with routetrace.start_span("charge", span_type="TOOL") as span:
        span.set_inputs({"amount": amount})
        span.add_event("card.checked", {"last4": "4242"})
        raise RuntimeError(f"card declined for {amount}")


def _checkout(request: Any) -> Any:
    _charge(42)


def _ok(request: Any) -> Any:
    from starlette.responses import JSONResponse

    with routetrace.start_span("lookup"):
        pass
    return JSONResponse({"ok": True})


@dataclass
class AppTraces:
    failed: str  # POST /checkout: RuntimeError escaped the app, the server answered 500
    charge_span: str  # the failed trace's "charge" span, with an event and the exception
    ok: str  # GET /ok: 200, two spans, no status set by anyone


@pytest.fixture
def app_traces(store) -> AppTraces:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from routetrace.middleware import TracingMiddleware

    app = Starlette(
        routes=[Route("/checkout", _checkout, methods=["POST"]), Route("/ok", _ok)],
        middleware=[Middleware(TracingMiddleware, config={"experiment": "shop"})])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/checkout").status_code == 500
        assert client.get("/ok").status_code == 200
    assert routetrace.flush(timeout=30)
    by_name = {t.info.name: t for t in routetrace.search_traces(experiment_ids=[
        store.resolve_experiment(routetrace.Experiment(name="shop")).experiment_id],
        return_type="list")}
    failed = by_name["POST /checkout"]
    charge = next(s for s in failed.data.spans if s.name == "charge")
    return AppTraces(failed.info.trace_id, charge.span_id, by_name["GET /ok"].info.trace_id)


def _shoot(page: Any, name: str, tmp_path: Path) -> None:
    """Screenshots kept under docs/ (refreshed on request, like the README's)."""
    target = (SHOTS if UPDATE_SCREENSHOTS else tmp_path) / name
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


@pytest.mark.parametrize("width", [1400, 800])
def test_an_unhandled_exception_reads_type_and_message_first_then_the_app_frames(
        page, viewer_url, app_traces, tmp_path, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{viewer_url}/traces/{app_traces.failed}")
    page.wait_for_selector("#span-detail #exceptions")
    # What the client got, instead of an empty response: the status and the exception.
    status = page.locator("#trace-status").text_content()
    assert status.startswith("500 · unhandled RuntimeError: card declined for 42")
    assert page.locator("#response-summary").text_content() == status
    assert "{}" not in page.locator("#trace-info").text_content()

    exc = page.locator("#span-detail .exception").first
    assert exc.locator(".exc-head").text_content() == "RuntimeError: card declined for 42"
    # Type and message come before the inputs; the frames follow, app frames set apart.
    order = page.evaluate("""() => [...document.querySelectorAll('#span-detail h3')]
                                   .map(h => h.textContent)""")
    assert order.index("Exception") < order.index("Inputs")
    app_frames = exc.locator(".frame.app .frame-func").all_text_contents()
    assert app_frames[-2:] == ["_checkout", "_charge"]
    assert exc.locator(".frame.lib").count() > 3  # Starlette's and routetrace's own
    assert exc.locator("details.lib-frames .frame.app").count() == 0
    assert exc.locator(".frame.lib").first.is_visible() is False  # folded away
    last = exc.locator(".frame.app").last
    assert last.is_visible()
    assert "raise RuntimeError" in last.locator(".frame-code").text_content()
    box = last.bounding_box()
    assert box["x"] + box["width"] <= width  # not cut off, no horizontal scroll box
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    _shoot(page, f"viewer-exception-{width}.png", tmp_path)


def test_events_show_their_offset_from_the_span_start_and_the_wall_time_on_hover(
        page, viewer_url, app_traces):
    page.goto(f"{viewer_url}/traces/{app_traces.failed}")
    page.wait_for_selector("#waterfall .wf-row[data-span-id]")
    page.click("#waterfall .wf-row:has(.wf-span-name:text-is('charge'))")
    events = page.locator("#span-detail .event")
    assert events.locator(".event-name").all_text_contents() == ["card.checked", "exception"]
    for offset in events.locator(".event-offset").all():
        assert re.fullmatch(r"\+\d+\.\d ms", offset.text_content()), offset.text_content()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}",
                            offset.get_attribute("title"))
    assert "4242" in events.first.text_content()
    assert not re.search(r"\d{16,}", page.locator("#span-detail").text_content())  # no raw ns


def test_every_span_has_an_address_that_opens_it(page, viewer_url, app_traces):
    url = f"{viewer_url}/traces/{app_traces.failed}"
    page.goto(url)
    page.wait_for_selector("#waterfall .wf-row[data-span-id]")
    assert page.url == url  # the first selection does not rewrite the address
    page.click("#waterfall .wf-row:has(.wf-span-name:text-is('charge'))")
    assert page.url == f"{url}#span-{app_traces.charge_span}"
    assert page.get_attribute("#span-detail .permalink", "href") == (
        f"#span-{app_traces.charge_span}")
    other = page.context.new_page()
    other.goto(f"{url}#span-{app_traces.charge_span}")
    other.wait_for_selector(f"#span-detail[data-span-id='{app_traces.charge_span}']")
    assert "charge" in other.locator("#span-detail h2").text_content()
    assert other.locator(
        f"#waterfall .wf-row.selected[data-span-id='{app_traces.charge_span}']").count() == 1
    page.goto(f"{url}#span-{app_traces.charge_span}")  # the same page, another span by hash
    page.evaluate("location.hash = '#span-nope'")
    page.wait_for_selector(f"#span-detail[data-span-id='{app_traces.charge_span}']")


def test_an_ok_trace_says_ok_on_every_span(page, viewer_url, app_traces, tmp_path):
    page.goto(f"{viewer_url}/traces/{app_traces.ok}")
    page.wait_for_selector("#waterfall .wf-row[data-span-id]")
    for row in page.locator("#waterfall .wf-row[data-span-id]").all():
        row.click()
        assert page.locator("#span-detail h2 .badge").text_content() == "OK"
    assert "UNSET" not in page.locator("#main").text_content()
    assert page.locator("#trace-status").text_content() == "200"
