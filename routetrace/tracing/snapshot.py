"""A finished trace as plain data, for stores that build it later.

Building the stored form of a trace (inputs and attribute dictionaries, previews, span JSON,
one row per trace) is most of what export costs, and it runs on a worker thread that shares
the GIL with the request path. A store that can keep a trace in this form (the local store)
takes a *snapshot* instead: what the build needs, filtered and redacted
(:meth:`~routetrace.middleware.capture.Exchange.facts`) but not decoded or built (captured
bodies apart: their secrets are found by decoding them). A batch is
stored as one value and built into traces when it is first read, or when the process is idle
(:meth:`LocalStore.compact`).

The encoding is :mod:`marshal` (version 4), one call per batch: the standard library's C
serializer for plain values, about half the cost of JSON here (no decoding of header bytes,
no decimal text for 128-bit ids), and it cannot run code when loaded, unlike pickle. It is
stable across CPython 3 versions for the types used (bytes, str, int, float, bool, None,
tuple, list, dict). The store is the user's own file; a payload that fails to load is left
in place and reported, never half-built.

Building a revived snapshot runs the same code as building the live trace
(:func:`routetrace.tracing.build.build_trace`), so the stored traces are the same either way.
A trace holding a deferred capture of an unknown kind is built at once instead; one holding a
value marshal refuses (a subclass of a plain type: a namedtuple ``client``, an ``HTTPStatus``)
has it stored as the plain type. Span processors need the live objects: with processors
configured, traces are always built at once.
"""

from __future__ import annotations

import json
import marshal
import operator
import threading
from typing import TYPE_CHECKING, Any

from routetrace.tracing.lifecycle import fresh_lock_after_fork
from routetrace.tracing.live_trace import LiveTrace
from routetrace.tracing.model import SpanEvent
from routetrace.tracing.serialize import to_jsonable
from routetrace.tracing.span import LiveSpan

if TYPE_CHECKING:
    from routetrace.tracing.destination import Experiment

__all__ = ["FORMAT", "NotSnapshottable", "Snapshot", "decode_batch", "encode_batch", "revive",
           "take"]

FORMAT = 3  # bump when the layout below changes
# 2: each trace marshalled on its own inside the batch (read still); 1: JSON text (refused).
_FORMAT_PER_TRACE = 2
_MARSHAL_VERSION = 4

_PRIMITIVE = (str, int, float, bool, type(None))


class NotSnapshottable(Exception):
    """The trace holds something only the live objects can build: build it now."""


class Snapshot:
    """One trace's snapshot (see :func:`take`): plain data, and the rules it refers to.

    Encoded with its batch (:func:`encode_batch`), as the worker writes it: a snapshot lives
    from the worker's take to its write, unless the write has to be retried.
    """

    __slots__ = ("data", "rules", "trace_id")

    def __init__(self, trace_id: int, data: tuple, rules: tuple[int, ...]) -> None:
        self.trace_id = trace_id
        self.data = data
        self.rules = rules


# Route rules by identity -> a small index, once per process: a snapshot refers to its rule
# by index, and a batch carries each rule it uses once.
_rule_index: dict[int, int] = {}
_rule_objects: list[Any] = []  # keeps the rules alive, so that their ids are never reused
_rule_json: list[str] = []
_rule_lock = threading.Lock()
fresh_lock_after_fork(__name__, "_rule_lock")


def _index_of(rule: Any) -> int:
    index = _rule_index.get(id(rule))
    if index is None:
        from routetrace.middleware.capture import rule_to_json

        with _rule_lock:
            index = _rule_index.get(id(rule))
            if index is None:
                _rule_json.append(_dumps(rule_to_json(rule)))
                _rule_objects.append(rule)
                index = _rule_index[id(rule)] = len(_rule_objects) - 1
    return index


def _fallback(obj: Any) -> Any:
    return to_jsonable(obj)


# ASCII-only (``\u`` escapes): lone surrogates from a server's ``surrogateescape`` decoding
# survive the round trip; the build cleans them as it does for live traces.
_dumps = json.JSONEncoder(default=_fallback, separators=(",", ":"),
                          check_circular=False).encode


def _jsonable_attributes(attributes: dict[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    for value in attributes.values():
        if value.__class__ not in _PRIMITIVE:
            return {str(k): v if v.__class__ in _PRIMITIVE else to_jsonable(v)
                    for k, v in attributes.items()}
    return attributes


def take(live: LiveTrace) -> Snapshot:
    """The snapshot of a finished trace. Raises :class:`NotSnapshottable`."""
    spans = []
    rules: tuple[int, ...] = ()
    for span in live.spans:
        deferred = span._deferred
        facts = None
        if deferred is not None:
            facts_of = getattr(deferred, "facts", None)  # the middleware's exchange
            if facts_of is None:
                raise NotSnapshottable(f"deferred capture {deferred!r}")
            facts = facts_of(_index_of)  # the rule as its index in the batch's rule table
            rules += (facts[0],)
        events = span._events
        spans.append((
            span.span_id_int, span.parent_span_id, span._name, span._span_type,
            span.start_time_ns, span.end_time_ns, span._status, span._status_description,
            span._inputs_json, span._outputs_json, _jsonable_attributes(span._attributes),
            None if not events else [
                (e.name, e.timestamp, {str(k): to_jsonable(v) for k, v in e.attributes.items()})
                for e in events
            ],
            facts,
        ))
    return Snapshot(live.trace_id, (
        live.trace_id, live.remote_parent_span_id, live.run_id, live.tags, live.metadata,
        live.aborted, live.request_preview, live.response_preview, spans,
    ), rules)


def encode_batch(snapshots: list[Snapshot]) -> bytes:
    """One value for a batch: the format, the rules its requests matched (once), the traces.

    One ``marshal`` call for the whole batch: about a quarter of what one call per trace
    cost (each call's own set-up was most of it).
    """
    used = sorted({i for s in snapshots for i in s.rules})
    rules = {i: _rule_json[i] for i in used}
    traces = [s.data for s in snapshots]
    try:
        return marshal.dumps((FORMAT, rules, traces), _MARSHAL_VERSION)
    except ValueError:
        # A value of a type marshal does not take: a server's ``client`` as a namedtuple,
        # an ``HTTPStatus`` for the status. Only those traces are made plain.
        return marshal.dumps((FORMAT, rules, [_marshallable(t) for t in traces]),
                             _MARSHAL_VERSION)


def _marshallable(value: Any) -> Any:
    try:
        marshal.dumps(value, _MARSHAL_VERSION)
    except ValueError:
        return _plain(value)
    return value


def _plain(value: Any) -> Any:
    """``value`` with every subclass of a plain type made that type (what the JSON of a
    built trace would have held); anything else becomes its ``str``."""
    cls = value.__class__
    if value is None or cls in (str, int, float, bool, bytes):
        return value
    if isinstance(value, int) or hasattr(cls, "__index__"):  # IntEnum, HTTPStatus, numpy
        return operator.index(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return str(value)


class _Revived:
    """A revived deferred capture: applies the stored facts when the trace is built."""

    __slots__ = ("facts",)

    def __init__(self, facts: list[Any]) -> None:
        self.facts = facts

    def __call__(self, span: LiveSpan) -> None:
        from routetrace.middleware.capture import apply

        apply(span, self.facts)


def decode_batch(payload: bytes, destination: Experiment) -> list[LiveTrace]:
    """Live traces again, finished, ready for :func:`~routetrace.tracing.build.build_trace`."""
    if not isinstance(payload, bytes):
        raise ValueError("a text payload: snapshot format 1, written by a development version "
                         "of routetrace that this one cannot read")
    try:
        doc = marshal.loads(payload)
    except (EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"not a snapshot batch ({exc})") from None
    if not (isinstance(doc, tuple) and len(doc) == 3 and doc[0] in (FORMAT, _FORMAT_PER_TRACE)):
        found = doc[0] if isinstance(doc, tuple) and doc else "unknown"
        raise ValueError(f"snapshot format {found!r} is not {FORMAT} "
                         "(written by another routetrace version)")
    fmt, stored_rules, stored = doc
    if fmt == _FORMAT_PER_TRACE:
        stored = [marshal.loads(blob) for blob in stored]
    rules: dict[int, Any] = {}
    if stored_rules:
        from routetrace.middleware.capture import StoredRule

        rules = {int(i): StoredRule(json.loads(r)) for i, r in stored_rules.items()}
    out = []
    for (trace_id, remote_parent, run_id, tags, metadata, aborted, request_preview,
         response_preview, spans) in stored:
        live = LiveTrace(trace_id, destination, None, _never, run_id)  # type: ignore[arg-type]
        live.remote_parent_span_id = remote_parent
        live.tags = tags
        live.metadata = metadata
        live.aborted = aborted
        live.request_preview = request_preview
        live.response_preview = response_preview
        live._claim()  # finished: nothing can end it again
        for (span_id, parent_id, name, span_type, start, end, status, description,
             inputs_json, outputs_json, attributes, events, facts) in spans:
            span = LiveSpan(live, span_id, parent_id, name, span_type, start)
            span.end_time_ns = end
            span._status = status
            span._status_description = description
            span._inputs_json = inputs_json
            span._outputs_json = outputs_json
            span._attributes = attributes
            if events:
                span._events = [SpanEvent(n, ts, attrs) for n, ts, attrs in events]
            if facts is not None:
                span._deferred = _Revived((rules[facts[0]], *facts[1:]))
            if live.root is None:
                live.root = span
            else:
                live.add_child(span)
        out.append(live)
    return out


def revive(snap: Snapshot, destination: Experiment) -> list[LiveTrace]:
    """One snapshot back to its live trace, through the stored form (the same round trip)."""
    return decode_batch(encode_batch([snap]), destination)


def _never(trace: LiveTrace) -> None:
    raise AssertionError("a revived trace is finished; it cannot be handed off again")

