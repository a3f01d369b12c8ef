"""Which PostgreSQL this process talks to: CRM_DATABASE_URL, or the embedded default."""

from __future__ import annotations

from server.config import Settings
from server.db import embedded
from server.errors import DomainError


def normalise(url: str) -> str:
    """Accept plain `postgresql://` URLs and pin SQLAlchemy to the psycopg 3 driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def database_url(settings: Settings, *, owner: bool = False, existing: bool = False) -> str:
    """`existing`: the embedded database must have been created already (by `tnx-crm up`);
    an administration command run from another directory must not start a new, empty one
    and print a key that the running stack has never heard of."""
    if settings.database_url:
        return normalise(settings.database_url)
    if existing and not embedded.exists(settings.data_dir):
        raise DomainError(
            message=(
                f"no tnx-crm database in {settings.data_dir} (CRM_DATA_DIR): run this where"
                " `tnx-crm up` runs, or set CRM_DATA_DIR or CRM_DATABASE_URL to its database"
            ),
            reason="NO_DATABASE",
        )
    return embedded.ensure_running(settings.data_dir, settings.database_name, owner=owner)


def libpq_url(sqlalchemy_url: str) -> str:
    """The same URL as psycopg.connect() wants it."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
