"""Pickles that are only ever loaded when an HMAC-SHA256 under a configured key verifies.

Unpickling runs arbitrary code, so bytes read from Redis are trusted only if
whoever wrote them held the key (model snapshots, trainer checkpoints).

>>> record = sign({"weights": [1, 2]}, b"key")
>>> load(record, b"key")
{'weights': [1, 2]}
>>> load(record, b"other key")
Traceback (most recent call last):
...
online_models.signed_pickle.UntrustedSnapshot: signature does not verify
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
from typing import Any

__all__ = ["UntrustedSnapshot", "sign", "load"]


class UntrustedSnapshot(ValueError):
    """Bytes whose signature does not verify; they are never unpickled."""


def _mac(key: bytes, blob: bytes) -> str:
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def sign(obj: Any, key: bytes) -> dict:
    """``obj`` pickled, as JSON-ready ``{"pickle_b64", "hmac_sha256"}``."""
    blob = pickle.dumps(obj)
    return {"pickle_b64": base64.b64encode(blob).decode(), "hmac_sha256": _mac(key, blob)}


def load(record: dict, key: bytes) -> Any:
    """The object of a :func:`sign` record; raises :class:`UntrustedSnapshot` before unpickling anything
    whose signature does not verify under ``key``."""
    blob = base64.b64decode(record["pickle_b64"])
    if not hmac.compare_digest(_mac(key, blob), record["hmac_sha256"]):
        raise UntrustedSnapshot("signature does not verify")
    return pickle.loads(blob)
