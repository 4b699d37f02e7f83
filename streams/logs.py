"""Structured logs: one JSON object a line (``CRM_LOG_FORMAT=json``), for log shippers; ``text`` for people.

Standard fields are ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``; ``exc`` holds a traceback;
anything passed with ``extra=`` is kept as its own field.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson

__all__ = ["JsonFormatter", "logging_config"]

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """>>> record = logging.LogRecord("crm", logging.INFO, "", 0, "batch %d", (7,), None)
    >>> record.created = 0.0
    >>> record.partition = 3
    >>> JsonFormatter().format(record)
    '{"ts":"1970-01-01T00:00:00.000Z","level":"INFO","logger":"crm","message":"batch 7","partition":3}'
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                 + "Z", "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update((key, value) for key, value in vars(record).items() if key not in _RESERVED)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(log_format: str, level: str = "INFO") -> dict:
    """A :func:`logging.config.dictConfig` dict writing to stderr in ``log_format`` (``json`` or ``text``)."""
    if log_format not in ("json", "text"):
        raise ValueError(f"CRM_LOG_FORMAT must be json or text, got {log_format!r}")
    formatter = {"()": JsonFormatter} if log_format == "json" else \
        {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"default": formatter},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                    "stream": "ext://sys.stderr"}},
            "root": {"level": level.upper(), "handlers": ["stderr"]}}
