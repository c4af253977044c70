"""Notebook display: ``Trace._repr_html_`` draws the viewer's waterfall without scripts."""

from __future__ import annotations

import re

import pytest

import routetrace
from routetrace.core.display import TraceList, trace_html, waterfall
from tests.viewer._data import HOSTILE, fill_store


@pytest.fixture
def traces(store):
    filled = fill_store(store)
    found = routetrace.search_traces(max_results=100, return_type="list")
    return filled, {t.info.trace_id: t for t in found}


def test_waterfall_places_spans_on_one_axis(traces):
    filled, by_id = traces
    rows, total = waterfall(by_id[filled.math])
    assert total == 120_000_000
    assert [(r.span.name, r.depth) for r in rows] == [
        ("POST /math/{op}", 0), ("parse", 1), ("compute", 1), ("llm", 2)]
    assert [round(r.start, 3) for r in rows] == [0, round(5 / 120, 3), round(20 / 120, 3),
                                                 0.25]
    assert rows[3].end == 0.75


def test_trace_html_is_the_waterfall_in_order_with_durations(traces):
    filled, by_id = traces
    html = by_id[filled.math]._repr_html_()
    assert "<script" not in html
    positions = [html.index(f">{name} <small") for name in ("POST /math/{op}", "parse",
                                                           "compute", "llm")]
    assert positions == sorted(positions)
    for duration in ("120.0 ms", "10.0 ms", "90.0 ms", "60.0 ms"):
        assert duration in html
    assert "left:25.00%;width:50.00%" in html  # llm: 30..90 ms of 120
    assert "<details" in html  # inputs/outputs without JavaScript
    assert "&quot;op&quot;: &quot;add&quot;" in html


def test_trace_html_escapes_everything(traces):
    filled, by_id = traces
    html = trace_html(by_id[filled.hostile])
    assert HOSTILE not in html
    assert "<img" not in html
    assert "&lt;img src=x" in html
    assert re.search(r"characters; trace.to_json\(\) has all", html)  # the 100k input is cut


def test_search_results_render_as_a_table(traces):
    filled, _ = traces
    results = routetrace.search_traces(max_results=100, return_type="list")
    assert isinstance(results, TraceList)
    html = results._repr_html_()
    assert html.count("<tr") == 1 + 8
    assert filled.chat_error in html
    assert "<img" not in html
    assert "<i>no traces</i>" in TraceList()._repr_html_()


def test_disable_and_enable_notebook_display(traces):
    filled, by_id = traces
    try:
        routetrace.disable_notebook_display()
        assert by_id[filled.math]._repr_html_() is None
        assert routetrace.search_traces(return_type="list")._repr_html_() is None
    finally:
        routetrace.enable_notebook_display()
    assert by_id[filled.math]._repr_html_().startswith("<div")


def test_the_trace_model_does_not_import_its_notebook_display():
    import ast
    import inspect

    from routetrace.core import model

    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(model))):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {name for name in imported if name.endswith("display")}
