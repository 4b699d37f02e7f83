"""The API's Prometheus metrics and its two ASGI middlewares: request metrics and the body-size cap.

Pure ASGI (not ``BaseHTTPMiddleware``): no extra task per request, and the body cap can stop reading a
request that lied about its length.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REGISTRY", "RequestMetrics", "BodyLimit"]

logger = logging.getLogger("crmstream.api")

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("crm_api_requests_total", "API requests by route template, method and status",
                   ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("crm_api_request_seconds", "API request latency by route template", ["route"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), registry=REGISTRY)


class RequestMetrics:
    """Counts and times every request under its route template (``/customers/{customer_id}``, never the id:
    ids in labels would grow the registry without bound and leak personal data into metrics)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path_format", "unmatched")  # "{id:path}" as "{id}"
            elapsed = time.perf_counter() - started
            REQUESTS.labels(route, scope["method"], str(status[0])).inc()
            LATENCY.labels(route).observe(elapsed)
            if status[0] >= 500:
                logger.error("request failed", extra={"route": route, "method": scope["method"],
                                                      "status": status[0], "ms": round(elapsed * 1000, 3)})


class BodyLimit:
    """413 for a request body over ``max_bytes``, whether announced (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, max_bytes: int) -> None:
    body = b'{"detail":"request body larger than %d bytes"}' % max_bytes
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
