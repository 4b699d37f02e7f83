"""Builders of valid contract events for tests (one place, so tests stay short)."""
from __future__ import annotations

import itertools

_ids = itertools.count()
BASE_TS_MS = 1_709_290_800_000  # 2024-03-01T11:00:00Z


def purchase(customer_id: str = "c1", ts=BASE_TS_MS, **fields) -> dict:
    return {"event_id": f"p-{next(_ids)}", "customer_id": customer_id, "order_id": f"o-{next(_ids)}", "ts": ts,
            "items": [{"sku": "sku-1", "qty": 2, "unit_price": "9.99", "category": "books"}],
            "currency": "EUR", "kind": "order", "schema_version": 1, **fields}


def interaction(customer_id: str = "c1", ts=BASE_TS_MS, type: str = "page_view", **fields) -> dict:
    return {"event_id": f"i-{next(_ids)}", "customer_id": customer_id, "ts": ts, "type": type,
            "schema_version": 1, **fields}


def customer(customer_id: str = "c1", ts=BASE_TS_MS, type: str = "signup", **fields) -> dict:
    return {"event_id": f"u-{next(_ids)}", "customer_id": customer_id, "ts": ts, "type": type,
            "schema_version": 1, **fields}


def without(payload: dict, name: str) -> dict:
    return {k: v for k, v in payload.items() if k != name}
