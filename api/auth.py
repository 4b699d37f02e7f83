"""API keys and roles.

A key is a random secret; only its SHA-256 is kept in memory (and in the keys file), so a leaked config
dump or heap does not hand out keys. Roles grant permissions:

- ``support`` reads customers (profile, recommendations, search), items and alerts;
- ``analyst`` reads aggregates (KPIs, segments, churn distribution, models, pipeline health), items, alerts;
- ``admin`` does everything, including erasure, alert acknowledgement and holding the churn model.

Each key's requests are rate limited (api/rate_limit.py).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROLES", "PERMISSIONS", "ApiKey", "KeyRing", "hash_key", "new_key"]

ROLES = ("support", "analyst", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "support": frozenset({"customers", "items", "alerts"}),
    "analyst": frozenset({"aggregates", "items", "alerts"}),
    "admin": frozenset({"customers", "items", "alerts", "aggregates", "admin"}),
}
MIN_KEY_LENGTH = 16


def hash_key(key: str) -> str:
    """The stored form of a key: what a keys file holds.

    >>> hash_key("x" * 16)
    'sha256:9c5729595fb287cc2a2256280448bbe706c0a866f0372515c7483de2af4e6532'
    """
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    name: str  # what logs and rate limits call the key: never the key itself
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


class KeyRing:
    """Known keys by hash. Build it with :meth:`parse`.

    >>> ring = KeyRing.parse("s3cret-support-key:support", "")
    >>> ring.lookup("s3cret-support-key")
    ApiKey(name='key-1', role='support')
    >>> ring.lookup("s3cret-support-kez") is None, ring.lookup("") is None
    (True, True)
    >>> KeyRing.parse("short:admin", "")
    Traceback (most recent call last):
    ...
    ValueError: CRM_API_KEYS: key 1 is shorter than 16 characters
    """

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self._by_hash = keys

    def __len__(self) -> int:
        return len(self._by_hash)

    @classmethod
    def parse(cls, plain: str, hashed_file: str) -> "KeyRing":
        """``plain``: ``key:role,...`` (CRM_API_KEYS); ``hashed_file``: lines ``sha256:<hex>:role[:name]``."""
        keys: dict[str, ApiKey] = {}
        for number, item in enumerate((part.strip() for part in plain.split(",") if part.strip()), 1):
            key, _, role = item.rpartition(":")
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"CRM_API_KEYS: key {number} is shorter than {MIN_KEY_LENGTH} characters")
            keys[hash_key(key)] = ApiKey(f"key-{number}", _role(role, "CRM_API_KEYS"))
        if hashed_file:
            for number, line in enumerate(Path(hashed_file).read_text().splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split(":")
                digest = parts[1] if len(parts) >= 3 else ""
                if parts[0] != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError(f"CRM_API_KEYS_FILE {hashed_file}:{number}: expected "
                                     "sha256:<64 hex digits>:<role>[:<name>]")
                _, _, role, *name = parts
                keys[f"sha256:{digest}"] = ApiKey(name[0] if name else f"file-{number}",
                                                  _role(role, f"CRM_API_KEYS_FILE {hashed_file}:{number}"))
        return cls(keys)

    def lookup(self, presented: str | None) -> ApiKey | None:
        if not presented:
            return None
        digest = hash_key(presented)
        for known, key in self._by_hash.items():  # compare every digest in constant time: no timing oracle
            if hmac.compare_digest(known, digest):
                return key
        return None


def _role(role: str, where: str) -> str:
    if role not in ROLES:
        raise ValueError(f"{where}: role must be one of {ROLES}, got {role!r}")
    return role
