"""Which database failures a client should retry, told apart from bugs.

A request that fails because PostgreSQL is unreachable, restarting or out of connections is
UNAVAILABLE (retry the same call later); one that lost a deadlock or a serialization check
to a concurrent request is ABORTED (retry the call). Anything else is a defect: INTERNAL.
"""

from __future__ import annotations

import enum

import psycopg
from psycopg import errors as pg
from sqlalchemy import exc as sa

# SQLSTATE classes: 08 connection exception; 57P01-57P03 shutdown and start-up; 53300 too
# many connections. Client-side failures (refused, reset, timed out) carry no SQLSTATE.
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03", "53300")


class Failure(enum.Enum):
    UNAVAILABLE = "unavailable"
    CONFLICT = "conflict"


def classify(exc: BaseException) -> Failure | None:
    """What kind of retryable failure `exc` is, or None when it is not one."""
    if isinstance(exc, sa.TimeoutError):  # no pooled connection came free in time
        return Failure.UNAVAILABLE
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return Failure.UNAVAILABLE
        return classify(exc.orig) if exc.orig is not None else None
    if isinstance(exc, pg.TransactionRollback):  # 40001 serialization, 40P01 deadlock
        return Failure.CONFLICT
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        if state is None or state.startswith("08") or state in _UNAVAILABLE_STATES:
            return Failure.UNAVAILABLE
    if isinstance(exc, psycopg.InterfaceError | ConnectionError):
        return Failure.UNAVAILABLE
    return None


def redacted(exc: BaseException) -> str:
    """An error as it may be logged: a database error by its class, SQLSTATE and statement
    (bind parameters, no values), never its message, which can quote a value it was given
    ('invalid input syntax for type integer: "ann@example.com"'). Other errors as they are."""
    if isinstance(exc, sa.DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or "-"
        return f"{type(exc.orig).__name__} (SQLSTATE {state}) in: {exc.statement}"
    return f"{type(exc).__name__}: {exc}"
