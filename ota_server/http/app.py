"""The HTTP JSON API, ``/metrics`` and the dashboard of ``ota-server serve`` (Starlette, ASGI).

Clauses: RFC 9110 (status codes: 401 without credentials, 403 refused, 404, 405, 409 conflict
with the resource's state, 413 content too large, 415 unsupported media type, 422 unprocessable
content), RFC 6750 §2.1 (``Authorization: Bearer TOKEN``; §3 the ``WWW-Authenticate`` answer),
Prometheus exposition format 0.0.4. Routes and examples: docs/http-api.md.

Glossary: mutating route one that changes the store or a campaign (POST); token the bearer token
of ``--token-file`` or ``OTA_SERVER_TOKEN``.

Rules every route keeps:

* every answer is JSON (CSV for ``report?format=csv``, text for ``/metrics``, HTML for ``/``);
  an error is ``{"error": "...", "field": "actions[2].path" | null}`` with the status code above,
  never a traceback (the traceback goes to the log, the client reads "internal error");
* every POST needs the token, compared in constant time (``hmac.compare_digest``) and never
  logged; without a configured token the server refuses every POST (403);
* a body is read up to ``max_body`` bytes and no further: a larger ``Content-Length`` is refused
  before reading, a chunked body as soon as it passes the limit (413);
* unknown query parameters and unknown JSON keys are errors naming the key;
* key material leaves only through ``GET /api/cards/ID?with_keys=true`` with the token.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ota_protocols.errors import ConfigError, OtaSimError, StoreError
from ota_protocols.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ota_server.campaign_report import LIFECYCLE, cards_csv
from ota_server.config import campaign_from_mapping, campaign_from_toml
from ota_server.http.metrics import metrics_text
from ota_server.http.platform import Conflict, NotFound, Platform

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a campaign file or a few thousand inventory rows
TOML_TYPES = ("application/toml", "text/toml", "text/plain")
CSV_TYPES = ("text/csv", "text/plain")


class ApiError(Exception):
    """An answer other than 2xx: status, message, and the field or key it is about."""

    def __init__(
        self, status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def _error(
    status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


class Api:
    """The route handlers around one :class:`Platform`."""

    def __init__(
        self,
        platform: Platform,
        *,
        token: str | None,
        max_body: int = DEFAULT_MAX_BODY,
        campaign_dir: Path | None = None,
    ) -> None:
        self.platform = platform
        self.campaign_dir = campaign_dir
        self._token = token.encode("utf-8") if token else None
        self.max_body = max_body

    # ------------------------------------------------------------------ request checks

    def authorised(self, request: Request) -> bool:
        if self._token is None:
            return False
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode("utf-8"), self._token)

    def require_token(self, request: Request) -> None:
        if self._token is None:
            raise ApiError(
                403, "this server has no token (start it with --token-file or OTA_SERVER_TOKEN): read only"
            )
        if not self.authorised(request):
            raise ApiError(
                401,
                "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                headers={"WWW-Authenticate": 'Bearer realm="ota-server"'},
            )

    @staticmethod
    def query(request: Request, *allowed: str) -> dict[str, str]:
        for key in request.query_params:
            if key not in allowed:
                expected = ", ".join(allowed) or "none"
                raise ApiError(422, f"unknown query parameter (expected: {expected})", key)
        return dict(request.query_params)

    @staticmethod
    def flag(params: dict[str, str], key: str) -> bool:
        value = params.get(key, "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise ApiError(422, f"expected true or false, got {params[key]!r}", key)
        return value in ("true", "1")

    async def body(self, request: Request) -> bytes:
        """The body, read up to ``max_body`` bytes: a larger one is refused while reading (413)."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, f"Content-Length {length!r} is not a number", "Content-Length")
            if int(length) > self.max_body:
                raise ApiError(413, f"body of {length} bytes is above the limit of {self.max_body}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, f"body above the limit of {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def media_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";")[0].strip().lower()

    @staticmethod
    def text(raw: bytes) -> str:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"body is not UTF-8 (byte {exc.start})") from None

    @staticmethod
    def json_object(raw: bytes) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ApiError(422, f"expected a JSON object, got {type(value).__name__}")
        return value

    async def no_body(self, request: Request) -> None:
        """A control route takes no parameters: an empty body or ``{}``."""
        raw = await self.body(request)
        if raw.strip() and self.json_object(raw):
            key = next(iter(self.json_object(raw)))
            raise ApiError(422, "unknown key (this route takes no body)", key)

    # ------------------------------------------------------------------ routes

    async def list_campaigns(self, request: Request) -> Response:
        self.query(request)
        return JSONResponse({"campaigns": self.platform.campaigns()})

    async def create_campaign(self, request: Request) -> Response:
        self.require_token(request)
        self.query(request)
        media = self.media_type(request)
        raw = await self.body(request)
        base = (self.campaign_dir or Path.cwd()).resolve()  # relative paths in the campaign start here
        if media == "application/json":
            config = campaign_from_mapping(self.json_object(raw), base / "request.json")
        elif media in TOML_TYPES:
            config = campaign_from_toml(self.text(raw), base / "request.toml")
        else:
            raise ApiError(
                415,
                f"Content-Type {media or 'missing'}: send application/toml or application/json",
                "Content-Type",
            )
        hosted = await self.platform.create(config)
        location = f"/api/campaigns/{hosted.name}"
        return JSONResponse(
            {"campaign": hosted.name, "status": "started", "url": location},
            status_code=201,
            headers={"Location": location},
        )

    async def campaign(self, request: Request) -> Response:
        self.query(request)
        return JSONResponse(self.platform.status(request.path_params["name"]))

    async def control(self, request: Request) -> Response:
        self.require_token(request)
        self.query(request)
        await self.no_body(request)
        command = request.path_params["command"]
        if command not in LIFECYCLE:
            raise ApiError(404, f"no such action {command!r} (expected: {', '.join(LIFECYCLE)})")
        return JSONResponse(self.platform.control(request.path_params["name"], command))

    async def report(self, request: Request) -> Response:
        params = self.query(request, "format")
        fmt = params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(422, f"expected json or csv, got {fmt!r}", "format")
        report = self.platform.report(request.path_params["name"])
        if fmt == "csv":
            return Response(cards_csv(report), media_type="text/csv; charset=utf-8")
        return JSONResponse(report)

    async def campaign_card(self, request: Request) -> Response:
        self.query(request)
        return JSONResponse(
            self.platform.campaign_card(request.path_params["name"], request.path_params["card"])
        )

    async def card(self, request: Request) -> Response:
        params = self.query(request, "with_keys")
        with_keys = self.flag(params, "with_keys")
        if with_keys:
            self.require_token(request)  # key material only to the token's holder, and only when asked
        return JSONResponse(self.platform.card(request.path_params["card"], with_keys=with_keys))

    async def import_cards(self, request: Request) -> Response:
        self.require_token(request)
        self.query(request)
        media = self.media_type(request)
        if media not in CSV_TYPES:
            raise ApiError(415, f"Content-Type {media or 'missing'}: send text/csv", "Content-Type")
        return JSONResponse(self.platform.import_cards(self.text(await self.body(request))))

    async def dashboard_data(self, request: Request) -> Response:
        self.query(request)
        campaigns = self.platform.campaigns(with_summary=True)
        for entry in campaigns:
            entry["progress"] = _progress(entry)
        return JSONResponse({"campaigns": campaigns})

    async def metrics(self, request: Request) -> Response:
        self.query(request)
        return Response(metrics_text(self.platform), media_type=METRICS_CONTENT_TYPE)

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


_ENDED_JOBS = ("done", "partial", "failed", "cancelled", "skipped")


def _progress(status: dict[str, Any]) -> dict[str, int]:
    """Jobs ended of all jobs: the hosting engine's figures while it runs, else the store's."""
    live = status.get("live") or {}
    jobs = status.get("jobs") or {}
    if live.get("active") and live.get("jobs_total"):
        return {"done": live["jobs_done"], "total": live["jobs_total"]}
    return {"done": sum(jobs.get(s, 0) for s in _ENDED_JOBS), "total": sum(jobs.values())}


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Map the platform's errors to answers (one place): the field named, never a traceback."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.message, exc.field, exc.headers)
        except ConfigError as exc:
            return _error(422, exc.detail, exc.key_path or exc.source or None)
        except NotFound as exc:
            return _error(404, str(exc))
        except Conflict as exc:
            return _error(409, str(exc))
        except StoreError as exc:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return _error(503, f"store: {exc}")
        except OtaSimError as exc:
            return _error(400, str(exc))

    return guarded


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return _error(500, "internal error (see the server's log)")


def build_app(
    platform: Platform,
    *,
    token: str | None,
    max_body: int = DEFAULT_MAX_BODY,
    campaign_dir: Path | None = None,
) -> Starlette:
    """The app; ``campaign_dir`` anchors the relative paths of posted campaigns (``[network]
    .handset_config``, ``[targets].csv``), as a campaign file's own directory does (default: the
    server's working directory)."""
    api = Api(platform, token=token, max_body=max_body, campaign_dir=campaign_dir)
    g = _guard
    routes = [
        Route("/", api.index, methods=["GET"]),
        Route("/metrics", g(api.metrics), methods=["GET"]),
        Route("/api/campaigns", g(api.list_campaigns), methods=["GET"]),
        Route("/api/campaigns", g(api.create_campaign), methods=["POST"]),
        Route("/api/campaigns/{name}", g(api.campaign), methods=["GET"]),
        Route("/api/campaigns/{name}/report", g(api.report), methods=["GET"]),
        Route("/api/campaigns/{name}/cards/{card}", g(api.campaign_card), methods=["GET"]),
        Route("/api/campaigns/{name}/{command}", g(api.control), methods=["POST"]),
        Route("/api/cards", g(api.import_cards), methods=["POST"]),
        Route("/api/cards/{card}", g(api.card), methods=["GET"]),
        Route("/api/dashboard", g(api.dashboard_data), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        platform.start()
        try:
            yield
        finally:
            await platform.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.platform = platform
    return app
