"""HTTP API: reads Redis only, never talks to workers (erasure goes through the customers topic).

Every route but ``/health``, ``/metrics``, the dashboard page and the OpenAPI document needs an API key
(``X-API-Key`` or ``Authorization: Bearer``) whose role grants the route's permission (api/auth.py). Each key
is rate limited; request bodies are capped; every parameter is validated (FastAPI, then the readers).
"""
from __future__ import annotations

import contextlib
import gc
import logging
from importlib import resources
from typing import Annotated, Awaitable, Callable, TypeVar

import orjson
from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.alerts import AlertReader
from api.auth import ApiKey, KeyRing
from api.customers import MAX_PAGE, CustomerReader, check_customer_id
from api.erasure import Eraser
from api.items import MAX_RESULTS, ItemReader
from api.kpis import read_kpis
from api.metrics import REGISTRY, BodyLimit, RequestMetrics
from api.models import ModelOps
from api.rate_limit import RateLimiter
from api.segments import read_segments
from api.status import read_overview, read_pipeline_health
from online_models.cooccurrence import MEASURES
from schemas.events import ID_PATTERN
from streams.config import Settings
from streams.redis_store import redis_client

__all__ = ["create_api", "serve", "api_from_env"]

logger = logging.getLogger("crmstream.api")

T = TypeVar("T")


class JsonBytes(Response):
    """JSON by orjson, for the hot route: no validation pass over a payload the reader built."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


# Ids may hold "/" (the event contract allows it): routes take them with the path convertor, percent-encoded
# ("shop%2F42") or not; the more specific routes are declared first.
CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="customer id (a '/' may be sent as %2F)")]
Sku = Annotated[str, Path(pattern=ID_PATTERN, description="item id (a '/' may be sent as %2F)")]
AlertId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:\-]{1,200}$")]
Measure = Annotated[str, Query(pattern="^(" + "|".join(MEASURES) + ")$")]
HowMany = Annotated[int, Query(ge=1, le=MAX_RESULTS)]


async def _answer(reading: Awaitable[T], missing: str | None = None) -> T:
    """A reader's answer: input it refuses (ValueError) is a 422; None, where ``missing`` says what, a 404."""
    try:
        answer = await reading
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if answer is None and missing is not None:
        raise HTTPException(404, missing)
    return answer


def _guard(keys: KeyRing, limiter: RateLimiter) -> Callable[[str], Callable]:
    """``Depends(guard("customers"))``: 401 without a known key, 403 if its role lacks the permission, 429
    beyond its rate. One plain dependency reading the headers itself: FastAPI's security classes cost a
    dependency level each (a third of a profile request's time); :func:`_document_security` declares them."""

    def guard(permission: str) -> Callable:
        async def check(request: Request) -> ApiKey:
            presented = request.headers.get("x-api-key")
            if presented is None:
                scheme, _, token = request.headers.get("authorization", "").partition(" ")
                presented = token.strip() if scheme.lower() == "bearer" else None
            key = keys.lookup(presented)
            if key is None:
                raise HTTPException(401, "a valid API key is required (X-API-Key or Authorization: Bearer)",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not key.may(permission):
                raise HTTPException(403, f"role {key.role} may not use {permission} routes")
            retry_after = await limiter.take(key.name)
            if retry_after:
                raise HTTPException(429, "rate limit exceeded", headers={"Retry-After": str(int(retry_after) + 1)})
            return key
        return check
    return guard


def _document_security(app: FastAPI, public: set[str]) -> None:
    """Declare the two key schemes in the OpenAPI document, on every route but the public ones."""
    make_document = app.openapi

    def document() -> dict:
        if app.openapi_schema is None:
            schema = make_document()
            schema.setdefault("components", {})["securitySchemes"] = {
                "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "HTTPBearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if path not in public:
                    for operation in operations.values():
                        operation["security"] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
        return app.openapi_schema

    app.openapi = document


def create_api(settings: Settings) -> FastAPI:
    keys = settings.key_ring()
    if not keys:
        logger.warning("no API keys configured (CRM_API_KEYS, CRM_API_KEYS_FILE): every protected route answers 401")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # Everything imported and built so far lives as long as the process: out of the collector's sight,
        # a full collection no longer walks ~180,000 objects (a 90 ms stall every few seconds at 1,000
        # requests/s, the p99 of bench/api_load.py).
        gc.collect()
        gc.freeze()
        yield
        await eraser.close()
        await client.aclose()

    app = FastAPI(title="crmstream", version="0.1.0", lifespan=lifespan,
                  description="Live customer intelligence served from Redis. Keys and roles: docs/api.md.")
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    client = redis_client(settings.redis_url, settings.redis_cluster)
    prefix, key_space = settings.redis_prefix, settings.key_space()
    guard = _guard(keys, RateLimiter(client, prefix, settings.api_rate_per_s, settings.api_rate_burst))
    customers = CustomerReader(client, key_space, settings.profile_settings())
    items = ItemReader(client, key_space, settings.item_settings(), customers)
    alerts = AlertReader(client, prefix)
    model_ops = ModelOps(client, prefix)
    eraser = Eraser(settings, customers)
    support, analyst, admin, anyone_reading_items, anyone_reading_alerts = (
        Depends(guard("customers")), Depends(guard("aggregates")), Depends(guard("admin")),
        Depends(guard("items")), Depends(guard("alerts")))

    _document_security(app, public={"/health", "/metrics"})

    @app.get("/health", tags=["operations"])
    async def health() -> JSONResponse:
        try:
            await client.ping()
        except Exception as exc:  # report, do not crash: health endpoints are polled by orchestrators
            return JSONResponse({"status": "down", "redis": repr(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # -- customers (support) -----------------------------------------------------------------------------

    @app.get("/customers/{customer_id:path}/recommendations", tags=["customers"], dependencies=[support])
    async def customer_recommendations(customer_id: CustomerId, k: HowMany = 10,
                                       exclude_bought: bool = True) -> dict:
        return await _answer(items.recommendations(customer_id, k, exclude_bought))

    @app.get("/customers/{customer_id:path}", tags=["customers"], dependencies=[support])
    async def customer_profile(customer_id: CustomerId) -> JsonBytes:
        """RFM, scores, named RFM segment, behaviour segment, churn risk with its reasons, CLV, expected next
        order, recent items: as of the event-time clock."""
        return JsonBytes(await _answer(customers.profile(customer_id), missing="no such customer"))

    @app.get("/customers", tags=["customers"], dependencies=[support])
    async def search_customers(
            band: Annotated[str | None, Query(pattern="^(low|medium|high)$")] = None,
            segment: Annotated[int | None, Query(ge=0, lt=10_000, description="behaviour segment id")] = None,
            min_value_minor: Annotated[int | None, Query(ge=-(10**15), le=10**15)] = None,
            max_value_minor: Annotated[int | None, Query(ge=-(10**15), le=10**15)] = None,
            sort: Annotated[str, Query(pattern="^(value|churn)$")] = "value",
            offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict:
        """Customers by churn band, behaviour segment and net spend (minor units), a page at a time."""
        return await _answer(customers.search(band, segment, min_value_minor, max_value_minor, sort, offset, limit))

    @app.delete("/customers/{customer_id:path}", tags=["customers"], dependencies=[admin],
                responses={202: {"description": "requested, not yet confirmed"}})
    async def erase_customer(customer_id: CustomerId) -> JSONResponse:
        """Erase every key of the customer (state, seen ids, recent items, alert index), through the pipeline;
        200 once the pipeline confirmed it, 202 with the erasure id to poll if it takes longer."""
        check_customer_id(customer_id)
        try:
            erasure_id = await eraser.request(customer_id)
        except Exception as exc:
            logger.error("erasure request failed: %s", exc)
            raise HTTPException(503, "the customers topic cannot be reached; nothing was erased") from None
        done = await eraser.confirmed(erasure_id, settings.api_erase_wait_s, customer_id)
        return JSONResponse({"erasure_id": erasure_id, "status": "erased" if done else "pending"},
                            status_code=200 if done else 202)

    @app.get("/erasures/{erasure_id}", tags=["customers"], dependencies=[admin])
    async def erasure_status(erasure_id: Annotated[str, Path(pattern="^erase-[0-9a-f]{32}$")]) -> dict:
        return {"erasure_id": erasure_id, "status": "erased" if await eraser.confirmed(erasure_id) else "pending"}

    # -- items (support, analyst) --------------------------------------------------------------------------

    @app.get("/items/{sku:path}/also-bought", tags=["items"], dependencies=[anyone_reading_items])
    async def also_bought(sku: Sku, measure: Measure = "llr", k: HowMany = 10,
                          min_support: Annotated[float | None, Query(ge=0, le=1e9)] = None) -> dict:
        return await _answer(items.also_bought(sku, measure, k, min_support))

    @app.get("/items/{sku:path}/viewed-then-bought", tags=["items"], dependencies=[anyone_reading_items])
    async def viewed_then_bought(sku: Sku, measure: Measure = "llr", k: HowMany = 10,
                                 min_support: Annotated[float | None, Query(ge=0, le=1e9)] = None) -> dict:
        return await _answer(items.viewed_then_bought(sku, measure, k, min_support))

    # -- aggregates (analyst) ------------------------------------------------------------------------------

    @app.get("/overview", tags=["aggregates"], dependencies=[analyst])
    async def overview() -> dict:
        return await read_overview(client, key_space)

    @app.get("/kpis", tags=["aggregates"], dependencies=[analyst])
    async def kpis(granularity: Annotated[str, Query(pattern="^(day|week|month)$")] = "week",
                   last: Annotated[int, Query(ge=1, le=1000)] = 12,
                   segment: Annotated[str | None, Query(max_length=64, description="a named RFM segment")] = None
                   ) -> list[dict]:
        """KPIs per event-time bucket (oldest first); with ``segment``, that named RFM segment's rows."""
        rows = await _answer(read_kpis(client, key_space, granularity, settings.horizon_days, last))
        if segment is None:
            return rows
        return [{"bucket": row["bucket"], **row["segments"].get(segment, {})} for row in rows]

    @app.get("/segments", tags=["aggregates"], dependencies=[analyst])
    async def segments(day: Annotated[list[str] | None, Query(
            description="migrations of these event-time days (YYYY-MM-DD) only")] = None) -> dict:
        """Behaviour segments with profiles, sizes, revenue and churn shares, and the migration matrix."""
        for label in day or []:
            if not _is_iso_day(label):
                raise HTTPException(422, f"not a YYYY-MM-DD day: {label!r}")
        return await _answer(read_segments(client, key_space, day or None), missing="no segment snapshot yet")

    @app.get("/churn/distribution", tags=["aggregates"], dependencies=[analyst])
    async def churn_distribution(bins: Annotated[int, Query(ge=2, le=100)] = 10) -> dict:
        return await _answer(customers.churn_distribution(bins))

    @app.get("/pipeline", tags=["aggregates"], dependencies=[analyst])
    async def pipeline_health() -> dict:
        """Consumer lag and watermark per partition, dead-letter counts by reason."""
        return await read_pipeline_health(client, key_space, settings.lateness_ms)

    # -- models (analyst reads, admin holds) ------------------------------------------------------------------

    @app.get("/models", tags=["aggregates"], dependencies=[analyst])
    async def models() -> dict:
        """The churn model's newest version with its prequential metrics, the version served (and whether an
        operator holds it), the retained versions; the behaviour-segment snapshot and its history."""
        return await model_ops.status()

    @app.post("/models/churn/hold", tags=["models"])
    async def hold_churn_model(version: Annotated[int, Body(embed=True, ge=1, le=2**53)],
                               key: ApiKey = admin) -> dict:
        """Serve a retained churn model version (a rollback) until the hold is released; workers follow
        within a second. 404 if that version is not retained."""
        served = await _answer(model_ops.hold_churn(version, key.name), missing="version not retained")
        return {"served_version": served, "held": True}

    @app.delete("/models/churn/hold", tags=["models"])
    async def release_churn_model(key: ApiKey = admin) -> dict:
        """Release the hold: serve the newest retained version, and new versions as the trainer publishes."""
        served = await _answer(model_ops.release_churn(key.name), missing="no churn model version retained yet")
        return {"served_version": served, "held": False}

    # -- alerts ----------------------------------------------------------------------------------------------

    @app.get("/alerts", tags=["alerts"], dependencies=[anyone_reading_alerts])
    async def recent_alerts(limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                            kind: Annotated[str | None, Query(pattern="^(customer|aggregate)$")] = None,
                            status: Annotated[str | None, Query(pattern="^(open|acknowledged)$")] = None,
                            severity: Annotated[str | None, Query(pattern="^(warning|critical)$")] = None
                            ) -> list[dict]:
        return await _answer(alerts.recent(limit, kind, status, severity))

    @app.get("/alerts/{alert_id}", tags=["alerts"], dependencies=[anyone_reading_alerts])
    async def one_alert(alert_id: AlertId) -> dict:
        return await _answer(alerts.get(alert_id), missing="no such alert")

    @app.post("/alerts/{alert_id}/ack", tags=["alerts"])
    async def acknowledge_alert(alert_id: AlertId, note: Annotated[str, Body(embed=True, max_length=1000)] = "",
                                key: ApiKey = admin) -> dict:
        """Acknowledge an alert; the acknowledgement records which key did it."""
        return await _answer(alerts.acknowledge(alert_id, key.name, note), missing="no such alert")

    # -- dashboard -------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return resources.files("api").joinpath("static", "dashboard.html").read_text()

    return app


def _is_iso_day(label: str) -> bool:
    import datetime

    try:
        return datetime.date.fromisoformat(label).isoformat() == label
    except ValueError:
        return False


def api_from_env() -> FastAPI:
    """The app for each uvicorn worker process (``CRM_API_WORKERS`` > 1 needs an importable factory)."""
    return create_api(Settings.from_env())


def serve(settings: Settings) -> None:
    import uvicorn

    from streams.logs import logging_config

    if not settings.redis_url:
        raise SystemExit("CRM_REDIS_URL is not set (use `crmstream demo` for an embedded stack)")
    options = dict(host=settings.api_host, port=settings.api_port, log_level="warning", access_log=False,
                   log_config=logging_config(settings.log_format, "WARNING"))
    if settings.api_workers > 1:  # processes share the port and the rate limits (in Redis)
        uvicorn.run("api.server:api_from_env", factory=True, workers=settings.api_workers, **options)
    else:
        uvicorn.run(create_api(settings), **options)
