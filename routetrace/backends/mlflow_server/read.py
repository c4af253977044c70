"""Reading traces back from an MLflow server: search pages, batch gets, and the server's
JSON turned into :class:`~routetrace.core.model.Trace` objects."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any

from routetrace.backends import otlp_encoding as enc
from routetrace.backends.base import BackendError, TraceQuery
from routetrace.backends.mlflow_server.rest import V3, RestClient
from routetrace.core.model import (
    METADATA_CLIENT_REQUEST_ID,
    Span,
    SpanEvent,
    SpanStatus,
    Trace,
    TraceData,
    TraceInfo,
)

__all__ = ["TraceReader"]

_SEARCH_PAGE = 500  # the server's cap on max_results
_BATCH_GET = 100
# Span attributes the encoding adds; reading back, they become fields, not attributes.
# ``mlflow.spanFunctionName`` stays: @trace records it, so local traces have it too.
_READ_BACK_DROP = (enc.TRACE_REQUEST_ID, enc.SPAN_TYPE, enc.SPAN_INPUTS, enc.SPAN_OUTPUTS,
                  "mlflow.spanLogLevel")


def _parse_rfc3339_ms(text: str | None) -> int:
    if not text:
        return 0
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000)


def _parse_duration_ms(text: str | None) -> int | None:
    if not text:
        return None
    return round(float(str(text).rstrip("s")) * 1000)


def _hex_id(value: str | None, width: int) -> str | None:
    if not value:
        return None
    return base64.b64decode(value).hex().rjust(width, "0")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


class TraceReader:
    """Reads through ``rest``; ``experiment_name`` names an experiment id (cached by the
    backend), since the server's trace JSON carries only the id."""

    def __init__(self, rest: RestClient, experiment_name: Callable[[str], str | None]) -> None:
        self._rest = rest
        self._experiment_name = experiment_name

    def get_trace(self, trace_id: str) -> Trace | None:
        body = self._rest.json_or_none("GET", f"{V3}/get", params={"trace_id": trace_id},
                                       what=f"reading trace {trace_id}")
        if body is None or "trace" not in body:
            return None
        return self._trace_from_json(body["trace"])

    def search(self, query: TraceQuery, experiment_ids: list[str]) -> list[Trace]:
        """The traces ``query`` asks for in ``experiment_ids``, page by page."""
        filter_string, max_results, offset = query.filter_string, query.max_results, query.offset
        # MLflow's filter grammar has AND only and no parentheses: clauses are joined as-is.
        clauses = [filter_string.strip()] if filter_string and filter_string.strip() else []
        if query.run_id:
            clauses.append(f"metadata.`mlflow.sourceRun` = '{_quote(query.run_id)}'")
        wanted = max_results + max(0, int(offset))
        infos: list[dict[str, Any]] = []
        token: str | None = None
        while len(infos) < wanted:
            body: dict[str, Any] = {
                "locations": [{"type": "MLFLOW_EXPERIMENT",
                               "mlflow_experiment": {"experiment_id": str(e)}}
                              for e in experiment_ids],
                "max_results": min(_SEARCH_PAGE, wanted - len(infos)),
                "order_by": list(query.order_by or ["timestamp_ms DESC"]),
            }
            if clauses:
                body["filter"] = " AND ".join(clauses)
            if token:
                body["page_token"] = token
            resp = self._search_page(body)
            infos.extend(resp.get("traces", ()))
            token = resp.get("next_page_token")
            if not token:
                break
        infos = infos[max(0, int(offset)):][:max_results]
        if not query.include_spans:
            return [Trace(self._info_from_json(i), TraceData([])) for i in infos]
        full = self._batch_get([i["trace_id"] for i in infos])
        out = []
        for i in infos:
            trace = full.get(i["trace_id"])
            out.append(trace if trace is not None
                       else Trace(self._info_from_json(i), TraceData([])))
        return out

    def _search_page(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._rest.json("POST", f"{V3}/search", json=body, what="searching traces")
        except BackendError as exc:
            if not exc.retryable and "HTTP 400" in str(exc):
                raise ValueError(f"{self._rest.uri} rejected the search: {exc}") from None
            raise

    def _batch_get(self, trace_ids: list[str]) -> dict[str, Trace]:
        out: dict[str, Trace] = {}
        for start in range(0, len(trace_ids), _BATCH_GET):
            chunk = trace_ids[start:start + _BATCH_GET]
            resp = self._rest.json("GET", f"{V3}/batchGet",
                                   params=[("trace_ids", t) for t in chunk],
                                   what="reading traces")
            for t in resp.get("traces", ()):
                trace = self._trace_from_json(t)
                out[trace.info.trace_id] = trace
        return out

    def trace_exists(self, trace_ids: list[str]) -> set[str]:
        """Which of ``trace_ids`` the server has."""
        found: set[str] = set()
        for start in range(0, len(trace_ids), _BATCH_GET):
            chunk = trace_ids[start:start + _BATCH_GET]
            resp = self._rest.json("POST", f"{V3}/batchGetInfos", json={"trace_ids": chunk},
                                   what="checking traces")
            found.update(str(i["trace_id"]) for i in resp.get("trace_infos", ()))
        return found

    def _info_from_json(self, d: dict[str, Any]) -> TraceInfo:
        location = d.get("trace_location") or {}
        exp_id = str((location.get("mlflow_experiment") or {}).get("experiment_id", ""))
        metadata = dict(d.get("trace_metadata") or {})
        if d.get("client_request_id"):
            metadata[METADATA_CLIENT_REQUEST_ID] = d["client_request_id"]
        return TraceInfo(
            trace_id=d["trace_id"],
            experiment_id=exp_id,
            experiment_name=self._experiment_name(exp_id),
            request_time=_parse_rfc3339_ms(d.get("request_time")),
            execution_duration=_parse_duration_ms(d.get("execution_duration")),
            state=d.get("state", "STATE_UNSPECIFIED"),
            request_preview=d.get("request_preview"),
            response_preview=d.get("response_preview"),
            tags=dict(d.get("tags") or {}),
            trace_metadata=metadata,
        )

    @staticmethod
    def _span_from_json(trace_id: str, d: dict[str, Any]) -> Span:
        attrs = {a["key"]: enc.decode_any_value_json(a.get("value") or {})
                 for a in d.get("attributes", ())}
        span_type = attrs.get(enc.SPAN_TYPE) or "UNKNOWN"
        inputs = attrs.get(enc.SPAN_INPUTS)
        outputs = attrs.get(enc.SPAN_OUTPUTS)
        for key in _READ_BACK_DROP:
            attrs.pop(key, None)
        for key in [k for k in attrs if k.startswith(enc.TRACE_TAG_PREFIX)]:
            attrs.pop(key)
        status = d.get("status") or {}
        end = d.get("end_time_unix_nano")
        return Span(
            trace_id=trace_id,
            span_id=_hex_id(d.get("span_id"), 16) or "",
            parent_id=_hex_id(d.get("parent_span_id"), 16),
            name=d.get("name", ""),
            span_type=str(span_type),
            start_time_ns=int(d.get("start_time_unix_nano", 0)),
            end_time_ns=None if end is None else int(end),
            status=SpanStatus(enc.status_name(status.get("code")), status.get("message", "")),
            inputs=inputs,
            outputs=outputs,
            attributes=attrs,
            events=[
                SpanEvent(
                    e.get("name", ""), int(e.get("time_unix_nano", 0)),
                    {a["key"]: enc.decode_any_value_json(a.get("value") or {})
                     for a in e.get("attributes", ())},
                )
                for e in d.get("events", ())
            ],
        )

    def _trace_from_json(self, d: dict[str, Any]) -> Trace:
        info = self._info_from_json(d["trace_info"])
        spans = [self._span_from_json(info.trace_id, s) for s in d.get("spans", ())]
        spans.sort(key=lambda s: (s.start_time_ns, s.parent_id is not None))
        return Trace(info, TraceData(spans))
