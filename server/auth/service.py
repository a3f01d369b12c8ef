"""Workspaces and API keys: creation, authentication, revocation."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.auth import keys, queries
from server.db.engine import Database
from server.errors import NotFound, Unauthenticated

# last_used_at is a hint, not an audit log: write it at most this often per key, so that
# authentication stays a single indexed read on the hot path.
LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True)
class Principal:
    workspace_id: str
    key_id: str


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    workspace_id: str
    key: str  # shown once, never stored


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Authenticator:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._last_touched: dict[str, float] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        key = _bearer_token(authorization)
        async with self._db.read() as conn:
            row = await queries.find_live_key(conn, prefix=keys.lookup_prefix(key))
            if row is None or not hmac.compare_digest(row.secret_hash, keys.secret_hash(key)):
                raise Unauthenticated("unknown or revoked API key", reason="API_KEY_INVALID")
            if self._should_touch(row.id):
                # A statement of its own (autocommit): the hint need not agree with the read.
                await queries.touch_key(conn, key_id=row.id, now=datetime.now(UTC))
        return Principal(workspace_id=row.workspace_id, key_id=row.id)

    async def still_valid(self, principal: Principal) -> bool:
        """Whether the key a call was authenticated with still holds (not revoked, its
        workspace not gone). Calls that outlive their authentication, such as an open
        WatchEvents stream, ask this every few seconds: one indexed read, no cache."""
        async with self._db.read() as conn:
            return await queries.key_is_live(
                conn, key_id=principal.key_id, workspace_id=principal.workspace_id
            )

    def _should_touch(self, key_id: str) -> bool:
        now = time.monotonic()
        if now - self._last_touched.get(key_id, -LAST_USED_RESOLUTION_S) < LAST_USED_RESOLUTION_S:
            return False
        self._last_touched[key_id] = now
        return True


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated(
            "missing API key: send `authorization: Bearer tnx_…`", reason="API_KEY_MISSING"
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not keys.is_well_formed(token):
        raise Unauthenticated(
            "malformed API key: expected `Bearer tnx_…`", reason="API_KEY_MALFORMED"
        )
    return token


async def create_workspace(db: Database, *, name: str) -> CreatedKey:
    workspace_id = ids.new_id("ws")
    async with db.transaction() as conn:
        await queries.insert_workspace(conn, workspace_id=workspace_id, name=name)
        return await _insert_new_key(conn, workspace_id=workspace_id, name="default")


async def create_key(db: Database, *, workspace_ref: str, name: str) -> CreatedKey:
    async with db.transaction() as conn:
        workspace = await queries.find_workspace(conn, ref=workspace_ref)
        if workspace is None:
            raise NotFound.resource("workspace", workspace_ref)
        return await _insert_new_key(conn, workspace_id=workspace.id, name=name)


async def _insert_new_key(conn: AsyncConnection, *, workspace_id: str, name: str) -> CreatedKey:
    key = keys.generate()
    key_id = ids.new_id("key")
    await queries.insert_key(
        conn,
        key_id=key_id,
        workspace_id=workspace_id,
        name=name,
        prefix=keys.lookup_prefix(key),
        secret_hash=keys.secret_hash(key),
    )
    return CreatedKey(key_id=key_id, workspace_id=workspace_id, key=key)


async def list_keys(db: Database, *, workspace_ref: str) -> list[KeyInfo]:
    async with db.transaction() as conn:
        workspace = await queries.find_workspace(conn, ref=workspace_ref)
        if workspace is None:
            raise NotFound.resource("workspace", workspace_ref)
        rows = await queries.list_keys(conn, workspace_id=workspace.id)
    return [
        KeyInfo(
            key_id=r.id,
            name=r.name,
            prefix=r.prefix,
            created_at=r.created_at,
            revoked_at=r.revoked_at,
            last_used_at=r.last_used_at,
        )
        for r in rows
    ]


async def revoke_key(db: Database, *, key_ref: str) -> None:
    async with db.transaction() as conn:
        if await queries.revoke_key(conn, key_ref=key_ref, now=datetime.now(UTC)) == 0:
            raise NotFound.resource("api_key", key_ref)
