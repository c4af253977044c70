"""Every benchmark, peers side by side, in one run: ``make bench``.

    .venv/bin/python -m benchmarks.run_all                 # the full run (~13 minutes here)
    .venv/bin/python -m benchmarks.run_all --quick         # a short look while tuning
    .venv/bin/python -m benchmarks.run_all --write-docs    # also rewrite docs/benchmarks.md's
                                                           # generated sections + the chart

Each configuration of :mod:`benchmarks.peers` runs in its own process, for each part:

1. in-process (:mod:`benchmarks.inprocess`): the ASGI app called in a tight loop, 20 000
   mixed requests x 5 repetitions; µs per request, overhead over bare, traces kept;
2. over HTTP (:mod:`benchmarks.over_http`): uvicorn, 1 worker, loopback, ``wrk`` (or a
   bounded Python client); requests/s, p50/p99 latency, server RSS, traces kept after SIGTERM;
   then again with uvicorn's C parser, httptools, for bare, routetrace and OpenTelemetry's
   best configuration (part ``httptools``; skipped when httptools is not installed);
3. export (:mod:`benchmarks.bench_export`): local store traces/s, flush of a full queue at
   shutdown, RSS with the backend down while 100 000 requests are traced.

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

from benchmarks.peers import CONFIGS, environment

HTTPTOOLS_CONFIGS = ("bare", "routetrace", "otel-nosendrecv")
PARTS = ("inprocess", "http", "httptools", "export")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCS = REPO / "docs"
LABELS = {
    "bare": "bare Starlette",
    "routetrace": "routetrace (local store, async)",
    "otel": "OpenTelemetry ASGI + BatchSpanProcessor",
    "otel-nosendrecv": "OpenTelemetry, send/receive spans excluded",
    "mlflow": "MLflow start_span middleware, async, SQLite",
}
BEGIN, END = "<!-- run_all: begin -->", "<!-- run_all: end -->"


def _child(args: list[str], config: str | None, workdir: Path, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "ROUTETRACE_", "OTEL_"))}
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


def run(quick: bool, parts: set[str]) -> dict[str, Any]:
    n, repeat, seconds, http_rounds = (2000, 2, 3.0, 1) if quick else (20_000, 5, 10.0, 3)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "python": platform.python_version(), "quick": quick,
        "load_tool": "wrk" if shutil.which("wrk") else "python client",
        "inprocess": {}, "http": {}, "httptools": {}, "export": {},
    }
    if "httptools" in parts and importlib.util.find_spec("httptools") is None:
        print("over HTTP with httptools: skipped (pip install httptools, or the dev extra)",
              file=sys.stderr, flush=True)
        parts = parts - {"httptools"}
    with tempfile.TemporaryDirectory(prefix="routetrace-bench-") as tmp:
        for config in CONFIGS if "inprocess" in parts else ():
            workdir = Path(tmp) / f"in-{config}"
            workdir.mkdir()
            print(f"in-process: {config}", file=sys.stderr, flush=True)
            results["inprocess"][config] = _child(
                ["benchmarks.inprocess", "--config", config, "-n", str(n), "-r", str(repeat)],
                config, workdir, timeout=1800)
        # Over HTTP a shared 2-core machine moves a single run by ±15 %: the configurations
        # run interleaved, several rounds, and each reports its median round. With uvicorn's
        # C parser (what `uvicorn[standard]` deployments run) the server's own cost halves:
        # bare, routetrace and OpenTelemetry's best again.
        for part, parser, configs in (("http", "h11", CONFIGS),
                                      ("httptools", "httptools", HTTPTOOLS_CONFIGS)):
            rounds: dict[str, list[dict[str, Any]]] = {}
            for i in range(http_rounds if part in parts else 0):
                for config in configs:
                    workdir = Path(tmp) / f"{part}-{config}-{i}"
                    workdir.mkdir()
                    print(f"over HTTP ({parser}): {config} (round {i + 1} of {http_rounds})",
                          file=sys.stderr, flush=True)
                    rounds.setdefault(config, []).append(_child(
                        ["benchmarks.over_http", "--config", config, "--seconds", str(seconds),
                         "--http", parser], config, workdir, timeout=900))
            for config, runs in rounds.items():
                median = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
                results[part][config] = {**median, "rounds_rps": [r["rps"] for r in runs]}
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
        def all_us(v: dict[str, Any]) -> float:  # results from before all_us: the loop only
            return float(v.get("all_us", v["best_us"]))

        bare = all_us(inproc["bare"])
        otel = [c for c in ("otel", "otel-nosendrecv") if c in inproc]
        otel_best = min(all_us(inproc[c]) for c in otel) if otel else None
        rows = ["| configuration | µs/request, all work (mean) | loop only: best | median | "
                "overhead over bare (all work) | × routetrace's overhead | traces kept |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        rt = inproc.get("routetrace")
        rt_over = all_us(rt) - bare if rt else None
        for c, v in inproc.items():
            over = all_us(v) - bare
            ratio = "–" if c == "bare" or not rt_over else f"{over / rt_over:.1f}"
            rows.append(f"| {LABELS[c]} | {all_us(v):.1f} | {v['best_us']:.1f} | "
                        f"{v['median_us']:.1f} | {over:+.1f} | {ratio} | "
                        f"{_pct(v['kept'] if c != 'bare' else None, v['requests'])} |")
            if "held_best_us" in v:
                held_over = v["held_median_us"] - inproc["bare"]["median_us"]
                rows.append(f"| … routetrace, request path alone (export held, written "
                            f"between slices; median vs bare's median) | – | "
                            f"{v['held_best_us']:.1f} | {v['held_median_us']:.1f} | "
                            f"{held_over:+.1f} | {held_over / rt_over:.1f} | (same run) |")
        n = inproc["bare"]["requests"]
        verdict = ""
        if rt_over is not None:
            verdict = f"\nroutetrace: {rt_over:.1f} µs/request over bare, all work included"
            if "held_median_us" in rt:
                verdict += (f" ({rt['held_median_us'] - inproc['bare']['median_us']:.1f} µs "
                            "of it on the request path)")
            verdict += " (target ≤ 10"
            if otel_best is not None:
                verdict += (f", and ≤ 1/8 of OpenTelemetry's best configuration, "
                            f"{otel_best - bare:.1f} µs: ≤ {(otel_best - bare) / 8:.1f} µs")
            verdict += ").\n"
            if "build_on_read_us" in rt:
                verdict += (f"\nNot in these figures: the local store builds its snapshots "
                            f"into trace rows on first read or when the process is idle, "
                            f"{rt['build_on_read_us']:.0f} µs per trace here (timed on the "
                            "first count after the run).\n")
        out["inprocess"] = (header("inprocess") + f"{n:,} requests per configuration "
                            "(warm-up included in the kept count), half `GET /hello`, "
                            "half `POST /chat/{n}` with JSON. *All work* is the timed loops "
                            "plus the flush of what they left queued, per request: what a "
                            "saturated server pays. *Loop only* leaves out that flush.\n\n"
                            + "\n".join(rows) + "\n" + verdict)
    for part in ("http", "httptools"):
        table = _http_table(r, part, header)
        if table:
            out[part] = table
    exp = r["export"]
    if exp:
        rows = ["| figure | value |", "|---|---:|"]
        if "throughput" in exp:
            t = exp["throughput"]
            rows.append(f"| local store, request traces: export (snapshot + write) | "
                        f"{t['traces_per_s']:,.0f} traces/s ({t['written']:,} written) |")
            if t.get("build_per_s"):
                rows.append(f"| … building those snapshots into trace rows (first read) | "
                            f"{t['build_per_s']:,.0f} traces/s ({t['built_on_read']:,}) |")
        if "shutdown" in exp:
            s = exp["shutdown"]
            rows.append(f"| flush of a full queue ({s['queued']:,} traces) at shutdown | "
                        f"{s['seconds']:.3f} s (MLflow: 15.6 s) |")
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
    return out


def _http_table(r: dict[str, Any], part: str, header: Any) -> str | None:
    http = r.get(part) or {}
    if not http:
        return None
    bare = http["bare"]
    rows = ["| configuration | requests/s (median round) | rounds | % of bare | p50 ms | "
            "p99 ms | server RSS MiB (peak) | Δ RSS vs bare | traces kept after SIGTERM | "
            "exit |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, v in http.items():
        each = ", ".join(f"{x:,.0f}" for x in v.get("rounds_rps", [v["rps"]]))
        rows.append(
            f"| {LABELS[c]} | {v['rps']:,.0f} | {each} | "
            f"{100 * v['rps'] / bare['rps']:.1f} % | "
            f"{v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['server_VmRSS']:.1f} "
            f"({v['server_VmHWM']:.1f}) | {v['server_VmRSS'] - bare['server_VmRSS']:+.1f} | "
            f"{_pct(v['kept'], v['sent'])} | {v['exit_code']} |")
    parser = ("its pure-Python h11 parser" if part == "http" else
              "its C parser, httptools (`--http httptools`, what `uvicorn[standard]` installs)")
    return (header(part) + f"uvicorn `--workers 1` on loopback, {parser}; load by "
            f"{r['load_tool']} (1 thread, 32 connections, mixed GET/POST), "
            "after a warm-up; the configurations interleaved, each round 10 s, the "
            "row is each configuration's median round; "
            "'sent' counts the warm-up and the timed run (responses received).\n\n"
            + "\n".join(rows) + "\n")


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("inprocess", "http") if r[p]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    colors = {"bare": "#9e9e9e", "routetrace": "#2e7d32", "otel": "#1565c0",
              "otel-nosendrecv": "#64b5f6", "mlflow": "#ef6c00"}
    short = {"bare": "bare", "routetrace": "routetrace", "otel": "OTel",
             "otel-nosendrecv": "OTel\nno send/recv", "mlflow": "MLflow"}
    for ax, panel in zip(axes[0], panels, strict=True):
        data = r[panel]
        names = list(data)
        if panel == "inprocess":
            values = [data[c].get("all_us", data[c]["best_us"]) for c in names]
            ax.set_title("In-process: µs per request, export included (lower is better)")
            labels = [f"{v:.0f} µs" for v in values]
        else:
            values = [data[c]["rps"] for c in names]
            ax.set_title("Over HTTP (uvicorn): requests/s (higher is better)")
            labels = []
            for c, v in zip(names, values, strict=True):
                kept = data[c]["kept"]
                labels.append(f"{v:,.0f}" + ("" if kept is None else
                              f"\n{100 * kept / data[c]['sent']:.0f}% kept"))
        bars = ax.bar([short[c] for c in names], values, color=[colors[c] for c in names])
        for bar, label in zip(bars, labels, strict=True):
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(values) * 1.25)
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
        f"## {title}\n\n{t[key]}\n" for key, title in
        (("inprocess", "Peers side by side"), ("http", "Over HTTP"),
         ("httptools", "Over HTTP, uvicorn's C parser"), ("export", "Export"))
        if key in t) + "![routetrace vs peers](benchmarks.png)\n\n" + END
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
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        results = run(args.quick, parts)
        saved = HERE / "results.json"
        if args.merge and saved.exists():  # keep the other parts of the last run
            old = json.loads(saved.read_text())
            for part in PARTS:
                if not results[part]:
                    results[part] = old.get(part, {})
                    results.setdefault("dates", {})[part] = old.get("date")
        if not args.quick:  # a look while tuning does not replace the last full results
            saved.write_text(json.dumps(results, indent=1) + "\n")
    for text in tables(results).values():
        print(text)
    if args.write_docs:
        write_docs(results)
        print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'benchmarks.png'}")


if __name__ == "__main__":
    main()
