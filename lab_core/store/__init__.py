"""Store factories: Redis (fakeredis by default, a real server via ``REDIS_URL``) and SQLite."""

from lab_core.store.redis_store import redis_client, redis_url
from lab_core.store.sqlite_store import sqlite

__all__ = ["redis_client", "redis_url", "sqlite"]
