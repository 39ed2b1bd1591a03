"""``ota-server serve``: the platform, its HTTP API and dashboard in one event loop (uvicorn).

Clauses: house-style §2 (one loop: the HTTP server and every campaign runner share it),
docs/http-api.md (routes), docs/campaigns.md §6.6 (a network that keeps its cards: ``--smsc``,
or the one embedded network of ``--network``).

The listening socket is bound here, before uvicorn starts, so that port 0 is resolved and printed
(``ota-server: serving http://127.0.0.1:PORT/``) before the first request can arrive. SIGTERM and
SIGINT stop uvicorn gracefully; the platform then stops its runners (each releases its lease;
a running campaign reads "interrupted" and continues when submitted again) and the embedded
network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from ota_protocols.errors import ConfigError
from ota_server.embedded_network import EmbeddedNetwork
from ota_server.http.app import DEFAULT_MAX_BODY, build_app
from ota_server.http.platform import Platform, open_store

log = logging.getLogger(__name__)

TOKEN_ENV = "OTA_SERVER_TOKEN"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: Path | str
    http: tuple[str, int]
    smsc: tuple[str, int] | None = None
    network: Path | None = None
    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    seed: int = 1
    campaign_dir: Path | None = None


def read_token(token_file: Path | None) -> str | None:
    """The bearer token: ``--token-file`` (first line, stripped), else ``OTA_SERVER_TOKEN``."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise ConfigError("--token-file", f"{token_file}: {why}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if len(token) < 16:
            raise ConfigError("--token-file", f"{token_file}: expected a token of at least 16 characters")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token and len(token) < 16:
        raise ConfigError(TOKEN_ENV, "expected a token of at least 16 characters")
    return token or None


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--http", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def uvicorn_server(app: Any) -> uvicorn.Server:
    """uvicorn with bounds for an unauthenticated peer: connections, idle keep-alive, header size."""
    config = uvicorn.Config(
        app,
        log_config=None,  # our logging (cli.py) stays as configured
        access_log=False,
        lifespan="on",  # the platform opens its store and stops its runners in the app's lifespan
        limit_concurrency=64,  # more open requests get 503 (house-style §2.3)
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,  # request line + headers
        server_header=False,
    )
    return uvicorn.Server(config)


async def serve(options: ServeOptions) -> int:
    stack = contextlib.AsyncExitStack()
    async with stack:
        smsc = options.smsc
        if smsc is None:
            if options.network is None:
                raise ConfigError(
                    "--smsc", "give --smsc HOST:PORT, or --network HANDSET.toml for an embedded one"
                )
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ota-serve-")))
            network = EmbeddedNetwork(options.network, workdir)
            stack.push_async_callback(network.stop)
            smsc = ("127.0.0.1", await network.start())
        open_store(options.db).close()  # a store that cannot open is one line and exit 1, before listening
        platform = Platform(options.db, smsc=smsc, seed=options.seed)  # started by the app's lifespan
        sock = bind_socket(*options.http)
        stack.callback(sock.close)
        host, port = sock.getsockname()[:2]
        server = uvicorn_server(
            build_app(
                platform, token=options.token, max_body=options.max_body, campaign_dir=options.campaign_dir
            )
        )
        writes = "token required for POST" if options.token else "read only: no token"
        where = f"db {options.db}, SMSC {smsc[0]}:{smsc[1]}, {writes}"
        print(f"ota-server: serving http://{host}:{port}/ ({where})", flush=True)
        # uvicorn restores the handlers it found and re-raises the signal it caught after its
        # graceful stop: with these, that lands here and the cleanup above still runs.
        caught: list[int] = []
        previous = {
            sig: signal.signal(sig, lambda s, _f: caught.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            await server.serve(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("stopped (%s)", ", ".join(signal.Signals(s).name for s in caught) or "server stopped")
    return 0 if server.started else 1


def run(options: ServeOptions) -> int:
    return asyncio.run(serve(options))
