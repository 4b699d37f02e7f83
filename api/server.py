"""HTTP API: reads Redis only, never talks to workers.

This is the foundation's slice of it: health and a pipeline overview that the
demo and the live page poll. Customer endpoints, keys and roles come with the
API issue.
"""
from __future__ import annotations

from importlib import resources
from typing import Awaitable, TypeVar

import redis.asyncio as aioredis
from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse

from api.alerts import AlertReader

from streams.config import Settings

__all__ = ["create_api", "serve", "read_overview"]

T = TypeVar("T")


async def read_overview(client: aioredis.Redis, prefix: str) -> dict:
    """Counters, per-partition offsets and watermarks, as the pipeline committed them."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(prefix + "stats:ingest")
        pipe.hgetall(prefix + "offsets")
        pipe.hgetall(prefix + "watermark")
        stats, offsets, watermarks = await pipe.execute()
    counters = {name: int(value) for name, value in stats.items()}
    return {
        "customers": counters.get("customers", 0),
        "accepted": {k.removeprefix("accepted:"): v for k, v in counters.items() if k.startswith("accepted:")},
        "rejected": {k.removeprefix("rejected:"): v for k, v in counters.items() if k.startswith("rejected:")},
        "duplicates": counters.get("duplicates", 0),
        "erasures": counters.get("erasures", 0),
        "offsets": {tp: int(offset) for tp, offset in sorted(offsets.items())},
        "max_event_ms": {tp: int(ts) for tp, ts in sorted(watermarks.items())},
    }


async def _answer(reading: Awaitable[T], missing: str | None = None) -> T:
    """A reader's answer: input it refuses (ValueError) is a 422; None, where ``missing`` says what, a 404."""
    try:
        answer = await reading
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if answer is None and missing is not None:
        raise HTTPException(404, missing)
    return answer


def create_api(settings: Settings) -> FastAPI:
    app = FastAPI(title="crmstream", version="0.1.0",
                  description="Live customer intelligence served from Redis.")
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            await client.ping()
        except Exception as exc:  # report, do not crash: health endpoints are polled by orchestrators
            return JSONResponse({"status": "down", "redis": repr(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/overview")
    async def overview() -> dict:
        return await read_overview(client, settings.redis_prefix)

    alerts = AlertReader(client, settings.redis_prefix)

    @app.get("/alerts")
    async def recent_alerts(limit: int = Query(50, ge=1, le=1000), kind: str | None = None,
                            status: str | None = None, severity: str | None = None) -> list[dict]:
        return await _answer(alerts.recent(limit, kind, status, severity))

    @app.get("/alerts/{alert_id}")
    async def one_alert(alert_id: str) -> dict:
        return await _answer(alerts.get(alert_id), missing="no such alert")

    @app.post("/alerts/{alert_id}/ack")
    async def acknowledge_alert(alert_id: str, by: str = Body(..., embed=True),
                                note: str = Body("", embed=True)) -> dict:
        return await _answer(alerts.acknowledge(alert_id, by, note), missing="no such alert")

    @app.get("/", response_class=HTMLResponse)
    async def live_page() -> str:
        return resources.files("api").joinpath("static", "overview.html").read_text()

    @app.on_event("shutdown")
    async def close() -> None:
        await client.aclose()

    return app


def serve(settings: Settings) -> None:
    import uvicorn

    if not settings.redis_url:
        raise SystemExit("CRM_REDIS_URL is not set (use `crmstream demo` for an embedded stack)")
    uvicorn.run(create_api(settings), host=settings.api_host, port=settings.api_port, log_level="warning")
