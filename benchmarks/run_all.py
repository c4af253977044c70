"""Every benchmark, peers side by side, in one run: ``make bench``.

    .venv/bin/python -m benchmarks.run_all                 # the full run (~20 minutes here)
    .venv/bin/python -m benchmarks.run_all --quick         # a short look (what CI's test runs)
    .venv/bin/python -m benchmarks.run_all --write-docs    # also rewrite docs/benchmarks.md's
                                                           # generated sections + the chart

Each configuration of :mod:`benchmarks.peers` runs in its own process, rounds interleaved
(configuration after configuration, then again), each table row its median round:

1. in-process (:mod:`benchmarks.inprocess`): the ASGI app called in a tight loop; CPU per
   request split into request path, export and deferred build, every trace to its final form;
2. over HTTP (:mod:`benchmarks.over_http`): uvicorn, 1 worker, loopback, ``wrk`` (or a
   bounded Python client), with h11 and again with httptools; requests/s answered and with
   every trace finished inside the server process, server CPU per request (and its split
   between the event loop's thread and the others), RSS, traces kept;
3. export (:mod:`benchmarks.bench_export`): local store traces/s, flush of a full queue at
   shutdown, RSS with the backend down while 100 000 requests are traced.

A configuration whose package is missing (the ``bench`` extra has them) is skipped and named.
Raw results go to ``benchmarks/results.json``; the tables are printed as Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.peers import CONFIGS, environment, missing

HTTP_CONFIGS = ("bare", "floor", "routetrace", "otel", "ddtrace", "logfire", "sentry")
# Fewer timed requests in-process for the configurations whose export takes milliseconds a
# trace (MLflow writes each to SQLite): the figure is per request; the run stays minutes.
SLOW = {"sentry": 2, "mlflow": 10}
PARTS = ("inprocess", "http", "httptools", "export")
# The peers a user would pick instead: the targets compare routetrace with the best of them.
PEERS = ("otel", "otel-nosendrecv", "ddtrace", "logfire", "sentry", "mlflow")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCS = REPO / "docs"
LABELS = {
    "bare": "bare Starlette",
    "floor": "floor: minimal root-span middleware, no export",
    "routetrace": "routetrace, local store",
    "routetrace-otlp": "routetrace → OTLP protobuf (loopback)",
    "routetrace-file": "routetrace → OTLP-JSON file",
    "otel": "OpenTelemetry ASGI + batch + OTLP protobuf",
    "otel-nosendrecv": "… send/receive spans excluded",
    "ddtrace": "ddtrace (writer → agent on loopback)",
    "logfire": "logfire (instrument_asgi, OTLP protobuf)",
    "sentry": "Sentry (Starlette integration, every transaction)",
    "mlflow": "MLflow start_span middleware, async, SQLite",
}
SECTIONS = (("targets", "Targets"), ("inprocess", "Peers side by side, in-process"),
            ("httptools", "Over HTTP, uvicorn + httptools"), ("http", "Over HTTP, uvicorn + h11"),
            ("export", "Export"), ("skipped", "Not run here"))
BEGIN, END = "<!-- run_all: begin -->", "<!-- run_all: end -->"


def _child(args: list[str], config: str | None, workdir: Path, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "ROUTETRACE_", "OTEL_", "DD_", "SENTRY_"))}
    if config is not None:
        env.update(environment(config, workdir))
    env.setdefault("MLFLOW_TRACKING_URI", str(workdir / "store"))
    env["ROUTETRACE_SIGNAL_HANDLERS"] = "false" if "inprocess" in args[0] else "true"
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def _median(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The median run by ``key``, with every run's value of it."""
    median = sorted(runs, key=lambda r: r[key])[len(runs) // 2]
    return {**median, f"rounds_{key}": [r[key] for r in runs]}


def run(quick: bool, parts: set[str], configs: tuple[str, ...] = CONFIGS) -> dict[str, Any]:
    n, rounds, http_rounds, seconds = (300, 1, 1, 2.0) if quick else (5000, 5, 3, 8.0)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "python": platform.python_version(), "quick": quick,
        "load_tool": "wrk" if shutil.which("wrk") else "python client",
        "inprocess": {}, "http": {}, "httptools": {}, "export": {}, "skipped": {},
    }
    for config in configs:
        why = missing(config)
        if why:
            results["skipped"][config] = why
            print(f"{config}: skipped, {why}", file=sys.stderr, flush=True)
    configs = tuple(c for c in configs if c not in results["skipped"])
    if "httptools" in parts and importlib.util.find_spec("httptools") is None:
        print("over HTTP with httptools: skipped (pip install httptools, or the dev extra)",
              file=sys.stderr, flush=True)
        parts = parts - {"httptools"}
    http_configs = tuple(c for c in configs if c in HTTP_CONFIGS)
    with tempfile.TemporaryDirectory(prefix="routetrace-bench-") as tmp:
        # A shared 2-core machine moves a single run by ±15 %: configurations interleaved,
        # several rounds, each row its configuration's median round.
        inproc: dict[str, list[dict[str, Any]]] = {}
        for i in range(rounds if "inprocess" in parts else 0):
            for config in configs:
                workdir = Path(tmp) / f"in-{config}-{i}"
                workdir.mkdir()
                print(f"in-process: {config} (round {i + 1} of {rounds})", file=sys.stderr,
                      flush=True)
                timed = max(100, n // SLOW.get(config, 1))
                inproc.setdefault(config, []).append(_child(
                    ["benchmarks.inprocess", "--config", config, "-n", str(timed),
                     "--warm", str(min(1000, timed))], config, workdir, timeout=1800))
        results["inprocess"] = {c: _median(runs, "total_us") for c, runs in inproc.items()}
        for part, parser in (("http", "h11"), ("httptools", "httptools")):
            http: dict[str, list[dict[str, Any]]] = {}
            for i in range(http_rounds if part in parts else 0):
                for config in http_configs:
                    workdir = Path(tmp) / f"{part}-{config}-{i}"
                    workdir.mkdir()
                    print(f"over HTTP ({parser}): {config} (round {i + 1} of {http_rounds})",
                          file=sys.stderr, flush=True)
                    http.setdefault(config, []).append(_child(
                        ["benchmarks.over_http", "--config", config, "--seconds", str(seconds),
                         "--http", parser], config, workdir, timeout=900))
            results[part] = {c: _median(runs, "final_rps") for c, runs in http.items()}
        for part in ("throughput", "shutdown", "backend-down") if "export" in parts else ():
            workdir = Path(tmp) / f"export-{part}"
            workdir.mkdir()
            print(f"export: {part}", file=sys.stderr, flush=True)
            results["export"][part] = _child(["benchmarks.bench_export", "--part", part],
                                             None, workdir, timeout=900)
    return results


# -- reporting -------------------------------------------------------------------------------
def _pct(kept: int | None, sent: int) -> str:
    return "–" if kept is None else f"{kept:,} / {sent:,} ({100 * kept / sent:.1f} %)"


def tables(r: dict[str, Any]) -> dict[str, str]:
    out = {}
    cmd = ".venv/bin/python -m benchmarks.run_all" + (" --quick" if r["quick"] else "")

    def header(part: str) -> str:
        date = r.get("dates", {}).get(part) or r["date"]
        return f"`{cmd}` — {date}, {r['machine']}, Python {r['python']}.\n\n"

    inproc = r["inprocess"]
    if inproc:
        rows = ["| configuration | request path | export | deferred build | total | "
                "overhead over bare | × routetrace's overhead | traces kept |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        bare = inproc["bare"]["total_us"] if "bare" in inproc else 0.0
        rt = inproc.get("routetrace")
        rt_over = rt["total_us"] - bare if rt else None

        def us(x: float) -> str:
            return f"{x:.0f}" if abs(x) >= 0.5 else "–"

        for c, v in inproc.items():
            over = v["total_us"] - bare
            ratio = "–" if c == "bare" or not rt_over else f"{over / rt_over:.1f}"
            rows.append(f"| {LABELS[c]} | {us(v['request_us'])} | {us(v['export_us'])} | "
                        f"{us(v['build_us'])} | {v['total_us']:.0f} | "
                        f"{'–' if c == 'bare' else f'{over:+.0f}'} | {ratio} | "
                        f"{_pct(v['kept'] if c != 'bare' else None, v['requests'])} |")
        n = max(v["timed"] for v in inproc.values())
        fewer = ", ".join(f"{LABELS[c]} {v['timed']:,}" for c, v in inproc.items()
                          if v["timed"] < n)
        rounds = len(inproc[next(iter(inproc))]["rounds_total_us"])
        out["inprocess"] = (header("inprocess") + f"CPU µs per request, {n:,} timed requests "
                            f"per round ({fewer or 'each configuration'}) after a warm-up, "
                            f"{rounds} rounds interleaved, each row "
                            "its median round (by total); half `GET /hello`, half "
                            "`POST /chat/{n}` with JSON. *Request path*: the CPU of the thread "
                            "serving the requests; *export*: every other CPU of the process "
                            "(exporter threads, native ones included) until the flush returns; "
                            "*deferred build*: bringing the flushed traces to their final form "
                            "(the local store's build, forced by a read); *traces kept*: in the "
                            "backend at the end, warm-up included.\n\n"
                            + "\n".join(rows) + "\n")
    for part in ("http", "httptools"):
        table = _http_table(r, part, header)
        if table:
            out[part] = table
    exp = r["export"]
    if exp:
        rows = ["| figure | value |", "|---|---:|"]
        if "throughput" in exp:
            t = exp["throughput"]
            rows.append(f"| local store, request traces: export (build + write) | "
                        f"{t['traces_per_s']:,.0f} traces/s ({t['written']:,} written) |")
        if "shutdown" in exp:
            s = exp["shutdown"]
            rows.append(f"| flush of a full queue ({s['queued']:,} traces) at shutdown | "
                        f"{s['seconds']:.3f} s |")
        if "backend-down" in exp:
            b = exp["backend-down"]
            rows.append(f"| RSS, backend down, {b['requests']:,} requests traced | "
                        f"{b['rss_start_mib']:.1f} → max {max(b['rss_samples_mib']):.1f} MiB "
                        f"(+{b['rss_growth_mib']:.1f}); samples every 10 000: "
                        f"{', '.join(f'{x:.0f}' for x in b['rss_samples_mib'])} |")
            rows.append(f"| … where those traces went | spooled {b['spooled']:,} "
                        f"({b['spool_mib']:.1f} MiB on disk), dropped {b['dropped']:,}, "
                        f"pending {b['pending']:,} |")
        out["export"] = header("export") + "\n".join(rows) + "\n"
    verdict = targets(r)
    if verdict:
        out["targets"] = verdict
    if r.get("skipped"):
        out["skipped"] = "".join(f"- {LABELS.get(c, c)}: not run here, {why}.\n"
                                 for c, why in r["skipped"].items())
    return out


def targets(r: dict[str, Any]) -> str:
    """Each of the issue's targets beside this run's figure (ratios within the run)."""
    lines = []
    inproc = r["inprocess"]
    if {"bare", "routetrace"} <= set(inproc):
        bare = inproc["bare"]["total_us"]
        rt = inproc["routetrace"]
        over = rt["total_us"] - bare
        peers = {c: inproc[c]["total_us"] - bare for c in PEERS if c in inproc}
        split = (f"request path {rt['request_us'] - inproc['bare']['request_us']:+.0f}, "
                 f"export {rt['export_us']:.0f}, deferred build {rt['build_us']:.0f}")
        if peers:
            best = min(peers, key=peers.__getitem__)
            lines.append(f"| local store, total overhead ≤ 1/5 of the best peer's | "
                         f"{over:.0f} µs ({split}); best peer {LABELS[best]} "
                         f"{peers[best]:.0f} µs → target ≤ {peers[best] / 5:.0f} µs | "
                         f"{_met(over <= peers[best] / 5)} |")
        otel = [c for c in ("otel", "otel-nosendrecv") if c in inproc]
        if "routetrace-otlp" in inproc and otel:
            o = inproc["routetrace-otlp"]["total_us"] - bare
            ot = min(inproc[c]["total_us"] for c in otel) - bare
            lines.append(f"| OTLP protobuf (the MLflow server's encoding) ≤ 1/3 of "
                         f"OpenTelemetry's best | {o:.0f} µs vs {ot:.0f} µs → target ≤ "
                         f"{ot / 3:.0f} µs | {_met(o <= ot / 3)} |")
    for part, parser in (("httptools", "httptools"), ("http", "h11")):
        http = r.get(part) or {}
        if {"bare", "routetrace"} <= set(http):
            pct = 100 * http["routetrace"]["final_rps"] / http["bare"]["final_rps"]
            cpu = 100 * http["bare"]["server_cpu_us"] / http["routetrace"]["server_cpu_us"]
            lines.append(f"| over HTTP ({parser}), every trace final, ≥ 85 % of bare "
                         f"requests/s | {pct:.1f} % of bare's requests/s; {cpu:.1f} % of its "
                         f"capacity by server CPU ({http['routetrace']['server_cpu_us']:.0f} "
                         f"vs {http['bare']['server_cpu_us']:.0f} µs a request) | "
                         f"{_met(min(pct, cpu) >= 85)} |")
    for part in ("httptools", "http"):
        http = r.get(part) or {}
        if {"bare", "routetrace"} <= set(http):
            d = http["routetrace"]["server_VmRSS"] - http["bare"]["server_VmRSS"]
            lines.append(f"| server RSS ≤ bare + 15 MiB ({part}) | {d:+.1f} MiB | "
                         f"{_met(d <= 15)} |")
            break
    if "shutdown" in r["export"]:
        sh = r["export"]["shutdown"]
        lines.append(f"| shutdown flush of a full queue ({sh['queued']:,} traces) ≤ 1 s | "
                     f"{sh['seconds']:.2f} s | {_met(sh['seconds'] <= 1)} |")
    if not lines:
        return ""
    return "| target | this run | met |\n|---|---|---|\n" + "\n".join(lines) + "\n"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _http_table(r: dict[str, Any], part: str, header: Any) -> str | None:
    http = r.get(part) or {}
    if "bare" not in http:
        return None
    bare = http["bare"]
    rows = ["| configuration | requests/s answered | requests/s, every trace final (median "
            "round) | rounds | % of bare | server CPU µs/request | event loop µs/request "
            "(run + final) | other threads µs/request (run + final) | % of bare's capacity "
            "(CPU) | p50 ms | p99 ms | server RSS MiB (peak) | Δ RSS vs bare | traces kept "
            "after SIGTERM | exit |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c, v in http.items():
        each = ", ".join(f"{x:,.0f}" for x in v["rounds_final_rps"])
        rows.append(
            f"| {LABELS[c]} | {v['rps']:,.0f} | {v['final_rps']:,.0f} | {each} | "
            f"{100 * v['final_rps'] / bare['final_rps']:.1f} % | {v['server_cpu_us']:.0f} | "
            f"{_phases(v, 'loop')} | {_phases(v, 'other')} | "
            f"{100 * bare['server_cpu_us'] / v['server_cpu_us']:.1f} % | "
            f"{v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['server_VmRSS']:.1f} "
            f"({v['server_VmHWM']:.1f}) | {v['server_VmRSS'] - bare['server_VmRSS']:+.1f} | "
            f"{_pct(v['kept'], v['sent'])} | {v['exit_code']} |")
    parser = ("its pure-Python h11 parser" if part == "http" else
              "its C parser, httptools (`--http httptools`, what `uvicorn[standard]` installs)")
    return (header(part) + f"uvicorn `--workers 1` on loopback, {parser}; load by "
            f"{r['load_tool']} (1 thread, 32 connections, mixed GET/POST) after a warm-up; "
            "the configurations interleaved, each row its median round. *Every trace final*: "
            "the timed requests over the run's seconds plus those of the server's own "
            "flush-and-finish call after it (the local store's build included); *server "
            "CPU*: the server process's CPU (/proc) from the run's start to that call's end, "
            "per request; *event loop* and *other threads*: the same split by thread "
            "(/proc/PID/task), the thread running uvicorn's event loop and every other one "
            "(export workers), during the timed run + during the final call; *capacity*: "
            "bare's server CPU per request over the configuration's, "
            "the share of bare's requests/s a server with a core of its own would keep "
            "(requests/s on a loaded machine measure the scheduler as much as the server). "
            "'sent' counts the warm-up and the timed run (responses received; "
            "requests cut off in flight when the load stops are traced too).\n\n"
            + "\n".join(rows) + "\n")


def _phases(v: dict[str, Any], who: str) -> str:
    """``who``'s CPU µs a request as "timed run + final call" ("–" in runs before the
    split was measured)."""
    if f"{who}_cpu_run_us" not in v:
        return "–"
    return f"{v[f'{who}_cpu_run_us']:.0f} + {v[f'{who}_cpu_final_us']:.0f}"


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("inprocess", "httptools") if r[p]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    colors = {"bare": "#9e9e9e", "routetrace": "#2e7d32", "routetrace-otlp": "#66bb6a",
              "routetrace-file": "#a5d6a7", "otel": "#1565c0", "otel-nosendrecv": "#64b5f6",
              "ddtrace": "#6a1b9a", "logfire": "#c2185b", "sentry": "#5d4037",
              "mlflow": "#ef6c00", "floor": "#616161"}
    short = {"bare": "bare", "routetrace": "routetrace", "routetrace-otlp": "rt→OTLP",
             "routetrace-file": "rt→file", "otel": "OTel", "otel-nosendrecv": "OTel\nno s/r",
             "ddtrace": "ddtrace", "logfire": "logfire", "sentry": "Sentry", "mlflow": "MLflow",
             "floor": "floor"}
    for ax, panel in zip(axes[0], panels, strict=True):
        data = r[panel]
        names = list(data)
        if panel == "inprocess":
            values = [data[c]["total_us"] for c in names]
            ax.set_title("In-process: CPU µs per request to final form (log scale, lower "
                         "is better)", fontsize=9)
            ax.set_yscale("log")  # MLflow's SQLite writes are 100x the rest
            labels = [f"{v:.0f} µs" for v in values]
        else:
            values = [data[c]["final_rps"] for c in names]
            ax.set_title("Over HTTP (uvicorn + httptools): requests/s, every trace final",
                         fontsize=9)
            labels = []
            for c, v in zip(names, values, strict=True):
                kept = data[c]["kept"]
                # In-flight requests cut off by the load's end are traced, not counted sent.
                labels.append(f"{v:,.0f}" + ("" if kept is None else "\nall kept"
                              if kept >= data[c]["sent"] else
                              f"\n{100 * kept / data[c]['sent']:.0f}% kept"))
        bars = ax.bar([short[c] for c in names], values, color=[colors[c] for c in names])
        for bar, label in zip(bars, labels, strict=True):
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_ylim(1 if panel == "inprocess" else 0,
                    max(values) * (3 if panel == "inprocess" else 1.25))
        ax.tick_params(axis="x", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"routetrace vs peers — {r['date']}, {r['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(r: dict[str, Any]) -> None:
    path = DOCS / "benchmarks.md"
    text = path.read_text(encoding="utf-8")
    t = tables(r)
    block = BEGIN + "\n" + "".join(
        f"## {title}\n\n{t[key]}\n" for key, title in SECTIONS if key in t
    ) + "![routetrace vs peers](benchmarks.png)\n\n" + END
    if BEGIN in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
    chart(r, DOCS / "benchmarks.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for tuning")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--write-docs", action="store_true",
                        help="rewrite docs/benchmarks.md's generated sections and the chart")
    parser.add_argument("--from-json", metavar="FILE", help="report an earlier run's results")
    parser.add_argument("--merge", action="store_true",
                        help="keep the parts not run from the last benchmarks/results.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        unknown = ", ".join(repr(p) for p in sorted(parts - set(PARTS)))
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    configs = tuple(c for c in CONFIGS if c in args.configs.split(","))
    unknown_configs = set(args.configs.split(",")) - set(CONFIGS)
    if unknown_configs:
        unknown = ", ".join(repr(c) for c in sorted(unknown_configs))
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        results = run(args.quick, parts, configs)
        saved = HERE / "results.json"
        if args.merge and saved.exists():  # keep the other parts of the last run
            old = json.loads(saved.read_text())
            for part in PARTS:
                if not results[part]:
                    results[part] = old.get(part, {})
                    results.setdefault("dates", {})[part] = old.get("date")
        if not args.quick and configs == CONFIGS:  # a short look keeps the last full run
            saved.write_text(json.dumps(results, indent=1) + "\n")
    printed = tables(results)
    for key, title in SECTIONS:
        if key in printed:
            print(f"## {title}\n\n{printed[key]}")
    if args.write_docs:
        write_docs(results)
        print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'benchmarks.png'}")


if __name__ == "__main__":
    main()
