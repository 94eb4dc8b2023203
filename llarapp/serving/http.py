"""The HTTP side of the model server: kserve's REST app with our limits, health and
control rules in front.

1. A body larger than ``max_body_bytes`` is answered 413 before it is read: at once from
   ``Content-Length``, or, for a chunked body, as soon as the bytes read pass the limit.
   A framing kserve's decoder would answer with a 500 (a V2 binary JSON length that is
   not a length within the body, a binary CloudEvent without data) is a 400.
2. Health tells the truth. ``/v2/health/ready`` is 503 until every model is loaded (kserve
   says ready as soon as it listens). Liveness (``/``, ``/v2/health/live``) fails once a
   model that was ready is gone, so Kubernetes restarts a pod that serves nothing; a model
   still loading, or one whose bundle failed, keeps the pod live (readiness holds traffic
   back and the rollout stalls).
3. Model load and unload over HTTP are off (403) unless the server has a control token;
   then they need ``Authorization: Bearer <token>`` (401 without it).
4. Our typed errors (:mod:`llarapp.serving.limits`) become their status codes, with
   ``Retry-After`` on a 429; what kserve does not implement (model versions in the URL,
   explain) is a 404, since the client asked for something that is not here.
Routes added here come before kserve's, and the first match wins.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v2_endpoints import V2Endpoints

from llarapp.errors import LlaraError
from llarapp.serving import metrics
from llarapp.serving.limits import (
    CONTROL_TOKEN_VARIABLE,
    BodyTooLarge,
    ControlRefused,
    DeadlineExceeded,
    Overloaded,
)


def error_response(exc: LlaraError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


async def not_offered(_, exc: NotImplementedError) -> JSONResponse:
    """kserve raises NotImplementedError for what a request asks and this server does not
    offer (a model version in the URL, an explainer): the client's 404, not a 501."""
    return JSONResponse({"error": f"{exc or 'not offered'}; this server serves one version "
                         "of each model, at /v1/models/<name> and /v2/models/<name>"},
                        status_code=404)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, before the app parses it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit():  # uvicorn enforces this framing
            if int(length) > self.max_bytes:
                return await self._refuse(scope, receive, send, int(length))
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:  # chunked: read at most the limit, then hand the body on
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send, None)
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, size: int | None):
        metrics.REFUSED.labels("body_size").inc()
        await error_response(BodyTooLarge(size, self.max_bytes))(scope, receive, send)


class DecodeGuard:
    """ASGI middleware: a 400 for framings that kserve's decoder would answer with a 500:
    an ``inference-header-content-length`` (the V2 binary extension's JSON length) that is
    not a whole number within the body, and a binary CloudEvent (``ce-*`` headers) with
    no data."""

    LENGTH = b"inference-header-content-length"
    CLOUD_EVENT = (b"ce-specversion", b"ce-source", b"ce-type", b"ce-id")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            problem = self.problem(dict(scope["headers"]))
            if problem:
                return await JSONResponse({"error": problem}, status_code=400)(
                    scope, receive, send)
        return await self.app(scope, receive, send)

    def problem(self, headers: dict[bytes, bytes]) -> str:
        value, body = headers.get(self.LENGTH), headers.get(b"content-length", b"")
        if value is not None and not (value.isdigit() and (
                not body.isdigit() or int(value) <= int(body))):
            return (f"{self.LENGTH.decode()} must be the length in bytes of the JSON part of "
                    f"the body, a whole number no larger than the body; got "
                    f"{value.decode(errors='replace')!r}")
        if all(h in headers for h in self.CLOUD_EVENT) and body in (b"", b"0"):
            return "a binary CloudEvent (ce-* headers) needs its data as the request body"
        return ""


class LlaraRESTServer(RESTServer):
    """kserve's REST server with :func:`guard` applied to its app."""

    max_body_bytes = 1 << 20
    control_token = ""

    def configure(self, cfg) -> None:
        """Bind to ``cfg.http_host`` and take its body limit and control token."""
        self.config.host = cfg.http_host
        self.max_body_bytes, self.control_token = cfg.max_body_bytes, cfg.control_token

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        app.add_middleware(DecodeGuard)
        app.add_middleware(BodyLimit, max_bytes=self.max_body_bytes)  # the outermost

    def _register_endpoints(self, app: FastAPI) -> None:
        guard(app, self.dataplane, self.model_repository_extension, self.control_token)
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        async def handle(_, exc: LlaraError) -> JSONResponse:
            return error_response(exc)

        for error in (BodyTooLarge, Overloaded, DeadlineExceeded, ControlRefused):
            app.add_exception_handler(error, handle)
        app.add_exception_handler(NotImplementedError, not_offered)


def guard(app: FastAPI, dataplane, repository, control_token: str) -> None:
    """Truthful health routes and token-guarded model control, ahead of kserve's."""
    registry = dataplane.model_registry
    expected = list(registry.get_models())  # registered before start: the pod's purpose

    def models() -> list:
        return [registry.get_model(name) for name in expected]

    async def live():
        lost = [name for name, model in zip(expected, models(), strict=True)
                if model is None or getattr(model, "lost", False)]
        if lost:
            return JSONResponse({"error": f"model {', '.join(lost)} was loaded and is gone; "
                                 "restart the pod"}, status_code=503)
        return {"status": "alive", "live": True}

    async def ready():
        waiting = [name for name, model in zip(expected, models(), strict=True)
                   if model is None or not model.ready]
        if waiting:
            return JSONResponse({"ready": False, "error": f"model {', '.join(waiting)} is not "
                                 "loaded; see the server log"}, status_code=503)
        return {"ready": True}

    endpoints = V2Endpoints(dataplane, repository)

    def check_token(request: Request) -> None:
        if not control_token:
            raise ControlRefused(403, "model load and unload over HTTP are off; start the "
                                 f"server with {CONTROL_TOKEN_VARIABLE} set to enable them")
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {control_token}".encode()):
            raise ControlRefused(401, "model load and unload need 'Authorization: Bearer "
                                 f"<token>' with the server's {CONTROL_TOKEN_VARIABLE}")

    async def load(model_name: str, request: Request):
        check_token(request)
        return await endpoints.load(model_name)

    async def unload(model_name: str, request: Request):
        check_token(request)
        return await endpoints.unload(model_name)

    app.add_api_route("/", live, methods=["GET"])
    app.add_api_route("/v2/health/live", live, methods=["GET"])
    app.add_api_route("/v2/health/ready", ready, methods=["GET"])
    app.add_api_route("/v2/repository/models/{model_name}/load", load, methods=["POST"])
    app.add_api_route("/v2/repository/models/{model_name}/unload", unload, methods=["POST"])

