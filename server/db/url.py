"""Which PostgreSQL this process talks to: CRM_DATABASE_URL, or the embedded default."""

from __future__ import annotations

from server.config import Settings
from server.db import embedded


def normalise(url: str) -> str:
    """Accept plain `postgresql://` URLs and pin SQLAlchemy to the psycopg 3 driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def database_url(settings: Settings, *, owner: bool = False) -> str:
    if settings.database_url:
        return normalise(settings.database_url)
    return embedded.ensure_running(settings.data_dir, settings.database_name, owner=owner)


def libpq_url(sqlalchemy_url: str) -> str:
    """The same URL as psycopg.connect() wants it."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
