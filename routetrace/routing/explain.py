"""Human-readable views of a route table, for ``routetrace routes [--explain PATH]``."""

from __future__ import annotations

from routetrace.core.destination import Experiment
from routetrace.routing.scrub import DEFAULT_POLICY, KeyPolicy
from routetrace.routing.table import RouteTable, Rule

__all__ = ["describe", "explain"]


def _destination(table: RouteTable, rule: Rule) -> str:
    """Where a trace of ``rule`` goes, and why (the precedence of DESIGN.md)."""
    if rule.experiment is not None:
        return f"experiment {rule.experiment}"
    if table.default_experiment is not None:
        return f"experiment {table.default_experiment} (the table's default)"
    from routetrace.core.tracer import get_tracer

    fallback: Experiment = get_tracer().default_destination
    return f"experiment {fallback} (no experiment in the table; from the environment)"


def _body(cap: int) -> str:
    return "off" if cap == 0 else f"up to {cap} bytes"


def _headers(names: frozenset[str] | None) -> str:
    if names is None:
        return "all (credentials redacted)"
    return ", ".join(sorted(names)) or "none"


def _keys(policy: KeyPolicy) -> str:
    added = sorted(policy.denied - DEFAULT_POLICY.denied)
    text = f"{len(DEFAULT_POLICY.denied)} default names"
    if added:
        text += " + " + ", ".join(added)
    if policy.safe:
        text += "; safe: " + ", ".join(sorted(policy.safe))
    return text


def _rule_lines(table: RouteTable, rule: Rule) -> list[str]:
    lines = [f"experiment: {_destination(table, rule).removeprefix('experiment ')}"]
    if not rule.enabled:
        lines = ["enabled: false (matching requests are not traced)"]
    lines.append(f"methods: {', '.join(sorted(rule.methods)) if rule.methods else 'any'}")
    if rule.sample_rate < 1:
        lines.append(f"sample_rate: {rule.sample_rate:g}")
    if rule.timeout_seconds is not None:
        lines.append(f"timeout_seconds: {rule.timeout_seconds:g}")
    if rule.span_type != "UNKNOWN":
        lines.append(f"span_type: {rule.span_type}")
    lines.append(f"capture_body: {_body(rule.capture_body)}")
    lines.append(f"capture_headers: {_headers(rule.capture_headers)}")
    if rule.key_policy is not None:
        lines.append(f"secret keys: {_keys(rule.key_policy)}")
    if rule.tags:
        lines.append("tags: " + ", ".join(f"{k}={v}" for k, v in rule.tags.items()))
    return lines


def describe(table: RouteTable) -> str:
    """The whole table as text: source, defaults, excludes and every rule in match order."""
    out = [f"route table: {table.source}"]
    if table.service_name:
        out.append(f"service_name: {table.service_name}")
    out.append(f"default: {_destination(table, table.default_rule)}")
    out.append(f"trace id response header: {table.trace_id_header or 'off'}")
    out.append(f"redacted headers: {', '.join(sorted(table.redact_headers))}")
    out.append(f"redacted query keys: {', '.join(sorted(table.redact_query))}")
    out.append(f"secret keys (bodies, headers, query): {_keys(table.key_policy)}")
    if table.exclude:
        out.append("exclude (never traced): " + ", ".join(table.exclude))
    if not table.rules:
        out.append("rules: none (every request not excluded goes to the default)")
    for rule in table.rules:
        where = f"  (line {rule.line})" if rule.line else ""
        out.append(f"[{rule.index}] {rule.pattern}{where}")
        out.extend(f"    {line}" for line in _rule_lines(table, rule))
    return "\n".join(out)


def explain(table: RouteTable, path: str, method: str = "GET") -> str:
    """Which rule ``method path`` hits and where its trace goes."""
    method = method.upper()
    found = table.explain_match(path, method)
    head = f"{method} {path}"
    if found.rule is None:
        return f"{head}\n  excluded by {found.excluded_by!r}: not traced"
    rule = found.rule
    if rule.is_default:
        out = [f"{head}", "  no rule matches: the table's default applies",
               f"  trace goes to {_destination(table, rule)}",
               f"  span name: {method} (or the framework's route template)"]
        return "\n".join(out)
    where = f", line {rule.line}" if rule.line else ""
    out = [head, f"  matches rule [{rule.index}] {rule.pattern!r}{where}"]
    if found.params:
        out.append("  parameters: " + ", ".join(f"{k}={v!r}" for k, v in found.params.items()))
    if not rule.enabled:
        out.append("  the rule is disabled: not traced")
        return "\n".join(out)
    out.append(f"  trace goes to {_destination(table, rule)}")
    out.append(f"  span name: {method} {rule.pattern} (or the framework's route template)")
    rate = "every request" if rule.sample_rate >= 1 else f"{rule.sample_rate:.0%} of requests"
    out.append(f"  sampled: {rate}")
    out.extend(f"  {line}" for line in _rule_lines(table, rule)[1:])
    return "\n".join(out)
