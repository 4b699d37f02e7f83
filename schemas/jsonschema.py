"""JSON Schema (draft 2020-12) of the event contract, for the webshop team.

The schemas are generated from the same constants as :mod:`schemas.events`
and a test checks that both agree on a corpus of valid and invalid events,
so the published files cannot drift from what the pipeline enforces.
Checks that need context are not expressible here and live only in the
validator: the wall clock (``future_timestamp``), the Kafka key
(``key_mismatch``) and the range of a rounded amount.
"""
from __future__ import annotations

from pathlib import Path

import orjson

from schemas.events import (
    CUSTOMER_EVENT_TYPES, ID_PATTERN, INTERACTION_TYPES, MAX_ATTRIBUTES, MAX_ITEMS, MAX_LABEL_CHARS, MAX_QTY,
    MAX_TEXT_CHARS, PURCHASE_KINDS, SCHEMA_VERSIONS, SKU_REQUIRED_TYPES, SURVEY_SCALES,
)
from schemas.money import CURRENCY_EXPONENTS, MAX_MONEY_CHARS
from schemas.timestamps import MIN_TS_MS, SECONDS_LIKE_MS

__all__ = ["event_schemas", "write_schema_files"]

_ID = {"type": "string", "pattern": ID_PATTERN}
_LABEL = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS}
_TS = {
    "description": "RFC 3339 date-time with offset, or epoch milliseconds (UTC).",
    "oneOf": [
        {"type": "string", "format": "date-time",
         "pattern": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$"},
        {"type": "integer", "minimum": MIN_TS_MS, "not": {"minimum": SECONDS_LIKE_MS[0],
                                                           "exclusiveMaximum": SECONDS_LIKE_MS[1]}},
    ],
}
_MONEY = {
    "description": "Decimal string (preferred) or number, >= 0; any number of decimals (the line total is "
                   "rounded once to the currency's minor unit, half to even).",
    "oneOf": [
        {"type": "string", "pattern": r"^\d+(\.\d+)?$", "maxLength": MAX_MONEY_CHARS},
        {"type": "number", "minimum": 0},
    ],
}


def _envelope(title: str, properties: dict, required: list[str], **extra) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://crmstream.dev/schemas/{title}.schema.json",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "required": ["event_id", "customer_id", "ts", "schema_version", *required],
        "properties": {
            "event_id": {**_ID, "description": "Unique per event; duplicates are dropped."},
            "customer_id": {**_ID, "description": "Also the Kafka message key."},
            "ts": _TS,
            "schema_version": {"enum": sorted(SCHEMA_VERSIONS)},
            **properties,
        },
        **extra,
    }


def event_schemas() -> dict[str, dict]:
    """Topic name -> JSON Schema."""
    purchases = _envelope("purchases", {
        "order_id": _ID,
        "kind": {"enum": list(PURCHASE_KINDS)},
        "currency": {"enum": sorted(CURRENCY_EXPONENTS)},
        "channel": _LABEL,
        "items": {
            "type": "array", "minItems": 1, "maxItems": MAX_ITEMS,
            "items": {
                "type": "object", "additionalProperties": False, "required": ["sku", "qty"],
                "anyOf": [{"required": ["unit_price"]}, {"required": ["amount"]}],
                "properties": {"sku": _ID, "qty": {"type": "integer", "minimum": 1, "maximum": MAX_QTY},
                               "unit_price": {**_MONEY, "description": "Price of one unit."},
                               "amount": {**_MONEY, "description": "The line total (wins over qty x unit_price)."},
                               "category": _LABEL},
            },
        },
    }, ["order_id", "kind", "currency", "items"])
    survey_rules = [
        {"if": {"properties": {"type": {"const": "survey"}, "survey": {"const": scale}}, "required": ["survey"]},
         "then": {"properties": {"score": {"type": "integer", "minimum": low, "maximum": high}}}}
        for scale, (low, high) in SURVEY_SCALES.items()
    ]
    interactions = _envelope("interactions", {
        "type": {"enum": list(INTERACTION_TYPES)},
        "sku": _ID,
        "session_id": _ID,
        "survey": {"enum": list(SURVEY_SCALES)},
        "score": {"type": "integer"},
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
    }, ["type"], allOf=[
        {"if": {"properties": {"type": {"enum": sorted(SKU_REQUIRED_TYPES)}}}, "then": {"required": ["sku"]}},
        {"if": {"properties": {"type": {"const": "survey"}}},
         "then": {"required": ["survey", "score"]},
         "else": {"properties": {"survey": False, "score": False}}},
        *survey_rules,
    ])
    customers = _envelope("customers", {
        "type": {"enum": list(CUSTOMER_EVENT_TYPES)},
        "attributes": {
            "type": "object", "maxProperties": MAX_ATTRIBUTES,
            "propertyNames": {"minLength": 1, "maxLength": MAX_LABEL_CHARS},
            "additionalProperties": {
                "oneOf": [{"type": "string", "maxLength": MAX_TEXT_CHARS}, {"type": ["number", "boolean", "null"]}]},
        },
    }, ["type"])
    return {"purchases": purchases, "interactions": interactions, "customers": customers}


def write_schema_files(directory: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` files; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic, schema in event_schemas().items():
        path = directory / f"{topic}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        paths.append(path)
    return paths
