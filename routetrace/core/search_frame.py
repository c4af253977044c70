"""``search_traces(return_type="pandas")``: the DataFrame MLflow's ``search_traces`` returns.

The columns and their order are MLflow's (``Trace.pandas_dataframe_columns``), so code that
reads ``df["trace_id"]``, ``df["request"]`` or ``df["spans"]`` runs unchanged. pandas is
optional: it is imported only here, when a DataFrame is asked for.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from routetrace.core.model import Span, Trace

__all__ = ["COLUMNS", "ExtractField", "import_pandas", "parse_extract_field", "traces_to_frame"]

COLUMNS = (
    "trace_id", "trace", "client_request_id", "state", "request_time", "execution_duration",
    "request", "response", "trace_metadata", "tags", "spans", "assessments",
)
_PART = r"(`[^`]+`|[^.`]+)"
_FIELD = re.compile(rf"{_PART}\.(inputs|outputs)(?:\.{_PART})?")


class ExtractField(NamedTuple):
    """One ``extract_fields`` entry: ``span_name.inputs[.field]`` (backticks around dots)."""

    span_name: str
    field_type: str  # "inputs" | "outputs"
    field_name: str | None

    def __str__(self) -> str:
        name = f"{self.span_name}.{self.field_type}"
        return name if self.field_name is None else f"{name}.{self.field_name}"


def import_pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "search_traces returns a pandas DataFrame by default, and pandas is not installed: "
            "pip install 'routetrace[pandas]', or pass return_type='list' for Trace objects"
        ) from None
    return pandas


def parse_extract_field(text: str) -> ExtractField:
    match = _FIELD.fullmatch(text)
    if match is None:
        raise ValueError(
            f"extract_fields entry {text!r} is not 'span_name.inputs', 'span_name.outputs' or "
            "'span_name.outputs.field' (put a name containing a dot in backticks)"
        )
    span_name, field_type, field_name = match.groups()
    return ExtractField(span_name.strip("`"), field_type,
                        None if field_name is None else field_name.strip("`"))


def _extract(span: Span, field: ExtractField) -> Any:
    value = span.inputs if field.field_type == "inputs" else span.outputs
    if field.field_name is None:
        return value
    return value.get(field.field_name) if isinstance(value, dict) else None


def _row(trace: Trace) -> dict[str, Any]:
    info = trace.info
    return {
        "trace_id": info.trace_id,
        "trace": trace.to_json(),
        "client_request_id": info.client_request_id,
        "state": str(info.state),
        "request_time": info.request_time,
        "execution_duration": info.execution_duration,
        "request": trace.data.request,
        "response": trace.data.response,
        "trace_metadata": info.trace_metadata,
        "tags": info.tags,
        "spans": [span.to_dict() for span in trace.data.spans],
        "assessments": [],
    }


def traces_to_frame(pandas: Any, traces: list[Trace],
                    extract_fields: list[str] | None = None) -> Any:
    """One row per trace, MLflow's columns, then one column per ``extract_fields`` entry."""
    fields = [parse_extract_field(f) for f in extract_fields or ()]
    columns = [*COLUMNS, *(str(f) for f in fields)]
    rows = []
    for trace in traces:
        row = _row(trace)
        for field in fields:
            row[str(field)] = None
            for span in trace.data.spans:
                if span.name == field.span_name:
                    row[str(field)] = _extract(span, field)
        rows.append(row)
    return pandas.DataFrame.from_records(rows, columns=columns)
