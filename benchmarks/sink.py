"""A loopback ingest that stands in for the collectors the peers send to, in its own process.

    .venv/bin/python -m benchmarks.sink DIR      # writes DIR/sink-port, counts into DIR/sink-count

Each peer really encodes and sends what it would send to its backend; this process takes it,
answers as the backend would (enough that no exporter retries or drops) and counts the traces
it holds, so "traces kept" is what arrived. Its own CPU is not the measured process's.

- ``POST /v1/traces``: OTLP/HTTP (protobuf, or JSON): root spans (no parent span id) counted;
- ``PUT|POST /v0.4/traces``, ``/v0.5/traces``: the Datadog agent's API: the
  ``X-Datadog-Trace-Count`` header counted; ``GET /info`` lists those endpoints;
- ``POST /api/<project>/envelope/``: Sentry's ingest: ``transaction`` items counted.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

PORT_FILE = "sink-port"
COUNT_FILE = "sink-count"


class Sink(NamedTuple):
    """A running sink: its process and the port it listens on."""

    proc: subprocess.Popen
    port: int

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def start(workdir: Path, python: str = sys.executable) -> Sink:
    """Start a sink writing into ``workdir``; returns once it listens."""
    port_file = workdir / PORT_FILE
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([python, "-m", "benchmarks.sink", str(workdir)],
                            cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "sink.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the sink did not start; see {workdir / 'sink.log'}")
        time.sleep(0.05)  # polling for a starting process's port file
    return Sink(proc, int(port_file.read_text()))


def kept(workdir: Path) -> int:
    """Traces the sink in ``workdir`` has received so far (any process)."""
    try:
        return sum(int(x) for x in (workdir / COUNT_FILE).read_text().split())
    except FileNotFoundError:
        return 0


def count_otlp(body: bytes, content_type: str) -> int:
    """Root spans in an OTLP/HTTP ``ExportTraceServiceRequest``."""
    if "json" in content_type:
        doc = json.loads(body)
        return sum(1 for rs in doc.get("resourceSpans", []) for ss in rs.get("scopeSpans", [])
                   for s in ss.get("spans", []) if not s.get("parentSpanId"))
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return sum(1 for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans
               if not s.parent_span_id)


def count_envelope(body: bytes) -> int:
    """``transaction`` items in a Sentry envelope (header line, then item header + payload)."""
    count = 0
    pos = body.find(b"\n") + 1  # past the envelope header
    while 0 < pos < len(body):
        end = body.find(b"\n", pos)
        end = len(body) if end < 0 else end
        line = body[pos:end].strip()
        if not line:
            pos = end + 1
            continue
        header = json.loads(line)
        count += header.get("type") == "transaction"
        pos = end + 1
        if "length" in header:
            pos += int(header["length"]) + 1
        else:
            nxt = body.find(b"\n", pos)
            pos = len(body) if nxt < 0 else nxt + 1
    return count


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as collectors do
    counts: Path
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, the client's delayed ACK
        # holds each answer ~40 ms, and an exporter that sends one request at a time waits.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _answer(self, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/info"):
            self._answer(json.dumps({"endpoints": ["/v0.4/traces", "/v0.5/traces"]}).encode())
        else:
            self._answer(b"{}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = _decode(body, (self.headers.get("Content-Encoding") or "").lower())
        path = self.path.split("?", 1)[0]
        answer, content_type = b"{}", "application/json"
        if path.endswith("/v1/traces"):
            n = count_otlp(body, self.headers.get("Content-Type") or "")
            answer, content_type = b"", "application/x-protobuf"
        elif path.endswith("/traces"):  # the Datadog agent
            n = int(self.headers.get("X-Datadog-Trace-Count") or 0)
            answer = b'{"rate_by_service": {}}'
        elif path.endswith("/envelope/"):
            n = count_envelope(body)
        else:
            n = 0
        if n:
            with self.lock, open(self.counts, "a") as fh:
                fh.write(f"{n}\n")
        self._answer(answer, content_type)

    do_PUT = do_POST


def main() -> None:
    workdir = Path(sys.argv[1])
    _Handler.counts = workdir / COUNT_FILE
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    tmp = workdir / (PORT_FILE + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.rename(workdir / PORT_FILE)  # whole or absent: the starter polls for it
    server.serve_forever()


if __name__ == "__main__":
    main()
