"""The fluent API, named and shaped as MLflow Tracing's: ``@trace``, ``start_span``, ...

Every function here is safe to call from application code: tracing problems are logged, never
raised into the caller, and with tracing disabled each is a cheap no-op.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from routetrace.core.destination import Experiment
from routetrace.core.model import (
    SpanType,
    format_trace_id,
)
from routetrace.core.span import NO_OP_SPAN, LiveSpan, NoOpSpan
from routetrace.core.tracer import get_tracer

__all__ = ["get_last_active_trace_id", "start_span", "trace"]

log = logging.getLogger("routetrace")

F = TypeVar("F", bound=Callable[..., Any])

_attach = otel_context.attach
_detach = otel_context.detach
_set_span_in_context = otel_trace.set_span_in_context
FUNCTION_NAME_ATTRIBUTE = "mlflow.spanFunctionName"
_last_trace_id: int | None = None  # an int: holding the trace would keep it alive


def _record_error(span: LiveSpan, exc: BaseException) -> None:
    try:
        span.record_exception(exc)
    except Exception:
        log.debug("routetrace: could not record an exception", exc_info=True)


def _end(span: LiveSpan) -> None:
    global _last_trace_id
    try:
        if span.parent_span_id is None:
            _last_trace_id = span.trace.trace_id
        span.end()
    except Exception:
        log.exception("routetrace: ending span %r failed", getattr(span, "name", "?"))


# -- start_span ---------------------------------------------------------------------------
class _SpanScope:
    """``with start_span(...) as span``: the span is current inside, ended on exit."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: LiveSpan | NoOpSpan) -> None:
        self._span = span
        self._token: object | None = None

    def __enter__(self) -> LiveSpan | NoOpSpan:
        if self._span is not NO_OP_SPAN:
            self._token = _attach(_set_span_in_context(self._span))
        return self._span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        if span is NO_OP_SPAN:
            return
        if self._token is not None:
            _detach(self._token)
        if exc is not None and not isinstance(exc, GeneratorExit):
            _record_error(span, exc)  # type: ignore[arg-type]
        _end(span)  # type: ignore[arg-type]

    async def __aenter__(self) -> LiveSpan | NoOpSpan:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


_NO_OP_SCOPE = _SpanScope(NO_OP_SPAN)


def start_span(
    name: str = "span",
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
    trace_destination: Experiment | None = None,
) -> _SpanScope:
    """Open a span as a context manager; nested spans become its children.

    >>> with routetrace.start_span("retrieve", span_type=SpanType.RETRIEVER) as span:
    ...     span.set_inputs({"q": q}); span.set_outputs(docs)
    """
    tracer = get_tracer()
    if not tracer.enabled:
        return _NO_OP_SCOPE
    try:
        span = tracer.start_span(str(name), str(span_type), trace_destination=trace_destination)
        if attributes and span is not NO_OP_SPAN:
            span.set_attributes(attributes)
    except Exception:
        log.exception("routetrace: start_span(%r) failed; continuing untraced", name)
        return _NO_OP_SCOPE
    return _SpanScope(span)


# -- @trace -------------------------------------------------------------------------------
def _binder(func: Callable[..., Any]) -> Callable[[tuple, dict], dict[str, Any]]:
    """A function turning a call's (args, kwargs) into {parameter: value}.

    ``Signature.bind`` costs several microseconds; for the common signature (named
    parameters only, no ``*args``/``**kwargs``/positional-only) a precomputed zip does the
    same in a fraction of that, and anything else falls back to ``bind``.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    simple = signature is not None and all(
        p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in signature.parameters.values()
    )
    if simple:
        assert signature is not None
        params = signature.parameters
        positional = tuple(
            n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD
        )
        defaults = {n: p.default for n, p in params.items() if p.default is not p.empty}
        required = frozenset(n for n in params if n not in defaults)
        names = frozenset(params)

        def fast_bind(args: tuple, kwargs: dict) -> dict[str, Any]:
            if len(args) <= len(positional) and names.issuperset(kwargs):
                inputs = dict(zip(positional, args, strict=False))
                if not kwargs.keys() & inputs.keys():
                    inputs.update(kwargs)
                    if len(inputs) < len(params):
                        for name, value in defaults.items():
                            inputs.setdefault(name, value)
                    if required.issubset(inputs):
                        inputs.pop("self", None)
                        return {n: inputs[n] for n in params if n in inputs}
            return slow_bind(args, kwargs)

    def slow_bind(args: tuple, kwargs: dict) -> dict[str, Any]:
        if signature is not None:
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                inputs = dict(bound.arguments)
                inputs.pop("self", None)
                return inputs
            except TypeError:
                pass
        return {"args": list(args), "kwargs": kwargs}

    return fast_bind if simple else slow_bind


def _begin(name: str, span_type: str, attributes: Mapping[str, Any] | None,
           destination: Experiment | None, bind: Callable, args: tuple,
           kwargs: dict, function_name: str) -> LiveSpan | None:
    tracer = get_tracer()
    if not tracer.enabled:
        return None
    try:
        span = tracer.start_span(name, span_type, trace_destination=destination)
        if span is NO_OP_SPAN:
            return None
        # MLflow records the traced function's name on its span; its UI shows it.
        span.set_attribute(FUNCTION_NAME_ATTRIBUTE, function_name)
        span.set_inputs(bind(args, kwargs))
        if attributes:
            span.set_attributes(attributes)
        return span  # type: ignore[return-value]
    except Exception:
        log.exception("routetrace: could not start a span for %s; running untraced", name)
        return None


@overload
def trace(func: F) -> F: ...
@overload
def trace(
    func: None = None, *, name: str | None = None, span_type: str = ...,
    attributes: Mapping[str, Any] | None = None,
    trace_destination: Experiment | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
) -> Callable[[F], F]: ...


def trace(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
    trace_destination: Experiment | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
) -> Any:
    """Trace a function: a span per call, inputs from the bound arguments, outputs from the
    return value. Works on functions, coroutines, generators and async generators (a
    generator's span covers its whole iteration; its outputs are the yielded items, or
    ``output_reducer(items)``). Exceptions mark the span ERROR and propagate unchanged.
    """
    if func is None:
        return functools.partial(
            trace, name=name, span_type=span_type, attributes=attributes,
            trace_destination=trace_destination, output_reducer=output_reducer,
        )
    function_name = getattr(func, "__name__", "span")
    span_name = name or function_name
    kind = str(span_type)
    bind = _binder(func)
    reduce_outputs = output_reducer or (lambda items: items)

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            span = _begin(span_name, kind, attributes, trace_destination, bind, args, kwargs,
                          function_name)
            if span is None:
                async for item in func(*args, **kwargs):
                    yield item
                return
            items: list[Any] = []
            agen = func(*args, **kwargs)
            send: Any = agen.asend
            arg: Any = None
            try:
                while True:
                    token = _attach(_set_span_in_context(span))
                    try:
                        value = await send(arg)
                    except StopAsyncIteration:
                        span.set_outputs(reduce_outputs(items))
                        _end(span)
                        return
                    finally:
                        _detach(token)
                    items.append(value)
                    try:
                        arg = yield value
                        send = agen.asend
                    except GeneratorExit:
                        await agen.aclose()
                        span.set_outputs(reduce_outputs(items))
                        _end(span)
                        raise
                    except BaseException as exc:  # thrown in by the consumer
                        send, arg = agen.athrow, exc
            except BaseException as exc:
                if not span.is_ended:
                    _record_error(span, exc)
                    _end(span)
                raise

        return async_gen_wrapper

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            span = _begin(span_name, kind, attributes, trace_destination, bind, args, kwargs,
                          function_name)
            if span is None:
                return (yield from func(*args, **kwargs))
            items: list[Any] = []
            gen = func(*args, **kwargs)
            send: Any = gen.send
            arg: Any = None
            try:
                while True:
                    token = _attach(_set_span_in_context(span))
                    try:
                        value = send(arg)
                    except StopIteration as stop:
                        span.set_outputs(reduce_outputs(items))
                        _end(span)
                        return stop.value
                    finally:
                        _detach(token)
                    items.append(value)
                    try:
                        arg = yield value
                        send = gen.send
                    except GeneratorExit:
                        gen.close()
                        span.set_outputs(reduce_outputs(items))
                        _end(span)
                        raise
                    except BaseException as exc:
                        send, arg = gen.throw, exc
            except BaseException as exc:
                if not span.is_ended:
                    _record_error(span, exc)
                    _end(span)
                raise

        return gen_wrapper

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            span = _begin(span_name, kind, attributes, trace_destination, bind, args, kwargs,
                          function_name)
            if span is None:
                return await func(*args, **kwargs)
            token = _attach(_set_span_in_context(span))
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                _detach(token)
                _record_error(span, exc)
                _end(span)
                raise
            _detach(token)
            span.set_outputs(result)
            _end(span)
            return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = _begin(span_name, kind, attributes, trace_destination, bind, args, kwargs,
                          function_name)
        if span is None:
            return func(*args, **kwargs)
        token = _attach(_set_span_in_context(span))
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _record_error(span, exc)
            _end(span)
            raise
        _detach(token)
        span.set_outputs(result)
        _end(span)
        return result

    return wrapper


# -- the last trace --------------------------------------------------------------------
def get_last_active_trace_id() -> str | None:
    """The id of the last trace whose root span ended in this process (MLflow has it too)."""
    return None if _last_trace_id is None else format_trace_id(_last_trace_id)
