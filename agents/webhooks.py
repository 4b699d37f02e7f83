"""Webhook delivery of alerts: signed JSON POSTs, retried with exponential backoff.

The receiver verifies ``X-Crmstream-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<X-Crmstream-Timestamp>.<body>`` under the shared secret (the timestamp in the signed text stops a
captured request from being replayed later), and de-duplicates on ``X-Crmstream-Alert-Id``: an alert is
POSTed again only if the worker died between the receiver's 2xx and recording it.

Retried: connection errors, timeouts, 408, 429 and 5xx. Any other status is final (the receiver
refused the alert; asking again changes nothing). An alert that no attempt delivered is returned as
failed, with every attempt's outcome, for the alert dead-letter topic.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field

import aiohttp

__all__ = ["sign", "verify", "WebhookResult", "WebhookSender"]

_RETRIED_STATUSES = {408, 429}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value.

    >>> sign(b"k", "1700000000", b'{"id":"a"}')[:15]
    'sha256=59483f04'
    """
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver checks (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class WebhookResult:
    delivered: bool
    attempts: list[str] = field(default_factory=list)  # each attempt's outcome: "200", "503", "timeout", ...


class WebhookSender:
    """POSTs alerts to one URL; one shared HTTP session."""

    def __init__(self, url: str, secret: str, attempts: int = 5, backoff_s: float = 1.0,
                 timeout_s: float = 5.0) -> None:
        self.url, self.secret, self.attempts, self.backoff_s = url, secret.encode(), attempts, backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, alert_id: str, body: bytes) -> WebhookResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        result = WebhookResult(False)
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Crmstream-Alert-Id": alert_id,
                       "X-Crmstream-Timestamp": timestamp}
            if self.secret:
                headers["X-Crmstream-Signature"] = sign(self.secret, timestamp, body)
            try:
                async with self._session.post(self.url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except asyncio.TimeoutError:
                result.attempts.append("timeout")
                continue
            except aiohttp.ClientError as exc:
                result.attempts.append(type(exc).__name__)
                continue
            result.attempts.append(str(status))
            if 200 <= status < 300:
                result.delivered = True
                return result
            if status < 500 and status not in _RETRIED_STATUSES:
                return result
        return result
