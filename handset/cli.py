"""``handset``: run the simulated network (SMPP SMSC, radio link, phones with their SIMs).

    handset serve --config configs/handset.toml [--host H] [--port P]
                  [--ready-file F] [--report-file F] [--log-level LEVEL]
                  [--pcap FILE] [--exit-with-parent] [--metrics HOST:PORT]
    handset --version

``--log-level DEBUG|INFO|WARNING|ERROR`` (before or after ``serve``; default
INFO: binds, unbinds and a traffic line every ``[smsc] traffic_log_interval_s``).
The soft open-file limit is raised to the hard one, so that ``[smsc]
max_connections`` can be honoured (docs/handset.md "Limits on peers").

Once listening it prints ``handset: SMSC listening on HOST:PORT (N phones)`` and
writes PORT to ``--ready-file``.  SIGTERM / SIGINT: stop accepting, unbind the
ESMEs, write ``--report-file`` (JSON ``{"cards": [...], "smsc": {...}}``), exit 0.
SIGUSR1: restart the SMSC listener (every SMPP connection and the listening socket
closed, down for ``[smsc] restart_outage_s``, then listening on the same port;
phones, cards and the store-and-forward queues survive).
``--pcap FILE``: write every SMPP exchange (TCP/IPv4) and every SIM APDU exchange
(GSMTAP-SIM, UDP 4729) to FILE for Wireshark, flushed on exit (capture_writer.py).
``--metrics HOST:PORT``: Prometheus text format at ``http://HOST:PORT/metrics`` (submit_sm by
command_status, deliver_sm, MT queue depth, binds; handset/metrics.py), printed as
``handset: metrics on http://HOST:PORT/metrics`` after the listening line.
``--exit-with-parent``: stop as on SIGTERM when stdin reaches end of file.  A parent
that gives the child a pipe as stdin (the OTA server's embedded network does) holds
its write end; when the parent dies, even by SIGKILL, the kernel closes it and the
child sees EOF.  Portable, no race with the fork, nothing Linux-only.
Exit codes: 0 success, 1 runtime failure, 2 usage or config error (one line on
stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from handset.config import load_config
from handset.service import HandsetService
from ota_protocols.cli_options import add_log_level
from ota_protocols.errors import ConfigError, OtaSimError

log = logging.getLogger("handset")


DEFAULT_LOG_LEVEL = "INFO"


def _version() -> str:
    try:
        return metadata.version("ota-sim")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _log_level_option(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    add_log_level(parser, default=default, shown_default=DEFAULT_LOG_LEVEL)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _log_level_option(parser, default=DEFAULT_LOG_LEVEL)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the SMSC emulator with its phones")
    serve.add_argument("--config", required=True, help="handset TOML file (see configs/handset.example.toml)")
    serve.add_argument("--host", help="listen address (overrides [smsc] host)")
    serve.add_argument("--port", type=int, help="listen port, 0 = any free port (overrides [smsc] port)")
    serve.add_argument("--ready-file", help="write the bound port here once listening")
    serve.add_argument("--report-file", help="write the JSON report here on shutdown")
    serve.add_argument("--pcap", metavar="FILE", help="write SMPP and SIM APDU traffic to this pcap file")
    serve.add_argument(
        "--metrics",
        type=_metrics_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0 = any free one, printed)",
    )
    serve.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit (as on SIGTERM) when stdin reaches end of file: give the child a pipe as stdin",
    )
    _log_level_option(serve, default=None)
    return parser


def _metrics_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0 = any free one), got {text!r}")
    return host.strip("[]"), int(port)


async def _serve_metrics(
    service: HandsetService, host: str, port: int
) -> tuple[Any, asyncio.Task[None], int]:
    """uvicorn in this loop on a socket bound here (so port 0 is known before the line is printed),
    bounded for unauthenticated peers: connections, keep-alive, header size."""
    import uvicorn

    from handset.metrics import metrics_app

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--metrics", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(
        metrics_app(service),
        log_config=None,
        access_log=False,
        lifespan="off",
        limit_concurrency=16,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=8 * 1024,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # SIGTERM / SIGINT are the service's (they stop it, then this server): uvicorn leaves them alone.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    return server, task, sock.getsockname()[1]


def _write_atomically(path: str, text: str) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """``--exit-with-parent``: set ``stop`` once stdin is at end of file (the parent is gone)."""
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)  # whatever the parent writes is ignored
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            loop.remove_reader(fd)
            log.warning("stdin closed (parent gone): stopping")
            stop.set()

    try:
        loop.add_reader(fd, readable)
    except (PermissionError, ValueError, OSError):  # a regular file or /dev/null cannot be watched
        why = "stdin must be a pipe (or socket) held by the parent"
        raise ConfigError("--exit-with-parent", why) from None
    os.set_blocking(fd, False)


def _raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one: each SMPP connection holds a descriptor."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.debug("open-file limit raised from %d to %d", soft, hard)
    except (OSError, ValueError) as exc:  # not allowed here: SmscServer lowers max_connections
        log.debug("open-file limit left as is: %s", exc)


async def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _raise_open_file_limit()
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError("--port", f"{args.port} outside 0..65535")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.exit_with_parent:  # checked before anything starts
        _stop_on_stdin_eof(loop, stop)
    service = HandsetService(config, pcap=args.pcap)
    host = args.host or config.smsc.host
    port = await service.start(host=host, port=args.port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGUSR1: restart the SMSC listener ([smsc] restart_outage_s down, then the same port).
    loop.add_signal_handler(signal.SIGUSR1, service.request_restart)
    if args.ready_file:  # before the line, so a reader of either sees both
        _write_atomically(args.ready_file, f"{port}\n")
    print(f"handset: SMSC listening on {host}:{port} ({service.phone_count} phones)", flush=True)
    metrics = None
    if args.metrics is not None:
        metrics = await _serve_metrics(service, *args.metrics)
        print(f"handset: metrics on http://{args.metrics[0]}:{metrics[2]}/metrics", flush=True)
    await stop.wait()
    log.info("stopping")
    if metrics is not None:
        metrics[0].should_exit = True
        await metrics[1]
    await service.stop()
    if args.report_file:
        _write_atomically(args.report_file, json.dumps(service.report(), indent=1, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(_serve(args))
    except ConfigError as exc:
        print(f"handset: config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"handset: {exc}", file=sys.stderr)
        return 1
    except OtaSimError as exc:
        print(f"handset: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
