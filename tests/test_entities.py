"""``routetrace.entities`` and the ``routetrace.tracing`` functions answer MLflow's names."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import routetrace
from tests.conftest import traces_of


def test_entities_has_mlflow_entity_names() -> None:
    from routetrace.entities import (
        LiveSpan,
        SpanEvent,
        SpanStatus,
        SpanStatusCode,
        SpanType,
        Trace,
        TraceInfo,
        TraceState,
    )

    assert SpanType.RETRIEVER == "RETRIEVER" and SpanStatusCode.ERROR == "ERROR"
    assert TraceState.OK == "OK"
    assert (LiveSpan, Trace, TraceInfo) == (routetrace.LiveSpan, routetrace.Trace,
                                            routetrace.TraceInfo)
    assert SpanEvent("e").name == "e" and SpanStatus("OK").status_code == "OK"


def test_tracing_namespace_has_mlflow_tracing_functions() -> None:
    @routetrace.trace
    def f() -> int:
        return 1

    routetrace.tracing.disable()
    f()
    assert not routetrace.is_enabled()
    routetrace.tracing.enable()
    f()
    assert len(traces_of()) == 1
    from routetrace.tracing import disable_notebook_display, set_destination

    assert callable(disable_notebook_display) and callable(set_destination)


def test_tracing_namespace_names_a_missing_function() -> None:
    with pytest.raises(AttributeError, match="no_such_function"):
        routetrace.tracing.no_such_function  # noqa: B018


def test_set_destination_takes_mlflow_experiment_location_objects() -> None:
    class MlflowExperimentLocation:  # the shape of mlflow.entities.trace_location's
        def __init__(self, experiment_id: str) -> None:
            self.experiment_id = experiment_id

    info = routetrace.set_experiment("by-id")
    routetrace.set_experiment("other")
    routetrace.tracing.set_destination(MlflowExperimentLocation(info.experiment_id))
    with routetrace.start_span("s"):
        pass
    assert [t.info.experiment_name for t in traces_of()] == ["by-id"]


def test_importing_the_new_modules_starts_no_thread() -> None:
    code = ("import threading, routetrace, routetrace.entities, routetrace.client;"
            "print(threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert re.fullmatch(r"1\s*", out)
