"""``routetrace ui``: serve the web viewer, on loopback unless told otherwise."""

from __future__ import annotations

import argparse

from routetrace.cli.common import EXIT_USAGE, CliError, backend_from, echo, echo_error


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def cmd_ui(args: argparse.Namespace) -> int:
    import socket

    if not _is_loopback(args.host) and not args.allow_remote:
        raise CliError(f"refusing to serve the viewer on {args.host}: it shows request data "
                       "(inputs, captured headers and bodies) to anyone who can connect, with "
                       "no login. Pass --allow-remote if that is what you want", EXIT_USAGE)
    try:
        import uvicorn

        from routetrace.viewer import create_app
    except ImportError as exc:
        raise CliError(f"the viewer needs Starlette and uvicorn ({exc.name} is missing): "
                       "pip install 'routetrace[viewer]'") from None
    backend = backend_from(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                       + (" (pick another with --port)" if args.port else "")) from None
    sock.listen(2048)  # connections queue from now on, while uvicorn starts
    port = sock.getsockname()[1]
    hosts = None if not _is_loopback(args.host) else LOOPBACK_NAMES
    app = create_app(backend, allowed_hosts=hosts)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    echo(f"routetrace viewer on http://{shown}:{port}/ over {backend.uri} (Ctrl-C stops it)")
    if not _is_loopback(args.host):
        echo_error("warning: the viewer is reachable from other machines and shows request data; "
                   "it has no login")
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0

