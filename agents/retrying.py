"""Retry a step that must not be skipped until it succeeds, with capped exponential back-off.

For the pipeline's batch (skipping it would lose it: the next batch's offsets cover it) and the rebalance
listener's claim (a partition assigned but not claimed is never processed): blocking is the back-pressure.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

__all__ = ["until_done"]


async def until_done(attempt: Callable[[], Awaitable[object]], log: logging.Logger, failure: str,
                     level: int = logging.ERROR, max_backoff_s: float = 5.0) -> None:
    """Await ``attempt()`` until it returns, logging each failure (``"<failure>, retrying in 0.4s"``, with its
    traceback, at ``level`` on ``log``) and waiting 0.1 s, doubling up to ``max_backoff_s``, before the next."""
    backoff_s = 0.1
    while True:
        try:
            await attempt()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.log(level, "%s, retrying in %.1fs", failure, backoff_s, exc_info=True)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, max_backoff_s)
